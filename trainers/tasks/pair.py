"""Sentence-pair similarity: two texts per example, a score in [0, 1] or a label per pair.

One example is ONE graph: the disjoint union of side A's and side B's text graphs, with ``side``
(0/1) on every node. No edge joins the two sides, so one message-passing pass encodes both with the
same weights (a siamese encoder by construction), and batching, sampling and Ray Data need nothing
pair-specific. The student reads out one vector per side (``trainers.student.heads.PairHead``) and returns per
pair ``[similarity, label logits...]``: column 0 is the similarity (scores: cosine(u, v), mixed with
the static path's cosine where the student has one), the rest the logits
of a head over ``[u, v, |u-v|, u*v]`` (labels; none when the data has scores only).

Distillation: the student's cosine regressed onto the teacher's (MSE; the KD term), the gold loss
(MSE onto the score, or CE on the label), and the bridge at sentence level: each side's vector
projected onto the teacher's sentence embedding of that side (``SentenceBridge``, 1 - cosine),
inside the same align / fusion / adaptive curriculum (the adaptive stage has no temperature to adapt
for a regression target: it trains like fusion). The mode comes from the data: labels when ingest
found any, else scores. Metrics: Spearman and Pearson (scipy.stats) for scores, accuracy / macro-F1
for labels.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from trainers.tasks.base import Task, text_problem
from trainers.tasks.scores import accuracy_f1, pearson


def rank_correlations(pred, gold) -> dict[str, float]:
    """Spearman and Pearson of ``pred`` against ``gold`` over rows where both are finite (scipy.stats);
    0.0 where undefined (fewer than 2 rows or a constant side), so a best-epoch choice never sees NaN."""
    from scipy.stats import pearsonr, spearmanr

    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    m = np.isfinite(p) & np.isfinite(g)
    p, g = p[m], g[m]
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(g) == 0:
        return {"spearman": 0.0, "pearson": 0.0}
    return {"spearman": float(spearmanr(p, g).statistic), "pearson": float(pearsonr(p, g).statistic)}


class SentenceBridge(nn.Module):
    """The bridge at sentence level: a learned projection of each side's student vector onto the
    teacher's sentence embedding of that side, loss 1 - cosine (training only)."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim)

    def forward(self, u, v, t_emb) -> torch.Tensor:
        """``u``, ``v``: (pairs, student_dim); ``t_emb``: (pairs, 2, teacher_dim), zeros where absent."""
        s = torch.stack([u, v], 1)
        have = t_emb.abs().sum(-1) > 0
        if not bool(have.any()):
            return s.sum() * 0.0
        return 1 - F.cosine_similarity(self.proj(s[have]), t_emb[have], dim=-1).mean()


