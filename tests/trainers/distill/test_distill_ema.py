"""The student's weight average (``distill.ema_decay``): training is untouched, validation and the
kept student use the averaged weights."""
from __future__ import annotations

import json

import torch

from tests.conftest import make_config
from tests.fixtures.student_data import make_run
from trainers.distill.data import prepare
from trainers.distill.loop import train_in_process
from trainers.student.checkpoint import load_student

SMALL = {"hidden": 32, "heads": 2, "pos_dim": 8, "vocab_min_count": 1}


def _train(tmp_path, name: str, ema):
    d = {"epochs_align": 1, "epochs_fusion": 2, "epochs_adaptive": 1, "batch_size": 16, "pace_epochs": 2,
         "ema_decay": ema}
    cfg = make_config(tmp_path, student=SMALL, distill=d, ray={"num_workers": 1})
    if not (tmp_path / "run" / "graphs").exists():
        make_run(cfg)
    summary = train_in_process(cfg, tmp_path / name, prepare(cfg, use_teacher=True))
    return summary, load_student(tmp_path / name / "student.pt")[0].state_dict(), \
        json.loads((tmp_path / name / "history.json").read_text())


def test_ema_keeps_averaged_weights_and_leaves_training_alone(tmp_path):
    torch.set_num_threads(1)
    _, raw, h_raw = _train(tmp_path, "raw", None)
    _, tiny, h_tiny = _train(tmp_path, "tiny", 1e-9)  # an average that forgets at once = the raw weights
    _, avg, h_avg = _train(tmp_path, "avg", 0.9)
    loss = lambda h: [r["loss"] for r in h]
    assert loss(h_raw) == loss(h_tiny) == loss(h_avg)  # the same optimisation trajectory
    assert all(torch.allclose(raw[k], tiny[k], atol=1e-6) for k in raw)
    assert [r["val_accuracy"] for r in h_raw] == [r["val_accuracy"] for r in h_tiny]
    assert max((raw[k] - avg[k]).abs().max().item() for k in raw) > 1e-3  # kept: the average, not the last step
