"""The transfer set: augmented copies made on real spaCy graphs keep text and nodes consistent, the
stage writes them beside the graphs, the teacher labels them, and the student data reads them."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from pipeline.transfer import MASK, PosVocabulary, augment
from tests.conftest import make_config
from tests.fixtures.teacher_fixtures import review_corpus, tiny_bert
from tgd.config import TransferConfig
from tgd.schema import DOCUMENTS, GRAPHS, TEACHER, read_manifest, read_table
from tgd.stages import ensure

TEXT = "The film, sadly, was dull.  But the actors were great and the music moved me."


def _consistent(text: str, g: dict) -> bool:
    return all(text[s:e] == t for s, e, t in zip(g["start"], g["end"], g["token"]))


def _edges_inside(g: dict) -> bool:
    n = g["num_nodes"]
    return all(0 <= i < n for i in g["dep_src"] + g["dep_dst"] + g["co_src"] + g["co_dst"])


@pytest.fixture(scope="module")
def parsed(graph_builder):
    corpus = [TEXT, "A dull, slow story with great music.", "The actors moved the audience to tears."]
    graphs = graph_builder.build(corpus)
    vocab = PosVocabulary(pa.table({"graph": pa.array(graphs, type=GRAPHS.field("graph").type)}))
    return graphs[0], vocab


def test_mask_keeps_whitespace_structure_and_hides_words(parsed):
    g, vocab = parsed
    text, aug = augment(TEXT, g, TransferConfig(mask_prob=1.0, replace_prob=0.0, ngram_prob=0.0), vocab,
                        np.random.default_rng(0))
    assert aug["token"] == [MASK] * g["num_nodes"] and set(aug["lower"]) == {MASK.lower()}
    assert text == "[MASK] [MASK][MASK] [MASK][MASK] [MASK] [MASK][MASK]  [MASK] [MASK] [MASK] [MASK] [MASK] [MASK] " \
                   "[MASK] [MASK] [MASK] [MASK][MASK]"
    assert _consistent(text, aug)
    for k in ("pos", "sent", "dep_src", "dep_dst", "dep_rel", "co_src", "co_dst", "co_weight"):
        assert aug[k] == g[k]


def test_replacement_draws_a_word_of_the_same_pos(parsed):
    g, vocab = parsed
    text, aug = augment(TEXT, g, TransferConfig(mask_prob=0.0, replace_prob=1.0, ngram_prob=0.0), vocab,
                        np.random.default_rng(1))
    assert aug["pos"] == g["pos"] and _consistent(text, aug) and aug["lower"] != g["lower"]
    for tok, pos in zip(aug["token"], aug["pos"]):
        assert tok.lower() in {w.lower() for w in vocab.words[pos]}
    assert text[0].isupper()  # "The" -> a capitalised determiner


def test_ngram_window_is_a_consistent_subgraph(parsed):
    g, vocab = parsed
    cfg = TransferConfig(mask_prob=0.0, replace_prob=0.0, ngram_prob=1.0, ngram_min_fraction=0.3)
    sizes = set()
    for seed in range(20):
        text, aug = augment(TEXT, g, cfg, vocab, np.random.default_rng(seed))
        n = aug["num_nodes"]
        sizes.add(n)
        assert math.ceil(0.3 * g["num_nodes"]) <= n <= g["num_nodes"]
        assert text in TEXT and _consistent(text, aug) and _edges_inside(aug) and aug["sent"][0] == 0
        assert len(aug["dep_src"]) == len(aug["dep_rel"]) and len(aug["co_src"]) == len(aug["co_weight"])
    assert len(sizes) > 3


def test_stage_writes_copies_the_teacher_labels_and_the_student_reads(ray_local, tmp_path):
    """Augmented copies and data.unlabelled_source texts: graphs, teacher outputs, KD-only rows."""
    from trainers.distill.data import prepare
    from trainers.distill.spec import build_spec

    model = tiny_bert(tmp_path / "teacher", labels=["fresh", "rotten"])
    unlabelled = [f"An unseen review {i}: the acting was {'superb' if i % 2 else 'flat'}." for i in range(5)]
    (tmp_path / "unlabelled.jsonl").write_text("".join(f'{{"text": "{t}"}}\n' for t in unlabelled))
    cfg = make_config(tmp_path, data={"source": str(review_corpus(tmp_path / "reviews.jsonl")),
                                      "labels": ["fresh", "rotten"], "split_fractions": [0.6, 0.2, 0.2],
                                      "shard_words": 150, "unlabelled_source": str(tmp_path / "unlabelled.jsonl")},
                      teacher={"model": str(model), "finetune": False, "max_length": 24, "stride": 4,
                               "max_windows": 8, "eval_batch_size": 5, "state_dim": 8},
                      transfer={"copies": 2}, ray={"num_workers": 2})
    m = ensure(cfg, "teacher-logits", log=lambda _: None)
    docs = read_table(tmp_path / "run/ingest/documents", DOCUMENTS)
    train_ids = [i for i, s in zip(docs.column("id").to_pylist(), docs.column("split").to_pylist()) if s == "train"]
    unl_ids = [d["id"] for d in docs.to_pylist() if d["split"] == "transfer"]
    assert len(unl_ids) == 5 and not any(i.endswith(tuple(f"~aug{k}" for k in range(2))) for i in unl_ids)
    assert read_manifest(cfg, "teacher-finetune")["input_rows"] == docs.num_rows - 5  # it reads labelled documents only
    copies = read_table(tmp_path / "run/transfer/documents", DOCUMENTS).to_pylist()
    graphs = {r["id"]: r["graph"] for r in read_table(tmp_path / "run/transfer/graphs", GRAPHS).to_pylist()}
    assert sorted(r["id"] for r in copies) == sorted(f"{i}~aug{k}" for i in train_ids for k in range(2))
    assert all(r["split"] == "transfer" and r["label"] is None and _consistent(r["text"], graphs[r["id"]]) for r in copies)
    # the teacher labelled every document and every copy once, states aligned to the copies' nodes
    assert m["input_rows"] == m["output_rows"] == docs.num_rows + len(copies)
    out = {r["id"]: r for r in read_table(tmp_path / "run/teacher-logits", TEACHER).to_pylist()}
    for r in copies:
        t = out[r["id"]]
        assert t["split"] == "transfer" and len(t["node_aligned"]) == graphs[r["id"]]["num_nodes"]
        assert any(t["node_aligned"])
    assert all(out[i]["split"] == "transfer" and any(out[i]["node_aligned"]) for i in unl_ids)

    prepared = prepare(cfg, use_teacher=True)
    transfer = prepared.splits["transfer"]
    assert sorted(transfer.column("id").to_pylist()) == sorted([r["id"] for r in copies] + unl_ids)
    assert not any("~aug" in i for i in prepared.splits["train"].column("id").to_pylist())
    assert prepare(cfg, use_teacher=False).splits["transfer"].num_rows == 0  # labels only: no copies, no unlabelled
    # a distilled student trains on documents + copies + unlabelled texts; without the transfer set on documents only
    prepared.teacher_check = {"weaker": False}
    _, rows = build_spec(cfg, prepared, True, tmp_path / "fit")
    assert rows.num_rows == len(train_ids) + len(copies) + len(unl_ids)
    no_transfer = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"use_transfer": False})})
    _, rows = build_spec(no_transfer, prepared, True, tmp_path / "fit")
    assert rows.num_rows == len(train_ids)
