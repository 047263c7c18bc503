"""The student's learning-rate schedule (``distill.lr_schedule``): the factor, and that training uses it."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import make_config
from tests.fixtures.student_data import make_run
from trainers.distill.data import prepare
from trainers.distill.loop import train_in_process
from trainers.distill.lr_schedule import lr_factor


def test_cosine_factor_runs_from_one_to_zero_over_the_planned_epochs():
    assert lr_factor("constant", 3, 5, 10, 8) == 1.0
    assert lr_factor("cosine", 0, 0, 10, 8) == 1.0
    assert lr_factor("cosine", 4, 0, 10, 8) == pytest.approx(0.5)
    assert lr_factor("cosine", 7, 10, 10, 8) == pytest.approx(0.0, abs=1e-12)
    f = [lr_factor("cosine", e, s, 10, 8) for e in range(8) for s in range(10)]
    assert all(a > b for a, b in zip(f, f[1:]))  # decreasing at every step
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("step", 0, 0, 1, 1)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_training_uses_the_schedule(tmp_path, schedule):
    torch.set_num_threads(1)
    d = {"epochs_align": 1, "epochs_fusion": 2, "epochs_adaptive": 1, "batch_size": 16, "pace_epochs": 2,
         "lr": 0.002, "lr_schedule": schedule}
    cfg = make_config(tmp_path, student={"hidden": 32, "heads": 2, "pos_dim": 8, "vocab_min_count": 1},
                      distill=d, ray={"num_workers": 1})
    make_run(cfg)
    train_in_process(cfg, tmp_path / "s", prepare(cfg, use_teacher=True))
    lrs = [r["lr"] for r in json.loads((tmp_path / "s" / "history.json").read_text())]
    if schedule == "constant":
        assert lrs == [0.002] * 4
    else:  # the last step of each epoch: decreasing, and the last step of training is at ~0
        assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[0] < 0.002 and lrs[-1] < 0.002 * 0.05
