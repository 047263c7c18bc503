"""Small synthetic run directories for the student tests: GRAPHS, VOCAB, ingest manifest and
TEACHER tables written through tgd.schema (real stage outputs in miniature, not mocks).

Label 0 documents draw most words from one half of the vocabulary, label 1 from the other, so a
student can learn; the teacher's logits are noisy but mostly right, and its node states depend on
the word, so the bridge has something to align to."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa

from tgd.schema import DOCUMENTS, GRAPHS, TEACHER, VOCAB, shard_name, stage_dir, write_table

WORDS = [f"w{i}" for i in range(40)]
RELS = ["nsubj", "dobj", "amod", "det"]


def _graph(rng, label: int, n: int, sent_len: int = 6) -> dict:
    half = WORDS[:20] if label == 0 else WORDS[20:]
    lower = [half[rng.integers(20)] if rng.random() < 0.8 else WORDS[rng.integers(40)] for _ in range(n)]
    sent = [i // sent_len for i in range(n)]
    dep_src, dep_dst, dep_rel = [], [], []
    for i in range(n):
        if i % sent_len:  # each sentence a chain rooted at its first token
            dep_src.append(i - 1); dep_dst.append(i); dep_rel.append(RELS[rng.integers(len(RELS))])
    co_src = [i for i in range(n - 1) if sent[i] == sent[i + 1]]
    start = np.cumsum([0] + [len(w) + 1 for w in lower[:-1]]).tolist()  # offsets in " ".join(lower)
    return {"num_nodes": n, "token": lower, "lower": lower, "pos": ["NOUN"] * n, "start": start,
            "end": [s + len(w) for s, w in zip(start, lower)], "sent": sent, "dep_src": dep_src, "dep_dst": dep_dst, "dep_rel": dep_rel,
            "co_src": co_src, "co_dst": [i + 1 for i in co_src], "co_weight": [1.0] * len(co_src)}


def _teacher_row(doc_id: str, split: str, logit: list[float], g: dict, proj: np.ndarray) -> dict:
    states = np.stack([proj[WORDS.index(w) if w in WORDS else 0] for w in g["lower"]]).astype(np.float16).ravel().tolist()
    return {"id": doc_id, "split": split, "teacher": "synthetic", "max_length": 128, "num_windows": 1,
            "truncated": False, "logits": logit, "topk_index": None, "topk_rest": None, "node_logits": None,
            "node_aligned": [True] * g["num_nodes"], "node_states": states, "embedding_a": None,
            "embedding_b": None, "similarity": None}


def make_run(cfg, n_docs: int = 80, min_nodes: int = 5, max_nodes: int = 30, state_dim: int = 8, seed: int = 0,
             teacher_right: float = 0.9, transfer_copies: int = 0, teacher_right_train: float | None = None) -> None:
    """``teacher_right``: how often the synthetic teacher's logits favour the gold label
    (``teacher_right_train`` on the training split, when given: a teacher that memorised it);
    ``transfer_copies``: augmented copies per training document (the transfer stage's own code),
    labelled by the teacher like their originals."""
    rng = np.random.default_rng(seed)
    labels = ["neg", "pos"]
    rows, trows = [], []
    proj = rng.normal(size=(len(WORDS), state_dim))
    for i in range(n_docs):
        y = int(rng.integers(2))
        split = "train" if i % 10 < 7 else "validation" if i % 10 < 9 else "test"
        g = _graph(rng, y, int(rng.integers(min_nodes, max_nodes + 1)))
        doc_id = hashlib.sha1(f"{seed}-{i}".encode()).hexdigest()[:12]
        rows.append({"id": doc_id, "split": split, "label": labels[y], "tags": None, "score": None, "graph": g, "graph_b": None})
        right = rng.random() < (teacher_right if split != "train" or teacher_right_train is None else teacher_right_train)
        logit = [2.0, -1.0] if (y == 0) == right else [-1.0, 2.0]
        trows.append(_teacher_row(doc_id, split, logit, g, proj))
    gdir = stage_dir(cfg, "graphs")
    write_table(pa.Table.from_pylist(rows, schema=GRAPHS), gdir / shard_name(0), GRAPHS)
    counts: dict[str, int] = {}
    for r in rows:
        if r["split"] == "train":
            for w in r["graph"]["lower"]:
                counts[w] = counts.get(w, 0) + 1
    write_table(pa.table({"token": list(counts), "count": list(counts.values())}), gdir / "vocab.parquet", VOCAB)
    write_table(pa.Table.from_pylist(trows, schema=TEACHER), stage_dir(cfg, "teacher-logits") / shard_name(0), TEACHER)
    docs = [{"id": r["id"], "row": i, "split": r["split"], "text": " ".join(r["graph"]["lower"]), "label": r["label"],
             "tokens": None, "tags": None, "text_b": None, "score": None} for i, r in enumerate(rows)]
    write_table(pa.Table.from_pylist(docs, schema=DOCUMENTS), stage_dir(cfg, "ingest") / "documents" / shard_name(0), DOCUMENTS)
    transfer_rows = 0
    if transfer_copies:
        from pipeline.transfer import PosVocabulary, augment_shard
        from tgd.config import TransferConfig

        graphs = pa.Table.from_pylist(rows, schema=GRAPHS)
        tdocs, tgraphs = augment_shard(pa.Table.from_pylist(docs, schema=DOCUMENTS), graphs,
                                       TransferConfig(copies=transfer_copies), PosVocabulary(graphs), rng)
        write_table(tdocs, stage_dir(cfg, "transfer") / "documents" / shard_name(0), DOCUMENTS)
        write_table(tgraphs, stage_dir(cfg, "transfer") / "graphs" / shard_name(0), GRAPHS)
        logit_of = {t["id"]: t["logits"] for t in trows}
        copies = [_teacher_row(r["id"], r["split"], logit_of[r["id"].split("~")[0]], r["graph"], proj)
                  for r in tgraphs.to_pylist()]
        write_table(pa.Table.from_pylist(copies, schema=TEACHER), stage_dir(cfg, "teacher-logits") / shard_name(1), TEACHER)
        transfer_rows = len(copies)
    splits = {s: sum(r["split"] == s for r in rows) for s in ("train", "validation", "test")}
    for name, extra in (("ingest", {"labels": labels, "splits": splits, "task": "classification", "accepted_rows": n_docs}),
                        ("graphs", {}), ("transfer", {"output_rows": transfer_rows}),
                        ("teacher-logits", {"labels": labels, "state_dim": state_dim})):
        d = stage_dir(cfg, name)
        d.mkdir(parents=True, exist_ok=True)
        (d / "manifest.json").write_text(json.dumps({"stage": name, "fingerprint": name, "input_rows": n_docs,
                                                     "output_rows": n_docs, **extra}))
