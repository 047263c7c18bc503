"""Accuracy, macro-F1 and Pearson r in plain numpy: the teacher's quality per split."""
from __future__ import annotations

import numpy as np


def accuracy_f1(gold: list, pred: list, labels: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 over ``labels`` (labels absent from both gold and pred are skipped)."""
    g, p = np.asarray(gold, dtype=object), np.asarray(pred, dtype=object)
    f1s = []
    for lab in labels:
        tp = int(np.sum((g == lab) & (p == lab)))
        fp = int(np.sum((g != lab) & (p == lab)))
        fn = int(np.sum((g == lab) & (p != lab)))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": round(float(np.mean(g == p)) if len(g) else 0.0, 4),
            "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4), "n": int(len(g))}


def pearson(x: list[float], y: list[float]) -> float:
    if len(x) < 2:
        return float("nan")
    return round(float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1]), 4)


def normalized_entropy(logits) -> np.ndarray:
    """Entropy of the softmax of each row, divided by its maximum (log of the number of labels)."""
    logits = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return -(p * np.log(np.clip(p, 1e-12, 1))).sum(1) / np.log(max(logits.shape[1], 2))
