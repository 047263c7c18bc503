"""Stage outputs -> per-document PyG ``Data`` (graph + label + teacher view), serialised for Ray Data.

Reads the graph and teacher stages only through ``tgd.schema``. The driver joins each document's
graph with its teacher row by id, encodes it with a ``GraphEncoding`` and serialises the ``Data`` into
one binary column; workers deserialise their Ray Data shard. Teacher states stay float16 until batched.
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

from tgd.errors import StageError
from tgd.schema import GRAPHS, SPLITS, TEACHER, TRANSFER_SPLIT, VOCAB, read_manifest, read_table, stage_dir
from trainers.distill import curriculum
from trainers.student.features import GraphEncoding
from trainers.tasks import Task, get_task

GRAPH_FIELDS = ("num_nodes", "lower", "pos", "sent", "dep_src", "dep_dst", "dep_rel", "co_src", "co_dst", "co_weight")


@dataclass
class Prepared:
    enc: GraphEncoding
    task: str
    splits: dict[str, pa.Table]  # train, validation, test, transfer -> id, split, difficulty, num_nodes, payload
    state_dim: int  # 0: the teacher stored no node states
    has_teacher: bool
    teacher_check: dict[str, Any] | None = None  # trainers.distill.teacher_gate.assess_teacher, once per prepared set
    word_counts: list[int] | None = None  # training-split count of each vocabulary entry (0: <pad>, <unk>)


def labels_of(cfg) -> list[str]:
    m = read_manifest(cfg, "ingest")
    if not m or m.get("labels") is None:  # an empty list is fine: a pair set with scores only
        raise StageError(f"no ingest manifest with labels under {stage_dir(cfg, 'ingest')}; run `tgd ingest` first")
    return list(m["labels"])


def teacher_view(cfg, labels: list[str], task: Task) -> tuple[dict[str, dict[str, Any]], int]:
    """id -> teacher row decoded by the task (logits in ``labels`` order, top-k expanded), and the
    node-state width."""
    m = read_manifest(cfg, "teacher-logits")
    if m is None:
        raise StageError(f"teacher outputs missing under {stage_dir(cfg, 'teacher-logits')}: run `tgd teacher-logits` "
                           "(or set distill.use_teacher=false for the plain GNN)")
    rows = decode_teacher_table(read_table(stage_dir(cfg, "teacher-logits"), TEACHER), list(m.get("labels") or labels),
                                labels, task)
    return rows, int(m.get("state_dim") or 0)


def decode_teacher_table(table: pa.Table, t_labels: list[str], labels: list[str], task: Task) -> dict[str, dict]:
    """id -> each TEACHER row decoded by the task: logits from the teacher's label order ``t_labels``
    into ``labels`` order, top-k expanded, node states as numpy."""
    order = [t_labels.index(l) for l in labels]
    cols = ["id", "logits", "topk_index", "topk_rest", "node_logits", "node_aligned", "node_states", "embedding_a",
            "embedding_b", "similarity"]
    states = _list_arrays(table.column("node_states"))  # the bulk of the table: numpy, not Python floats
    rows = {}
    for r, st in zip(table.select([c for c in cols if c != "node_states"]).to_pylist(), states):
        r["node_states"] = st
        rows[r["id"]] = task.decode_teacher(r, order, len(labels))
    return rows


def _list_arrays(column: pa.ChunkedArray) -> list[np.ndarray | None]:
    """Each row of a list column as a numpy view of its values (None for a null row)."""
    out: list[np.ndarray | None] = []
    for chunk in column.chunks:
        offsets = chunk.offsets.to_numpy()
        values = chunk.values.to_numpy(zero_copy_only=False)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        out.extend(values[offsets[i]:offsets[i + 1]] if valid[i] else None for i in range(len(chunk)))
    return out


def encode_row(enc: GraphEncoding, row: dict, label, tags, trow: dict | None, state_dim: int, task: Task):
    """One document's ``Data``: its GRAPHS ``row`` encoded by the task, the task's targets and teacher
    outputs, and the teacher's node states (``t_mask``: nodes a teacher sub-word covers)."""
    data = task.encode(enc, row)
    n = data.num_nodes
    task.set_targets(data, enc, label, tags, trow)
    aligned = trow.get("node_aligned") if trow else None
    data.t_mask = (torch.tensor(aligned, dtype=torch.bool) if aligned is not None and len(aligned) == n
                   else torch.zeros(n, dtype=torch.bool))
    states = trow.get("node_states") if trow else None
    if state_dim and states is not None and len(states) == n * state_dim:
        data.t_states = torch.tensor(np.asarray(states, dtype=np.float16)).view(n, state_dim)
    else:
        data.t_states = torch.zeros(n, max(state_dim, 1), dtype=torch.float16)
        if state_dim:  # this document's states are missing: keep the bridge off it
            data.t_mask = torch.zeros(n, dtype=torch.bool)
    return data


