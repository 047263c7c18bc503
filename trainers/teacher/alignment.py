"""Teacher sub-words -> graph nodes (spaCy tokens), by character offsets into the same text.

The teacher's tokenizer and spaCy split text differently ("unbelievable" -> "un ##believ ##able";
"don't" -> spaCy "do" + "n't"). Both keep character offsets, so a node takes the sub-words whose
span overlaps its own span. ``first`` uses the first such sub-word (the usual choice for tagging),
``mean`` averages all of them. A node no sub-word overlaps (text the teacher never saw) is marked
unaligned and gets zeros: nothing is invented.
"""
from __future__ import annotations

import numpy as np


def align_nodes(node_start, node_end, tok_start, tok_end) -> list[np.ndarray]:
    """For each node, the indices of the sub-words overlapping it, in text order.

    Sub-words with an empty span (special tokens, offsets (0, 0)) never match.
    """
    ts = np.asarray(tok_start, dtype=np.int64)
    te = np.asarray(tok_end, dtype=np.int64)
    real = np.flatnonzero(te > ts)
    order = real[np.argsort(ts[real], kind="stable")]
    starts, ends = ts[order], te[order]
    # Sub-word spans do not overlap each other, so ends are sorted along with starts.
    out = []
    for a, b in zip(np.asarray(node_start, dtype=np.int64), np.asarray(node_end, dtype=np.int64)):
        lo = np.searchsorted(ends, a, side="right")  # first sub-word ending after the node starts
        hi = np.searchsorted(starts, b, side="left")  # sub-words starting before the node ends
        out.append(order[lo:hi] if hi > lo and b > a else np.zeros(0, dtype=np.int64))
    return out


def pool_nodes(values: np.ndarray, groups: list[np.ndarray], mode: str = "first") -> tuple[np.ndarray, np.ndarray]:
    """Node rows from sub-word rows: ``values`` [tokens x D] -> ([nodes x D], aligned[nodes])."""
    if mode not in ("first", "mean"):
        raise ValueError(f"alignment must be 'first' or 'mean', got {mode!r}")
    out = np.zeros((len(groups), values.shape[1]), dtype=np.float32)
    aligned = np.zeros(len(groups), dtype=bool)
    for i, g in enumerate(groups):
        if len(g):
            out[i] = values[g[0]] if mode == "first" else values[g].mean(axis=0)
            aligned[i] = True
    return out, aligned
