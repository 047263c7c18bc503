"""Seed statistics and paired bootstrap intervals for the evaluate table.

One training run is one draw: two students differing by a point of accuracy may differ only by
their seeds. Rows that train a student report the mean and standard deviation over seeds, and a
comparison of two rows carries a paired bootstrap interval over the test documents (Efron &
Tibshirani 1993; the paired form used in NLP by Koehn 2004 and Berg-Kirkpatrick et al. 2012):
resample the test documents with replacement, recompute the difference of the two rows' accuracies
(each averaged over its seeds) on the same resample, and take the 2.5th and 97.5th percentiles. An
interval whose lower end is above 0 says the first row is better on this test set beyond what the
choice of test documents explains.

A rank correlation (pairs scored by similarity: Spearman) has no per-document correctness: its
interval resamples the test pairs the same way and recomputes each row's Spearman (averaged over its
seeds) on the resample (``paired_bootstrap_rank_ci``).
"""
from __future__ import annotations

import numpy as np


def seed_summary(accuracies: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single seed) of one row's per-seed accuracies."""
    a = np.asarray(accuracies, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def paired_bootstrap_ci(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 2000, seed: int = 0,
                        level: float = 0.95) -> list[float]:
    """[low, high] of accuracy(a) - accuracy(b) over bootstrap resamples of the test documents.

    ``correct_a`` / ``correct_b``: (seeds x documents) booleans, whether each seed's prediction of
    each test document is right (the two rows may have different numbers of seeds)."""
    a = np.atleast_2d(np.asarray(correct_a, dtype=np.float64)).mean(0)
    b = np.atleast_2d(np.asarray(correct_b, dtype=np.float64)).mean(0)
    if a.shape != b.shape:
        raise ValueError(f"rows scored on different test sets: {a.shape} vs {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # bounded memory for large test sets
        k = min(256, resamples - start)
        means[start:start + k] = diff[rng.integers(0, len(diff), size=(k, len(diff)))].mean(1)
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def outcome(task, pred, gold) -> np.ndarray:
    """Per prediction row (document, token or pair) what the paired intervals resample: whether it is
    right, or, for a rank correlation (pairs scored by similarity), the predicted score itself."""
    right = task.row_correct(pred, gold)
    return right if right is not None else np.asarray(pred, dtype=np.float64)


def spearman_rows(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Spearman of each row of ``pred`` (seeds x items) with ``gold`` (items): Pearson of the ranks."""
    from scipy.stats import rankdata

    rp, rg = rankdata(pred, axis=1), rankdata(gold)
    rp, rg = rp - rp.mean(1, keepdims=True), rg - rg.mean()
    den = np.sqrt((rp ** 2).sum(1) * (rg ** 2).sum())
    return np.where(den > 0, (rp * rg).sum(1) / np.maximum(den, 1e-300), 0.0)


def paired_bootstrap_rank_ci(pred_a: np.ndarray, pred_b: np.ndarray, gold: np.ndarray, resamples: int = 2000,
                             seed: int = 0, level: float = 0.95) -> list[float]:
    """[low, high] of Spearman(a) - Spearman(b) against ``gold`` over bootstrap resamples of the test
    items. ``pred_a`` / ``pred_b``: (seeds x items) predicted scores; each row's Spearman is the mean
    over its seeds on the same resample. Items whose gold score is missing are left out."""
    a, b = np.atleast_2d(np.asarray(pred_a, np.float64)), np.atleast_2d(np.asarray(pred_b, np.float64))
    g = np.asarray(gold, np.float64)
    if a.shape[1] != b.shape[1] or a.shape[1] != len(g):
        raise ValueError(f"rows scored on different test sets: {a.shape[1]} vs {b.shape[1]} vs {len(g)} items")
    keep = np.isfinite(g)
    a, b, g = a[:, keep], b[:, keep], g[keep]
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for k in range(resamples):
        idx = rng.integers(0, len(g), size=len(g))
        diffs[k] = spearman_rows(a[:, idx], g[idx]).mean() - spearman_rows(b[:, idx], g[idx]).mean()
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))]
