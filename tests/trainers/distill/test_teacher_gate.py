"""A weak teacher is detected on validation and cannot pull the student down: KD is kept only where
the teacher is right and the transfer set is dropped; a strong teacher trains as before."""
from __future__ import annotations

import torch

from tests.conftest import make_config
from tests.fixtures.student_data import make_run
from trainers.distill import losses
from trainers.distill.data import prepare
from trainers.distill.spec import build_spec
from trainers.distill.teacher_gate import gate_active


def _cfg(tmp_path, **distill):
    return make_config(tmp_path, student={"hidden": 16, "heads": 2, "pos_dim": 4, "vocab_min_count": 1},
                       distill=distill, evaluate={"bow_epochs": 4}, ray={"num_workers": 1})


def test_weak_teacher_is_found_and_gated(tmp_path):
    cfg = _cfg(tmp_path)
    make_run(cfg, n_docs=120, teacher_right=0.2, transfer_copies=1)
    prepared = prepare(cfg, use_teacher=True)
    spec, rows = build_spec(cfg, prepared, True, tmp_path / "fit")
    check = prepared.teacher_check
    assert check["weaker"] and check["teacher_val_accuracy"] < check["bow_val_accuracy"]
    assert "WEAK TEACHER" in check["message"]
    assert spec.teacher_gate and rows.num_rows == prepared.splits["train"].num_rows  # no transfer copies
    off = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"teacher_gate": "off"})})
    spec, rows = build_spec(off, prepared, True, tmp_path / "fit")
    assert not spec.teacher_gate and rows.num_rows > prepared.splits["train"].num_rows


def test_strong_teacher_keeps_kd_and_transfer(tmp_path):
    cfg = _cfg(tmp_path)
    make_run(cfg, n_docs=120, teacher_right=1.0, transfer_copies=1)
    prepared = prepare(cfg, use_teacher=True)
    spec, rows = build_spec(cfg, prepared, True, tmp_path / "fit")
    assert prepared.teacher_check["weaker"] is False and not spec.teacher_gate
    assert prepared.teacher_check["memorised"] is False and "MEMORISED" not in prepared.teacher_check["message"]
    assert rows.num_rows == prepared.splits["train"].num_rows + prepared.splits["transfer"].num_rows
    assert gate_active("on", prepared.teacher_check) and not gate_active("off", {"weaker": True})


def test_teacher_that_memorised_its_training_documents_is_flagged(tmp_path):
    cfg = _cfg(tmp_path)
    make_run(cfg, n_docs=120, teacher_right=0.7, teacher_right_train=1.0)
    prepared = prepare(cfg, use_teacher=True)
    build_spec(cfg, prepared, True, tmp_path / "fit")
    check = prepared.teacher_check
    assert check["memorised"] and check["teacher_train_accuracy"] == 1.0
    assert check["teacher_train_accuracy"] - check["teacher_val_accuracy"] > cfg.distill.teacher_fit_gap
    assert "MEMORISED TRAINING SET" in check["message"]
    lenient = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"teacher_fit_gap": 0.9})})
    prepared.teacher_check = None
    build_spec(lenient, prepared, True, tmp_path / "fit")
    assert not prepared.teacher_check["memorised"]


def test_gated_kd_ignores_documents_the_teacher_gets_wrong():
    student = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    teacher = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    right = torch.tensor([1.0, 0.0, 1.0])  # the teacher is wrong on the second document
    gated = losses.kd_kl(student, teacher, 2.0, right)
    assert torch.isclose(gated, losses.kd_kl(student[[0, 2]], teacher[[0, 2]], 2.0))
    assert losses.kd_kl(student, teacher, 2.0, torch.zeros(3)) == 0
    assert losses.ce(student, torch.tensor([-1, -1, -1])) == 0  # a batch of unlabelled copies
