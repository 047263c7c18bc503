"""One adapter per task behind one interface (``trainers.tasks.base.Task``)."""
from __future__ import annotations

from trainers.tasks.base import Task
from trainers.tasks.classification import Classification
from trainers.tasks.pair import Pair
from trainers.tasks.token import Token

TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Token(), Pair())}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"data.task={name!r} has no task adapter; known: {', '.join(TASKS)}")
    return TASKS[name]
