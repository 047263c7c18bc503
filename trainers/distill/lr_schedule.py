"""The student's learning rate over training: constant, or a cosine decay to zero.

Progress is measured in epochs (epoch + fraction of its steps) over the curriculum's planned epochs,
not in optimizer steps: the curriculum's pacing changes the number of steps per epoch, and a function
of (epoch, step) needs no scheduler state in the checkpoint to resume exactly."""
from __future__ import annotations

import math


def lr_factor(kind: str, epoch: int, step: int, steps: int, epochs: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``steps`` in ``epoch`` of ``epochs``."""
    if kind == "constant":
        return 1.0
    progress = (epoch + step / max(steps, 1)) / max(epochs, 1)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown learning-rate schedule {kind!r}")
