"""Scores shared by the task adapters: accuracy, macro-F1 and Pearson r (plain numpy), and the
normalised entropy of a distribution."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


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


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax of each row divided by its maximum, log(number of labels): 0 = one-hot,
    1 = uniform. The curriculum's difficulty (stored teacher logits, in float64 so ranks do not tie
    by rounding) and stage 3's temperature (a batch's teacher logits) both read it."""
    logp = F.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1) / math.log(max(logits.shape[-1], 2))
