"""Distillation on a real local Ray Train: 2 workers complete and checkpoint, a re-run resumes at
the next epoch, 1 worker with the same seed reproduces itself, and the stage keeps the student of
the learning rate best on validation."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import make_config
from tests.fixtures.student_data import make_run
from trainers.distill import loop
from trainers.distill.loop import latest_checkpoint, train_on_ray
from trainers.student.checkpoint import load_student

SMALL = {"hidden": 32, "heads": 2, "pos_dim": 8, "vocab_min_count": 1}


def _cfg(tmp_path, workers=2, **distill):
    d = {"epochs_align": 1, "epochs_fusion": 1, "epochs_adaptive": 1, "batch_size": 16, "node_budget": 16,
         "curriculum": True, "pace_epochs": 2, **distill}
    return make_config(tmp_path, student=SMALL, distill=d, ray={"num_workers": workers})


def test_two_workers_train_checkpoint_and_resume(ray_local, tmp_path):
    cfg = _cfg(tmp_path)
    make_run(cfg)
    out = tmp_path / "run" / "distill"
    summary = train_on_ray(cfg, out)
    hist = summary["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert [h["stage"] for h in hist] == ["align", "fusion", "adaptive"]
    assert "loss_bridge" in hist[0] and "loss_kd" in hist[1] and "loss_ce" in hist[2]
    assert hist[0]["train_docs"] < hist[2]["train_docs"]  # curriculum: easiest first, then all
    assert all(h["max_nodes_per_graph"] <= 16 for h in hist)  # node budget held during training
    assert hist[2]["temperature"] != pytest.approx(cfg.distill.temperature)  # adaptive rule in stage 3
    ck = latest_checkpoint(out / "ray")
    assert ck is not None and json.loads((ck / "epoch.json").read_text())["epoch"] == 2
    assert (out / "student.pt").is_file() and (out / "learning_curves.png").is_file()
    assert any((out / "tensorboard").iterdir())
    model, enc, blob = load_student(out / "student.pt")
    assert enc.labels == ["neg", "pos"] and blob["extra"]["use_teacher"]

    # Re-run with one more epoch: continues from the checkpoint at epoch 3, keeps the history.
    cfg2 = _cfg(tmp_path, epochs_adaptive=2)
    hist2 = train_on_ray(cfg2, out)["history"]
    assert [h["epoch"] for h in hist2] == [0, 1, 2, 3]
    assert hist2[:3] == hist
    assert json.loads((latest_checkpoint(out / "ray") / "epoch.json").read_text())["epoch"] == 3


def test_one_worker_same_seed_is_deterministic(ray_local, tmp_path):
    cfg = _cfg(tmp_path, workers=1, epochs_align=0, epochs_adaptive=1, epochs_fusion=1)
    make_run(cfg)
    a = train_on_ray(cfg, tmp_path / "a")["history"]
    b = train_on_ray(cfg, tmp_path / "b")["history"]
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(a) == strip(b)
    wa = load_student(tmp_path / "a" / "student.pt")[0].state_dict()
    wb = load_student(tmp_path / "b" / "student.pt")[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_stage_trains_one_student_per_rate_and_keeps_the_best_on_validation(ray_local, tmp_path):
    cfg = _cfg(tmp_path, workers=1, epochs_align=0, epochs_adaptive=0, epochs_fusion=2, curriculum=False,
               lr=2e-3, lr_factors=[1.0, 1e-3])  # 2e-6: a rate too small to learn anything in two epochs
    make_run(cfg)
    out = tmp_path / "run" / "distill"
    manifest = loop.run(cfg, out)
    search = manifest["lr_search"]
    assert [t["lr"] for t in search] == [2e-6, 2e-3]  # sorted, each trained into its own directory
    assert all((out / f"lr-{t['lr']:g}" / "student.pt").is_file() for t in search)
    best = max(search, key=lambda t: t["val_score"])
    assert [t["lr"] for t in search if t["chosen"]] == [best["lr"]] == [manifest["lr"]] and best["lr"] != 2e-6
    assert best["val_score"] == loop.saved_val_score(manifest)  # the saved student's, unseen words included
    kept = load_student(out / "student.pt")[0].state_dict()
    chosen = load_student(out / f"lr-{best['lr']:g}" / "student.pt")[0].state_dict()
    assert all(torch.equal(kept[k], chosen[k]) for k in kept)
    assert json.loads((out / "history.json").read_text()) == json.loads(
        (out / f"lr-{best['lr']:g}" / "history.json").read_text())
