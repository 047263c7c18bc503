"""Stage outputs -> per-document PyG ``Data`` (graph + label + teacher view), serialised for Ray Data.

Reads the graph and teacher stages only through ``tgd.schema``. The driver joins each document's
graph with its teacher row by id, encodes it with a ``GraphEncoding`` and pickles the ``Data`` into
one binary column; workers unpickle their Ray Data shard. Teacher states stay float16 until batched.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from tgd.schema import GRAPHS, SPLITS, TEACHER, TRANSFER_SPLIT, VOCAB, read_manifest, read_table, stage_dir
from trainers.distill import curriculum
from trainers.student.features import GraphEncoding

GRAPH_FIELDS = ("num_nodes", "lower", "pos", "sent", "dep_src", "dep_dst", "dep_rel", "co_src", "co_dst", "co_weight")


@dataclass
class Prepared:
    enc: GraphEncoding
    task: str
    splits: dict[str, pa.Table]  # train, validation, test, transfer -> id, split, difficulty, num_nodes, payload
    state_dim: int  # 0: the teacher stored no node states
    has_teacher: bool
    teacher_check: dict[str, Any] | None = None  # trainers.distill.teacher_gate.assess_teacher, once per prepared set


def labels_of(cfg) -> list[str]:
    m = read_manifest(cfg, "ingest")
    if not m or not m.get("labels"):
        raise RuntimeError(f"no ingest manifest with labels under {stage_dir(cfg, 'ingest')}; run `tgd ingest` first")
    return list(m["labels"])


def teacher_view(cfg, labels: list[str]) -> tuple[dict[str, dict[str, Any]], int]:
    """id -> teacher row (logits reordered to ``labels``), and the node-state width."""
    m = read_manifest(cfg, "teacher-logits")
    if m is None:
        raise RuntimeError(f"teacher outputs missing under {stage_dir(cfg, 'teacher-logits')}: run `tgd teacher-logits` "
                           "(or set distill.use_teacher=false for the plain GNN)")
    t_labels = list(m.get("labels") or labels)
    order = [t_labels.index(l) for l in labels]
    table = read_table(stage_dir(cfg, "teacher-logits"), TEACHER)
    cols = ["id", "logits", "node_logits", "node_aligned", "node_states"]
    rows = {r["id"]: r for r in table.select(cols).to_pylist()}
    for r in rows.values():
        if r["logits"] is not None:
            r["logits"] = [r["logits"][i] for i in order]
    return rows, int(m.get("state_dim") or 0)


def encode_row(enc: GraphEncoding, g: dict, label, tags, trow: dict | None, state_dim: int, task: str):
    data = enc.encode(g)
    n = data.num_nodes
    if task == "token":
        data.node_y = torch.tensor([enc.label_index(t) for t in (tags or [])] or [-1] * n, dtype=torch.long)
    data.y = torch.tensor([enc.label_index(label)], dtype=torch.long)
    C = len(enc.labels)
    if trow is not None and trow.get("logits") is not None:
        data.t_logits = torch.tensor(trow["logits"], dtype=torch.float32).view(1, C)
    else:
        data.t_logits = torch.zeros(1, C)
    aligned = trow.get("node_aligned") if trow else None
    data.t_mask = torch.tensor(aligned, dtype=torch.bool) if aligned is not None and len(aligned) == n else torch.zeros(n, dtype=torch.bool)
    states = trow.get("node_states") if trow else None
    if state_dim and states is not None and len(states) == n * state_dim:
        data.t_states = torch.tensor(np.asarray(states, dtype=np.float16)).view(n, state_dim)
    else:
        data.t_states = torch.zeros(n, max(state_dim, 1), dtype=torch.float16)
        data.t_mask = torch.zeros(n, dtype=torch.bool)
    if task == "token":
        nl = trow.get("node_logits") if trow else None
        data.t_node_logits = torch.tensor(nl, dtype=torch.float32).view(n, C) if nl is not None and len(nl) == n * C else torch.zeros(n, C)
    return data


def prepare(cfg, use_teacher: bool, edges: str | None = None, graphs_dir: Path | None = None) -> Prepared:
    """Every document of the graph stage (or of ``graphs_dir``, graphs built another way for the same
    documents) encoded, joined with its teacher row, in per-split tables."""
    task = cfg.data.task
    if task == "pair":
        raise NotImplementedError("distillation of the pair task is not implemented yet (classification and token are)")
    labels = labels_of(cfg)
    gdir = graphs_dir or stage_dir(cfg, "graphs")
    graphs = read_table(gdir, GRAPHS)
    vocab = read_table(gdir / "vocab.parquet", VOCAB)
    transfer = stage_dir(cfg, "transfer") / "graphs"
    if use_teacher and graphs_dir is None and transfer.is_dir():  # the teacher-labelled transfer set, if any
        graphs = pa.concat_tables([graphs, read_table(transfer, GRAPHS)])
    train_mask = pc.equal(graphs.column("split"), "train")
    rels = pc.unique(pc.list_flatten(pc.struct_field(graphs.filter(train_mask).column("graph"), "dep_rel"))).to_pylist()
    s = cfg.student
    enc = GraphEncoding.build(vocab, rels, labels, s.vocab_min_count, s.vocab_max_size, edges or s.edges)
    trows, state_dim = teacher_view(cfg, labels) if use_teacher else ({}, 0)
    ids, splits, nodes, payload, tlogits = [], [], [], [], []
    for r in graphs.select(["id", "split", "label", "tags", "graph"]).to_pylist():
        g = {k: r["graph"][k] for k in GRAPH_FIELDS}
        trow = trows.get(r["id"])
        if use_teacher and trow is None:
            raise RuntimeError(f"document {r['id']} has no teacher output; re-run `tgd teacher-logits`")
        d = encode_row(enc, g, r["label"], r["tags"], trow, state_dim, task)
        ids.append(r["id"]); splits.append(r["split"]); nodes.append(d.num_nodes)
        payload.append(pickle.dumps(d, protocol=5)); tlogits.append(d.t_logits.numpy()[0])
    ids_a, split_a, nodes_a = np.array(ids), np.array(splits), np.array(nodes)
    out = {}
    for split in (*SPLITS, TRANSFER_SPLIT):
        sel = np.nonzero(split_a == split)[0]
        diff = curriculum.difficulty(nodes_a[sel], np.stack([tlogits[i] for i in sel]) if use_teacher and len(sel) else None)
        out[split] = pa.table({"id": ids_a[sel].tolist(), "split": split_a[sel].tolist(), "difficulty": diff.tolist(),
                               "num_nodes": nodes_a[sel].tolist(), "payload": pa.array([payload[i] for i in sel], pa.binary())})
    return Prepared(enc, task, out, state_dim, use_teacher)


def subsample(table: pa.Table, fraction: float, seed: int) -> pa.Table:
    """A seeded random fraction of the rows (small-data runs)."""
    if fraction >= 1:
        return table
    rng = np.random.default_rng(seed)
    k = max(1, int(round(fraction * table.num_rows)))
    return table.take(np.sort(rng.choice(table.num_rows, k, replace=False)))


def unpack(table_or_batch) -> list[tuple[str, float, Any]]:
    """(id, difficulty, Data) per row, sorted by id so every run sees the same order."""
    rows = zip(table_or_batch.column("id").to_pylist(), table_or_batch.column("difficulty").to_pylist(),
               table_or_batch.column("payload").to_pylist())
    return sorted(((i, d, pickle.loads(p)) for i, d, p in rows), key=lambda x: x[0])
