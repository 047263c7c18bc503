"""What each task refuses, checked when the config is validated (before any stage runs).

The ground floor's part of the task interface; the training-side adapters are ``trainers/tasks/``.
Each check returns why the config cannot work, naming the keys to change, or None.
"""
from __future__ import annotations

from typing import Callable


def _token(cfg) -> str | None:
    if cfg.teacher.kind == "causal-lm":
        return ("teacher.kind=causal-lm has no per-token label head, so data.task=token would pull the student's node "
                "logits toward zeros: use an encoder teacher (teacher.kind=encoder)")
    if cfg.graph.merge_repeated:
        return ("graph.merge_repeated=true merges repeated words into one node, so the gold tags of data.task=token no "
                "longer map one to one onto nodes: set graph.merge_repeated=false")
    return None


def _pair(cfg) -> str | None:
    if cfg.teacher.kind == "causal-lm":
        return ("teacher.kind=causal-lm gives no sentence embeddings, which data.task=pair distils (the teacher's "
                "similarity is the cosine of its mean-pooled embeddings): use an encoder teacher (teacher.kind=encoder)")
    if "no_adaptive_t" in cfg.evaluate.ablations:
        return ("evaluate.ablations has no_adaptive_t, but data.task=pair regresses the teacher's similarity (no "
                "temperature to adapt), so that row would repeat the distilled one: drop no_adaptive_t")
    return None


UNSUPPORTED: dict[str, Callable] = {"token": _token, "pair": _pair}


def unsupported(cfg) -> str | None:
    """Why ``cfg``'s task cannot run with the rest of ``cfg``, else None."""
    check = UNSUPPORTED.get(cfg.data.task)
    return check(cfg) if check else None
