"""The cascade: the student answers when it is confident, the teacher it was distilled from otherwise.

``CascadePredictor(student, teacher, defer_below=P)`` predicts every row with the student first;
a row whose student confidence is below ``P`` is predicted again by the teacher (the fine-tuned
checkpoint packaged by ``tgd export --with-teacher``, ``serving.teacher``) and gets the teacher's
record. Every answered record carries ``"answered_by": "student"`` or ``"teacher"``; an error record
(a row that cannot be predicted) stays as the student path writes it. A row the teacher fails on
keeps the student's answer, with ``"teacher_error"`` saying why.

Confidence (classification, the one task deferred for now): the student's largest class
probability, ``max(record["probabilities"].values())``. ``P = 0`` never defers; ``P = 1`` defers
every row the student is not certain about.
"""
from __future__ import annotations

from typing import Any, Iterable

from tgd.errors import UserError


class CascadeError(UserError, ValueError):
    """A cascade that cannot be built (bad threshold, a task that is not deferred)."""


def confidence(record: dict[str, Any]) -> float:
    """The student's confidence in its answer: its largest class probability."""
    return max(record["probabilities"].values())


class CascadePredictor:
    """Student first, the teacher below ``defer_below``; the ``predict_records`` contract of ``Predictor``."""

    def __init__(self, student, teacher, defer_below: float):
        if not 0.0 <= defer_below <= 1.0:
            raise CascadeError(f"--defer-below {defer_below}: a confidence threshold between 0 and 1")
        if student.task != "classification":
            raise CascadeError(f"--defer-below: only classification packages defer to the teacher, this one is "
                               f"{student.task!r}")
        self.student, self.teacher, self.defer_below = student, teacher, float(defer_below)
        self.task, self.labels = student.task, student.labels

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.student.inputs

    def check_format(self, fmt: str | None) -> None:
        self.student.check_format(fmt)

    def predict_records(self, rows: Iterable[dict[str, Any]], batch_size: int = 64) -> list[dict[str, Any]]:
        rows = list(rows)
        out = self.student.predict_records(rows, batch_size=batch_size)
        defer = [i for i, r in enumerate(out) if "error" not in r and confidence(r) < self.defer_below]
        answered = self.teacher.predict_records([rows[i] for i in defer], batch_size=batch_size) if defer else []
        for i, rec in zip(defer, answered):
            if "error" in rec:
                out[i] = out[i] | {"answered_by": "student", "teacher_error": rec["error"]}
            else:
                out[i] = rec | {"answered_by": "teacher"}
        deferred = set(defer)
        return [r if i in deferred or "error" in r else r | {"answered_by": "student"} for i, r in enumerate(out)]
