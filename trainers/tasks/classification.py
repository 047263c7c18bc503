"""Document classification: one label per document, read out from the whole graph."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainers.tasks.base import Task
from trainers.tasks.scores import accuracy_f1, normalized_entropy


def expand_topk(logits: list[float], index: list[int] | None, rest: float | None, num_labels: int) -> np.ndarray:
    """Full-length logits from a top-k row: the k kept logits in place, every other label gets an
    equal share of the probability mass the teacher put outside the top k (``topk_rest``)."""
    logits = np.asarray(logits, dtype=np.float32)
    if index is None or len(index) == num_labels:
        return logits if index is None else logits[np.argsort(index)]
    kept = np.exp(logits - logits.max())
    kept = kept / kept.sum() * (1.0 - (rest or 0.0))
    others = num_labels - len(index)
    p = np.full(num_labels, max(rest or 0.0, 1e-8) / max(others, 1), dtype=np.float64)
    p[np.asarray(index)] = kept
    return np.log(np.maximum(p, 1e-12)).astype(np.float32)


class Classification(Task):
    name, head, teacher_head = "classification", "graph", "sequence"

    def decode_teacher(self, row, order, num_labels):
        if row.get("logits") is not None:
            full = expand_topk(row["logits"], row.get("topk_index"), row.get("topk_rest"), num_labels)
            row["logits"] = full[order].tolist()
        return row

    def set_targets(self, data, enc, label, tags, trow):
        data.y = torch.tensor([enc.label_index(label)], dtype=torch.long)
        C = len(enc.labels)
        logits = trow.get("logits") if trow else None
        data.t_logits = (torch.tensor(logits, dtype=torch.float32).view(1, C) if logits is not None
                         else torch.zeros(1, C))

    def teacher_uncertainty(self, data):
        return float(normalized_entropy(data.t_logits.double())[0])

    def targets(self, logits, batch, stage):
        return batch.y, logits, batch.t_logits

    def gate_weight(self, batch, t_kd):
        return ((t_kd.argmax(-1) == batch.y) | (batch.y < 0)).float()

    def gold_and_teacher(self, data):
        return data.y, data.t_logits.argmax(-1)

    def scores(self, pred, gold, teach, labels, lengths=None):
        m = gold >= 0
        s = accuracy_f1(gold[m], pred[m], list(range(len(labels))))
        out = {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}
        if teach is not None:
            out["agreement"] = float((pred == teach).mean())
        return out

    def record(self, logits, labels, graph) -> dict[str, Any]:
        p = torch.softmax(logits.float(), -1).tolist()
        return {"label": labels[int(np.argmax(p))], "probabilities": dict(zip(labels, p))}