def prepare(cfg, use_teacher: bool, edges: str | None = None, graphs_dir: Path | None = None) -> Prepared:
    """Every document of the graph stage (or of ``graphs_dir``, graphs built another way for the same
    documents) encoded, joined with its teacher row, in per-split tables."""
    task = get_task(cfg.data.task)
    labels = labels_of(cfg)
    gdir = graphs_dir or stage_dir(cfg, "graphs")
    graphs = read_table(gdir, GRAPHS)
    vocab = read_table(gdir / "vocab.parquet", VOCAB)
    transfer = stage_dir(cfg, "transfer") / "graphs"
    if use_teacher and graphs_dir is None and transfer.is_dir():  # the teacher-labelled transfer set, if any
        graphs = pa.concat_tables([graphs, read_table(transfer, GRAPHS)])
    if not use_teacher:  # the transfer split (copies, data.unlabelled_source) has no labels: nothing to learn from
        graphs = graphs.filter(pc.not_equal(graphs.column("split"), TRANSFER_SPLIT))
    train_mask = pc.equal(graphs.column("split"), "train")
    rels = pc.unique(pc.list_flatten(pc.struct_field(graphs.filter(train_mask).column("graph"), "dep_rel"))).to_pylist()
    s = cfg.student
    enc = GraphEncoding.build(vocab, rels, labels, s.vocab_min_count, s.vocab_max_size, edges or s.edges,
                              s.pos_features)
    trows, state_dim = teacher_view(cfg, labels, task) if use_teacher else ({}, 0)
    ids, splits, nodes, payload, uncertainty = [], [], [], [], []
    for r in graphs.select(["id", "split", "label", "tags", "score", "graph", "graph_b"]).to_pylist():
        r["graph"] = {k: r["graph"][k] for k in GRAPH_FIELDS}
        r["graph_b"] = r["graph_b"] and {k: r["graph_b"][k] for k in GRAPH_FIELDS}
        trow = trows.get(r["id"])
        if use_teacher and trow is None:
            raise StageError(f"document {r['id']} has no teacher output; re-run `tgd teacher-logits`")
        d = encode_row(enc, r, r["label"], r["tags"], trow, state_dim, task)
        ids.append(r["id"]); splits.append(r["split"]); nodes.append(d.num_nodes)
        payload.append(pack(d))
        uncertainty.append(task.teacher_uncertainty(d) if use_teacher else None)
    ids_a, split_a, nodes_a = np.array(ids), np.array(splits), np.array(nodes)
    out = {}
    for split in (*SPLITS, TRANSFER_SPLIT):
        sel = np.nonzero(split_a == split)[0]
        diff = curriculum.difficulty(nodes_a[sel], np.array([uncertainty[i] for i in sel]) if use_teacher else None)
        out[split] = pa.table({"id": ids_a[sel].tolist(), "split": split_a[sel].tolist(), "difficulty": diff.tolist(),
                               "num_nodes": nodes_a[sel].tolist(),
                               "payload": pa.array([payload[i] for i in sel], pa.binary())})
    counts = dict(zip(vocab.column("token").to_pylist(), vocab.column("count").to_pylist()))
    return Prepared(enc, task.name, out, state_dim, use_teacher,
                    word_counts=[0, 0, *(counts.get(w, 0) for w in enc.vocab[2:])])


def pack(data) -> bytes:
    """One ``Data`` as a pickled dict of numpy arrays: ~10x faster to write and ~7x faster to read
    than pickling the tensors themselves (torch pickles every tensor through its own serializer),
    and every row task of evaluate reads the whole set."""
    return pickle.dumps({k: v.numpy() if torch.is_tensor(v) else v for k, v in data.items()}, protocol=5)


def load(payload: bytes):
    from torch_geometric.data import Data

    return Data(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                   for k, v in pickle.loads(payload).items()})


def subsample(table: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """(a seeded random fraction of the rows, the rest): the labelled part of a small-data run and
    the documents whose labels it does not get."""
    if fraction >= 1:
        return table, table.slice(0, 0)
    rng = np.random.default_rng(seed)
    k = max(1, int(round(fraction * table.num_rows)))
    kept = np.zeros(table.num_rows, dtype=bool)
    kept[rng.choice(table.num_rows, k, replace=False)] = True
    return table.filter(pa.array(kept)), table.filter(pa.array(~kept))


def without_gold(table: pa.Table, task: Task) -> pa.Table:
    """``table``'s examples with their gold targets hidden (``Task.hide_gold``) and their curriculum
    difficulty ranked again from the teacher alone (a pair's uses its gold score while it has one)."""
    data = [load(p) for p in table.column("payload").to_pylist()]
    for d in data:
        task.hide_gold(d)
    diff = curriculum.difficulty(np.array([d.num_nodes for d in data]),
                                 np.array([task.teacher_uncertainty(d) for d in data]))
    return table.set_column(table.schema.get_field_index("difficulty"), "difficulty", pa.array(diff.tolist())) \
        .set_column(table.schema.get_field_index("payload"), "payload", pa.array([pack(d) for d in data], pa.binary()))


def unpack(table_or_batch) -> list[tuple[str, float, Any]]:
    """(id, difficulty, Data) per row, sorted by id so every run sees the same order."""
    rows = zip(table_or_batch.column("id").to_pylist(), table_or_batch.column("difficulty").to_pylist(),
               table_or_batch.column("payload").to_pylist())
    return sorted(((i, d, load(p)) for i, d, p in rows), key=lambda x: x[0])
