"""Save / load a trained student as one file: weights + the encoding + the model config."""
from __future__ import annotations

from pathlib import Path

import torch

from trainers.student.features import GraphEncoding
from trainers.student.model import Student


def build_student(enc: GraphEncoding, student_cfg, task: str) -> Student:
    return Student(len(enc.vocab), len(enc.pos), enc.num_edge_types, len(enc.labels), student_cfg, task)


def save_student(path: Path, state_dict, enc: GraphEncoding, student_cfg, task: str, extra: dict | None = None) -> None:
    tmp = Path(str(path) + ".tmp")
    torch.save({"state_dict": state_dict, "encoding": enc.state(), "student": student_cfg.model_dump(),
                "task": task, "extra": extra or {}}, tmp)
    tmp.replace(path)


def student_config(blob: dict):
    """The ``StudentConfig`` a saved student was built with (one saved before the static path existed
    has none)."""
    from tgd.config import StudentConfig

    return StudentConfig(**{"static_path": False, **blob["student"]})


def load_student(path: Path):
    blob = torch.load(path, map_location="cpu", weights_only=True)
    enc = GraphEncoding(**blob["encoding"])
    model = build_student(enc, student_config(blob), blob["task"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), enc, blob
