"""Teacher stages on a real local Ray with real DeepSpeed engines and tiny teachers built from a
config: ZeRO-3 sharded logits equal the plain model's, every document appears exactly once,
fine-tuning lowers the loss and saves a checkpoint plain `transformers` reloads, re-runs skip,
a changed teacher invalidates, and the zero-shot causal-LM path works."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_config
from tests.fixtures.teacher_fixtures import review_corpus, tiny_bert, tiny_tokenizer
from tgd.schema import DOCUMENTS, GRAPHS, TEACHER, read_table
from tgd.stages import ensure, is_up_to_date
from trainers.teacher.alignment import align_nodes, pool_nodes
from trainers.teacher.inference import TeacherForward
from trainers.teacher.model import load_model, load_tokenizer
from trainers.teacher.windows import Windower

LABELS = ["fresh", "rotten"]
QUIET = dict(log=lambda _: None)
pytestmark = pytest.mark.timeout(420)


def _teacher_cfg(tmp_path, model: Path, **teacher):
    t = {"model": str(model), "finetune": False, "max_length": 24, "stride": 4, "max_windows": 8,
         "eval_batch_size": 5, "state_dim": 8, **teacher}
    return make_config(tmp_path, data={"source": str(review_corpus(tmp_path / "reviews.jsonl")), "labels": LABELS,
                                       "split_fractions": [0.6, 0.2, 0.2], "shard_words": 150},
                       teacher=t, transfer={"copies": 0}, ray={"num_workers": 2})


def _plain_outputs(model_dir: Path, texts: list[str], cfg) -> list[np.ndarray]:
    """Reference: the unsharded model in this process, windows averaged as the stage does."""
    tok = load_tokenizer(model_dir)
    win = Windower(tok, cfg.teacher.max_length, cfg.teacher.stride, cfg.teacher.max_windows)
    fwd = TeacherForward(load_model(model_dir, "encoder", "sequence", LABELS).eval(), "encoder",
                         "classification", tok.pad_token_id, "cpu")
    out = []
    for e in win.encode(texts):
        logits = fwd([win.wrap(e.ids[a:b]) for a, b in e.windows])["logits"]
        out.append(logits.mean(axis=0))
    return out


# ---------------------------------------------------------------- offsets: sub-words -> graph nodes
def test_alignment_hand_checked_with_the_packaged_tokenizer():
    from trainers.teacher.model import resolve_model_path

    tok = load_tokenizer(resolve_model_path("all-minilm-l6-v2"))
    text = "Unbelievably,  the actors   don't shine!"
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces == ["un", "##bel", "##ie", "##va", "##bly", ",", "the", "actors", "don", "'", "t", "shine", "!"]
    # spaCy-style nodes: words, punctuation and the clitic split "do" + "n't"; whitespace runs skipped.
    nodes = ["Unbelievably", ",", "the", "actors", "do", "n't", "shine", "!"]
    starts, pos = [], 0
    for n in nodes:
        pos = text.index(n, pos)
        starts.append(pos)
        pos += len(n)
    ends = [s + len(n) for s, n in zip(starts, nodes)]
    starts_t = [a for a, _ in enc["offset_mapping"]]
    ends_t = [b for _, b in enc["offset_mapping"]]
    groups = align_nodes(starts, ends, starts_t, ends_t)
    got = [[pieces[i] for i in g] for g in groups]
    # every sub-word of a word lands on that word, in order; the teacher splits "don't" as don ' t
    assert got[0] == ["un", "##bel", "##ie", "##va", "##bly"]  # a word split into five sub-words
    assert got[1] == [","] and got[2] == ["the"] and got[3] == ["actors"]
    assert got[4] == ["don"]  # "do" overlaps the sub-word "don"
    assert got[5] == ["don", "'", "t"]  # "n't" overlaps "don" (its n), "'" and "t"
    assert got[6] == ["shine"] and got[7] == ["!"]
    # pooling: first sub-word vs mean
    vals = np.arange(len(pieces), dtype=np.float32)[:, None]
    first, ok = pool_nodes(vals, groups, "first")
    mean, _ = pool_nodes(vals, groups, "mean")
    assert ok.all() and first[5, 0] == groups[5][0] and mean[5, 0] == pytest.approx(np.mean(groups[5]))


def test_alignment_marks_nodes_without_teacher_tokens():
    # Two nodes; the teacher saw only the first (truncation): the second is unaligned, zeros.
    groups = align_nodes([0, 6], [5, 11], tok_start=[0, 0], tok_end=[5, 0])
    vals, ok = pool_nodes(np.ones((2, 3), np.float32), groups, "first")
    assert ok.tolist() == [True, False] and vals[1].tolist() == [0, 0, 0]


# ---------------------------------------------------------------- ZeRO-3 sharded inference
def test_zero3_two_workers_match_plain_model_every_document_once(ray_local, tmp_path):
    model = tiny_bert(tmp_path / "teacher", labels=LABELS)
    cfg = _teacher_cfg(tmp_path, model, parallel="zero3")
    m = ensure(cfg, "teacher-logits", **QUIET)
    assert m["parallel"] == "zero3" and m["parallel_reason"] == "teacher.parallel=zero3"
    docs = read_table(tmp_path / "run/ingest/documents", DOCUMENTS)
    out = read_table(tmp_path / "run/teacher-logits", TEACHER)
    assert docs.num_rows == 47 and m["input_rows"] == m["output_rows"] == 47
    ids = out.column("id").to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == set(docs.column("id").to_pylist())
    assert len(m["workers"]) == 2 and sum(w["rows"] for w in m["workers"]) == 47 and all(w["rows"] for w in m["workers"])
    assert m["windows_per_document"] > 1  # the long reviews were cut into several windows

    text_of = dict(zip(docs.column("id").to_pylist(), docs.column("text").to_pylist()))
    ref = _plain_outputs(model, [text_of[i] for i in ids], cfg)
    got = np.stack(out.column("logits").to_pylist())
    assert np.abs(got - np.stack(ref)).max() < 1e-4

    # node states: aligned to graph nodes, state_dim wide, float16
    graphs = {r["id"]: r["graph"]["num_nodes"] for r in read_table(tmp_path / "run/graphs", GRAPHS).to_pylist()}
    for r in out.select(["id", "node_states", "node_aligned"]).to_pylist():
        assert len(r["node_aligned"]) == graphs[r["id"]] and len(r["node_states"]) == 8 * graphs[r["id"]]
    assert out.schema.field("node_states").type.value_type == TEACHER.field("node_states").type.value_type
    assert (tmp_path / "run/teacher-logits/state_projection.npy").is_file() and m["state_bytes_per_document"] > 0

    # unchanged inputs: nothing to do; a changed teacher invalidates the stored outputs
    assert is_up_to_date(cfg, "teacher-logits")

    # auto: the tiny teacher fits every worker, so each holds the whole model (no all-gathers) and
    # the outputs are the sharded path's, document for document
    zero3 = {r["id"]: r for r in out.to_pylist()}
    auto = _teacher_cfg(tmp_path, model)
    m2 = ensure(auto, "teacher-logits", **QUIET)
    assert m2["parallel"] == "replicate" and m2["parallel_reason"].startswith("auto: parameters")
    assert sum(w["rows"] for w in m2["workers"]) == 47 and all(w["rows"] for w in m2["workers"])
    held = {w["param_mb_held"] for w in m2["workers"]}
    assert len(held) == 1 and held.pop() > 1.5 * m["workers"][0]["param_mb_held"]  # the whole model vs about half
    rep = read_table(tmp_path / "run/teacher-logits", TEACHER).to_pylist()
    assert sorted(r["id"] for r in rep) == sorted(zero3)
    for r in rep:
        z = zero3[r["id"]]
        assert np.abs(np.asarray(r["logits"]) - np.asarray(z["logits"])).max() < 1e-4
        assert r["node_aligned"] == z["node_aligned"]
        assert np.abs(np.asarray(r["node_states"], np.float32) - np.asarray(z["node_states"], np.float32)).max() < 2e-3
    cfg = auto
    tiny_bert(tmp_path / "teacher", labels=LABELS, seed=1)  # re-saved weights at the same path
    assert not is_up_to_date(cfg, "teacher-finetune")


# ---------------------------------------------------------------- fine-tuning
def test_finetune_lowers_loss_and_checkpoint_reloads_with_transformers(ray_local, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainers.teacher.model import finetuned_model_dir

    base = tiny_bert(tmp_path / "base")  # no head: fine-tuning adds one in the ingest label order
    cfg = _teacher_cfg(tmp_path, base, finetune=True, epochs=3, min_steps=1, lr=3e-3, batch_size=8,
                       warmup_fraction=0.0, patience=None)
    m = ensure(cfg, "teacher-finetune", **QUIET)
    hist = m["history"]
    assert m["recipe"]["steps"] == 3 * m["steps_per_epoch"] == hist[-1]["step"]  # three epochs, validated in rounds
    assert len(hist) > 1 and [h["step"] for h in hist] == sorted({h["step"] for h in hist})
    assert hist[-1]["epoch"] == 3.0 and all(h["lr"] == 3e-3 for h in hist) and len(m["recipe"]["candidates"]) == 1
    assert hist[-1]["train_loss"] < hist[0]["first_loss"]
    assert 0 <= m["best_validation"]["accuracy"] <= 1

    model_dir = finetuned_model_dir(cfg)
    assert model_dir == tmp_path / "run" / "teacher-finetune" / "model" and m["model_path"] == "model"
    probe = json.loads((model_dir / "tgd_probe.json").read_text())
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    assert [model.config.id2label[i] for i in range(2)] == LABELS
    with torch.no_grad():
        enc = tok(probe["texts"], truncation=True, max_length=cfg.teacher.max_length, padding=True, return_tensors="pt")
        logits = model(**enc).logits.numpy()
    assert np.abs(logits - np.asarray(probe["logits"])).max() < 1e-4


# ---------------------------------------------------------------- zero-shot causal LM teacher
def test_causal_lm_teacher_gives_verbalizer_logits(ray_local, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    path = tmp_path / "llm"
    tok = tiny_tokenizer(path)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                 pad_token_id=tok.pad_token_id)).save_pretrained(str(path))
    cfg = _teacher_cfg(tmp_path, path, kind="causal-lm", prompt="review : {text} label :", node_states=False,
                       max_length=40, max_windows=1)
    m = ensure(cfg, "teacher-logits", **QUIET)
    assert m["output_rows"] == 47 and m["kind"] == "causal-lm"
    out = read_table(tmp_path / "run/teacher-logits", TEACHER)
    docs = read_table(tmp_path / "run/ingest/documents", DOCUMENTS)
    text_of = dict(zip(docs.column("id").to_pylist(), docs.column("text").to_pylist()))
    # reference: next-token logits of the label words after the prompt, plain model, one document
    r = out.to_pylist()[0]
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    win = Windower(tok, 40, cfg.teacher.stride, 1, cfg.teacher.prompt)
    e = win.encode([text_of[r["id"]]])[0]
    a, b = e.windows[0]
    ids = torch.tensor([win.wrap(e.ids[a:b])])
    with torch.no_grad():
        nxt = model(input_ids=ids).logits[0, -1]
    words = [tok(" " + l, add_special_tokens=False)["input_ids"][0] for l in LABELS]
    assert np.abs(np.asarray(r["logits"]) - nxt[words].numpy()).max() < 1e-4


# ---------------------------------------------------------------- fine-tuning: ZeRO stage choice, length buckets
def test_zero_stage_auto_picks_plain_data_parallel_when_it_fits(tmp_path):
    from trainers.teacher.deepspeed_env import checkpoint_parameters, choose_zero_stage

    model = tiny_bert(tmp_path / "t", labels=LABELS)
    n = sum(p.numel() for p in load_model(model, "encoder", "sequence", LABELS).parameters())
    assert checkpoint_parameters(model) == n  # read from the safetensors header, nothing loaded
    p, mib = 22_700_000, 2**20  # MiniLM-L6; fp32 AdamW: 16 bytes per parameter on ZeRO-0, x3 safety = 1,039 MiB
    assert choose_zero_stage("auto", p, 8_000 * mib, 2, 3.0)[0] == 0
    assert choose_zero_stage("auto", p, 700 * mib, 2, 3.0)[0] == 2  # 4 + 12/2 bytes x 3 = 649 MiB
    stage, why = choose_zero_stage("auto", p, 600 * mib, 2, 3.0)  # 16/2 bytes x 3 = 520 MiB
    assert stage == 3 and "ZeRO-2 would not" in why
    assert choose_zero_stage("auto", p, 10 * mib, 2, 3.0)[0] == 3  # nothing fits: the most sharding there is
    assert choose_zero_stage(2, p, 8_000 * mib, 2, 3.0) == (2, "teacher.zero_stage=2")


def test_length_buckets_cover_every_window_once_and_pad_less():
    from trainers.teacher.finetune import length_buckets

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=250).tolist()
    batches = length_buckets(lengths, 32, np.random.default_rng(1), np.random.default_rng(2))
    assert sorted(int(i) for b in batches for i in b) == list(range(250)) and all(len(b) <= 32 for b in batches)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    shuffled = rng.permutation(250)
    padded_random = sum(32 * max(lengths[i] for i in shuffled[k:k + 32]) for k in range(0, 250, 32))
    assert padded < 0.7 * padded_random
    # the batch order comes from order_rng alone: workers sharing it take their k-th shortest batches together
    def length_ranks(lens, tie_seed):
        bs = length_buckets(lens, 32, np.random.default_rng(1), np.random.default_rng(tie_seed))
        longest = [max(lens[i] for i in b) for b in bs]
        return [sorted(longest).index(x) for x in longest]

    distinct = rng.permutation(250).tolist(), rng.permutation(250).tolist()
    assert length_ranks(distinct[0], 2) == length_ranks(distinct[1], 9) != sorted(length_ranks(distinct[0], 2))


def test_several_windows_per_document_are_distinct_and_carry_its_label(tmp_path):
    from trainers.tasks import get_task
    from trainers.teacher.finetune import make_batch

    win = Windower(tiny_tokenizer(tmp_path / "tok"), 24, 4, 8)
    long_doc = " ".join(f"the plot {i} was very good" for i in range(30))  # no two windows alike
    docs = {"text": ["dull film", long_doc], "label": ["rotten", "fresh"]}
    n_long = len(win.spans(len(win.encode([long_doc])[0].ids)))
    assert n_long > 3
    rows, labels = make_batch(docs, win, get_task("classification"), {"fresh": 0, "rotten": 1},
                              np.random.default_rng(0), per_doc=3)
    assert labels == [1, 0, 0, 0] and len(rows) == 4  # the short document has one window: it gives that one
    assert len({tuple(r) for r in rows[1:]}) == 3  # distinct windows of the long one
    one, _ = make_batch(docs, win, get_task("classification"), {"fresh": 0, "rotten": 1}, np.random.default_rng(0))
    assert len(one) == 2


def test_rounds_without_improvement_counts_from_the_earliest_best():
    from trainers.teacher.finetune import rounds_without_improvement

    h = [{"val_score": f} for f in (0.5, 0.7, 0.6, 0.7)]
    assert rounds_without_improvement(h[:2]) == 0 and rounds_without_improvement(h[:3]) == 1
    assert rounds_without_improvement(h) == 2  # a tie is no improvement


def test_finetune_stops_early_and_samples_several_windows(ray_local, tmp_path):
    """A learning rate too small to change any prediction: validation never improves after round 0,
    so patience 1 stops after round 1 of 8; three windows per document train on more windows."""
    base = tiny_bert(tmp_path / "base")
    cfg = _teacher_cfg(tmp_path, base, finetune=True, epochs=4, min_steps=1, lr=1e-12, batch_size=4,
                       warmup_fraction=0.0, patience=1, train_windows=3)
    m = ensure(cfg, "teacher-finetune", **QUIET)
    assert [h["round"] for h in m["history"]] == [0, 1] and m["stopped_early"]
    assert m["history"][1]["val_macro_f1"] == m["history"][0]["val_macro_f1"] == m["best_validation"]["macro_f1"]
    assert m["best_step"] == m["history"][0]["step"]  # the earliest of equal rounds is kept
    assert m["steps_per_epoch"] > -(-(m["train_documents"] // 2) // 4)  # an epoch: more windows than documents


def test_recipe_search_drops_a_rate_that_cannot_learn_and_keeps_the_other(ray_local, tmp_path):
    """Successive halving on the real stage: a rate of 1e-12 leaves the head as initialised, 1e-2
    learns the corpus; the search drops the first at its rung and trains the second to the end."""
    from trainers.teacher.model import finetuned_model_dir

    base = tiny_bert(tmp_path / "base")
    t = {"model": str(base), "max_length": 24, "stride": 4, "max_windows": 8, "eval_batch_size": 5, "state_dim": 8,
         "finetune": True, "epochs": 12, "min_steps": 1, "lr_grid": [1e-12, 1e-2], "budget": 2.0, "batch_size": 8,
         "patience": None}
    cfg = make_config(tmp_path, data={"source": str(review_corpus(tmp_path / "reviews.jsonl", n=160)),
                                      "labels": LABELS, "split_fractions": [0.6, 0.2, 0.2]},
                      teacher=t, transfer={"copies": 0})
    m = ensure(cfg, "teacher-finetune", **QUIET)
    rec = m["recipe"]
    assert rec["lr"] == 1e-2 and [c["lr"] for c in rec["candidates"]] == [1e-12, 1e-2]
    slow, fast = rec["candidates"]
    assert slow["dropped_at"] == rec["rungs"][0] and fast["dropped_at"] is None
    assert slow["rounds"][-1]["step"] == rec["rungs"][0] and fast["rounds"][-1]["step"] == rec["steps"]
    assert fast["best_val_score"] > slow["best_val_score"]
    assert rec["steps_trained"] == rec["steps"] + rec["rungs"][0] <= 2.0 * rec["steps"]  # within teacher.budget
    assert [h["lr"] for h in m["history"]] == [1e-2] * len(fast["rounds"])  # the chosen candidate's rounds
    assert not m["stopped_early"] and m["best_step"] == max(fast["rounds"], key=lambda r: r["val_score"])["step"]
    assert (finetuned_model_dir(cfg) / "config.json").is_file()
    assert not any((tmp_path / "run" / "teacher-finetune" / d).exists() for d in ("_ray", "candidates"))


def test_finetune_auto_runs_zero0_and_zero2_still_trains(ray_local, tmp_path):
    base = tiny_bert(tmp_path / "base")
    fast = dict(finetune=True, epochs=1, min_steps=1, lr=3e-3, batch_size=4, warmup_fraction=0.0, patience=None)
    m = ensure(_teacher_cfg(tmp_path, base, **fast), "teacher-finetune", **QUIET)
    assert m["zero_stage"] == 0 and m["zero_stage_reason"].startswith("auto: ") and "fit the worker's" in m["zero_stage_reason"]
    hist = m["history"]
    total = lambda key: sum(h["timing"][key] for h in hist)  # noqa: E731  (a round may be one quick step)
    assert total("train_windows") == m["train_documents"] // 2 * 2  # one epoch, one window per document
    assert total("train_seconds") > 0 and total("forward_seconds") > 0 and total("step_seconds") > 0
    assert all(0 <= h["timing"]["padding_fraction"] < 1 for h in hist)

    m2 = ensure(_teacher_cfg(tmp_path, base, **fast, zero_stage=2), "teacher-finetune", **QUIET)
    assert m2["zero_stage"] == 2 and m2["zero_stage_reason"] == "teacher.zero_stage=2"
    assert [h["step"] for h in m2["history"]] == [h["step"] for h in hist]
    # same seed, same windows, same batches: DP without ZeRO and ZeRO-2 take the same optimizer steps
    for a, b in zip(m2["history"], hist):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
