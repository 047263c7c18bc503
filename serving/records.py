"""Prediction records: what one input row becomes in `tgd predict` output.

The record of a task is written by its task adapter (``trainers.tasks.<task>.record(logits,
labels, graph)``: classification ``{"label", "probabilities"}``, token ``{"tokens", "tags"}``,
pair ``{"similarity", ...}``), so the shape of an output lives in one place per task. Every task
is served; a row that cannot be predicted gets ``error_record``.
"""
from __future__ import annotations

from typing import Any


def error_record(message: str) -> dict[str, Any]:
    """The line of a row that could not be processed: never a gap, never a crash of the run."""
    return {"error": message}