class Pair(Task):
    name, head, teacher_head = "pair", "pair", "embedding"
    metric = "spearman"
    soft_labels: ClassVar[bool] = False  # KD regresses a similarity: no temperature
    # no cascade: a labelled pair has no pair-classifier teacher, a similarity score no confidence
    cascade_unit: ClassVar[str | None] = None

    def unit_confidence(self, logits):
        return None

    def headline(self, labels: list[str]) -> str:
        return "accuracy" if labels else "spearman"

    # ------------------------------------------------------------------ teacher
    teacher_as_is = "pair task: the sentence-embedding model is the similarity teacher as it is"
    teacher_texts = ("text", "text_b")
    teacher_gold = "score"

    def add_teacher_window(self, acc, out, r, pos, a, b, subwords):
        """The window's mean-pooled last-layer states (the sentence embedding), summed over windows."""
        m = out["mask"][r]
        acc["emb"] = acc["emb"] + out["hidden"][r][m].mean(axis=0)

    def finish_teacher_row(self, row, accs, groups, denom, tcfg):
        """Each side's embedding averaged over its windows, and their cosine: the teacher's similarity."""
        ea, eb = (acc["emb"] / max(acc["n"], 1) for acc in accs)
        row["embedding_a"], row["embedding_b"] = ea.astype(np.float32), eb.astype(np.float32)
        row["similarity"] = float(ea @ eb / max(np.linalg.norm(ea) * np.linalg.norm(eb), 1e-12))

    def teacher_predictions(self, row, gold, labels):
        """The teacher's similarity against the gold score (none for a pair without a score)."""
        return ([gold], [row["similarity"]]) if gold is not None else ([], [])

    def teacher_scores(self, gold, pred, labels):
        return {"pearson": pearson(pred, gold), "n": len(gold)}

    # ------------------------------------------------------------------ data
    def encode(self, enc, row: dict[str, Any]):
        """Side A's graph and side B's as one disjoint graph; ``side`` marks the nodes of B, whose
        sentence indices continue A's (sentence-window sampling stays consistent)."""
        a, b = enc.encode(row["graph"]), enc.encode(row["graph_b"] or _empty_graph())
        off = int(a.sent.max()) + 1 if a.num_nodes else 0
        data = Data(
            x_tok=torch.cat([a.x_tok, b.x_tok]), x_pos=torch.cat([a.x_pos, b.x_pos]),
            sent=torch.cat([a.sent, b.sent + off]),
            edge_index=torch.cat([a.edge_index, b.edge_index + a.num_nodes], 1),
            edge_type=torch.cat([a.edge_type, b.edge_type]),
            edge_weight=torch.cat([a.edge_weight, b.edge_weight]), num_nodes=a.num_nodes + b.num_nodes)
        data.side = torch.cat([torch.zeros(a.num_nodes, dtype=torch.long), torch.ones(b.num_nodes, dtype=torch.long)])
        score = row.get("score")
        data.score = torch.tensor([score if score is not None else math.nan], dtype=torch.float32)
        return data

    def words(self, data):
        return data.x_tok[data.side == 0], data.x_tok[data.side == 1]

    def set_targets(self, data, enc, label, tags, trow):
        data.y = torch.tensor([enc.label_index(label)], dtype=torch.long)
        sim = trow.get("similarity") if trow else None
        data.t_sim = torch.tensor([sim if sim is not None else math.nan], dtype=torch.float32)
        ea, eb = (trow.get("embedding_a"), trow.get("embedding_b")) if trow else (None, None)
        if ea is not None and eb is not None:
            data.t_emb = torch.tensor(np.stack([ea, eb]), dtype=torch.float32).unsqueeze(0)
        else:
            data.t_emb = torch.zeros(1, 2, 1)
        data.t_logits = torch.zeros(1, len(enc.labels))  # width 0: scores, else labels (no teacher logits)

    def teacher_uncertainty(self, data):
        """How far the teacher's similarity is from the gold score (hard pairs are those the teacher
        gets wrong); without a gold score, how close the teacher's cosine is to undecided (0.5)."""
        t, g = float(data.t_sim[0]), float(data.score[0])
        if not math.isfinite(t):
            return 1.0
        if math.isfinite(g):
            return min(abs(t - g), 1.0)
        return 1.0 - min(abs(t - 0.5) * 2, 1.0)

    # ------------------------------------------------------------------ training
    def targets(self, logits, batch, stage):
        y = batch.y if logits.shape[1] > 1 else batch.score
        t = batch.t_sim
        keep = torch.isfinite(t)
        return y, logits[keep, 0], t[keep]

    def gold_loss(self, logits, y):
        if logits.shape[1] > 1:  # labels: CE of the [u, v, |u-v|, u*v] head
            from trainers.distill.losses import ce

            return ce(logits[:, 1:], y)
        keep = torch.isfinite(y)
        return F.mse_loss(logits[keep, 0], y[keep]) if bool(keep.any()) else logits.sum() * 0.0

    def kd_loss(self, s_kd, t_kd, temperature, weight=None):
        if not len(t_kd):
            return s_kd.sum() * 0.0
        err = (s_kd - t_kd) ** 2
        return err.mean() if weight is None else (err * weight).sum() / weight.sum().clamp_min(1.0)

    def make_bridge(self, student, state_dim: int, example) -> nn.Module | None:
        dim = int(example.t_emb.shape[-1]) if example is not None and hasattr(example, "t_emb") else 0
        return SentenceBridge(student.readout.out_dim, dim) if dim > 1 else None

    def bridge_loss(self, bridge, student, h, batch):
        u, v = student.task_head.data_vectors(student, h, batch)
        return bridge(u, v, batch.t_emb)

    # ------------------------------------------------------------------ evaluation
    def predictions(self, logits):
        return logits[:, 1:].argmax(-1) if logits.shape[1] > 1 else logits[:, 0]

    def hide_gold(self, data):
        super().hide_gold(data)
        data.score.fill_(math.nan)

    def gold_and_teacher(self, data):
        if data.t_logits.shape[1]:  # labels: no pair-classifier teacher (yet)
            return data.y, torch.full_like(data.y, -1)
        return data.score, data.t_sim

    def scores(self, pred, gold, teach, labels, lengths=None):
        if labels:
            m = gold >= 0
            s = accuracy_f1(gold[m], pred[m], list(range(len(labels))))
            out = {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}
            if teach is not None and (teach >= 0).any():
                out["agreement"] = float((pred == teach).mean())
            return out
        out = rank_correlations(pred, gold)
        if teach is not None:  # rank agreement of the student's similarities with the teacher's
            out["agreement"] = rank_correlations(pred, teach)["spearman"]
        return out

    def row_correct(self, pred, gold):
        """Per-row correctness for paired bootstrap intervals: none for scores (a rank correlation
        does not split into rows)."""
        return (pred == gold) if np.issubdtype(np.asarray(gold).dtype, np.integer) else None

    # ------------------------------------------------------------------ serving
    inputs = ("text", "text_b")
    lines_input = False  # one line of text is one side only

    def input_problem(self, row, max_chars):
        if row.get("text_b") is None and row.get("text") is not None:
            return "row has no 'text_b' field (a pair row needs 'text' and 'text_b')"
        return text_problem(row.get("text"), "text", max_chars) or text_problem(row.get("text_b"), "text_b", max_chars)

    def build_inputs(self, builder, rows):
        """Both sides built like the graph stage builds them (``build`` on each text); a row without
        ``text_b`` (only trusted callers, e.g. evaluate's timing on plain texts) gets an empty side B."""
        graphs_a = builder.build([r["text"] for r in rows])
        graphs_b = builder.build([r.get("text_b") or "" for r in rows])
        return [{"graph": a, "graph_b": b} for a, b in zip(graphs_a, graphs_b)]

    def graph_problem(self, grow):
        for key, name in (("graph", "text"), ("graph_b", "text_b")):
            if grow[key]["num_nodes"] == 0:
                return f"no tokens in {name}"
        return None

    def record(self, logits, labels, graph) -> dict[str, Any]:
        out: dict[str, Any] = {"similarity": float(logits.reshape(-1)[0])}
        if labels and logits.numel() > 1:
            p = torch.softmax(logits.reshape(-1)[1:].float(), -1).tolist()
            out.update({"label": labels[int(np.argmax(p))], "probabilities": dict(zip(labels, p))})
        return out


def _empty_graph() -> dict[str, Any]:
    return {"num_nodes": 0, "lower": [], "pos": [], "sent": [], "dep_src": [], "dep_dst": [], "dep_rel": [],
            "co_src": [], "co_dst": [], "co_weight": []}
