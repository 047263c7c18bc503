"""Prediction records: what one input row becomes in `tgd predict` output.

The record of a task is written by its task adapter (``trainers.tasks.<task>.record(logits,
labels, graph)``: classification ``{"label", "probabilities"}``, token ``{"tokens", "tags"}``,
pair ``{"similarity", ...}``), so the shape of an output lives in one place per task.
``SERVED`` lists the tasks whose whole serving path (input columns -> graph -> record) is wired;
serving the token and pair tasks means adding them here once the predictor builds their input
graphs (pre-tokenised sentences, sentence pairs).
"""
from __future__ import annotations

from typing import Any

SERVED = ("classification",)


def record_writer(task: str):
    """The task adapter that writes ``task``'s records; a task not served yet is refused by name."""
    if task not in SERVED:
        raise ValueError(f"prediction for task {task!r} is not served yet (served: {', '.join(SERVED)})")
    from trainers.tasks import get_task

    return get_task(task)


def error_record(message: str) -> dict[str, Any]:
    """The line of a row that could not be processed: never a gap, never a crash of the run."""
    return {"error": message}
