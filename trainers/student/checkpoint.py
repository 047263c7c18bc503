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


def load_student(path: Path):
    from tgd.config import StudentConfig

    blob = torch.load(path, map_location="cpu", weights_only=True)
    enc = GraphEncoding(**blob["encoding"])
    scfg = StudentConfig(**blob["student"])
    model = build_student(enc, scfg, blob["task"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), enc, blob
