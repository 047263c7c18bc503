"""`tgd tune` through the installed console script on a small real run (ingest, spaCy graphs, transfer
set, a tiny teacher): Ray Tune trials with ASHA, a trial table, and a best config that `tgd` accepts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_config
from tests.fixtures.teacher_fixtures import review_corpus, tiny_bert
from tgd.config import load_config
from tgd.stages import ensure

pytestmark = pytest.mark.timeout(600)


def test_tune_through_the_cli_writes_trials_and_a_runnable_best_config(ray_local, tmp_path):
    model = tiny_bert(tmp_path / "teacher", labels=["fresh", "rotten"])
    sections = dict(data={"source": str(review_corpus(tmp_path / "reviews.jsonl")), "labels": ["fresh", "rotten"],
                          "split_fractions": [0.6, 0.2, 0.2], "shard_words": 150},
                    teacher={"model": str(model), "finetune": False, "max_length": 24, "stride": 4, "max_windows": 8,
                             "eval_batch_size": 5, "state_dim": 8},
                    student={"hidden": 16, "heads": 2, "pos_dim": 4, "vocab_min_count": 1},
                    distill={"epochs_align": 1, "epochs_fusion": 2, "epochs_adaptive": 1, "batch_size": 8,
                             "pace_epochs": 1, "lr_factors": [0.5, 1.0]},
                    evaluate={"bow_epochs": 2},
                    tune={"num_samples": 4, "grace_epochs": 1, "reduction_factor": 2,
                          "space": {"distill.lr": [0.001, 0.01], "student.dropout": [0.0, 0.5]}})
    cfg = make_config(tmp_path, **sections)
    ensure(cfg, "teacher-logits", log=lambda _: None)  # the inputs, in this process's Ray
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))

    tgd = str(Path(sys.executable).parent / "tgd")
    done = subprocess.run([tgd, "tune", str(path)], capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[tune] best validation accuracy" in done.stdout and "teacher-logits] up to date" in done.stdout

    out = tmp_path / "run" / "tune"
    manifest = json.loads((out / "manifest.json").read_text())
    trials = json.loads((out / "trials.json").read_text())
    assert manifest["trials"] == len(trials) == 4 and manifest["failed"] == 0 and manifest["max_epochs"] == 4
    assert all(1 <= t["epochs"] <= 4 and 0 <= t["val_accuracy"] <= 1 for t in trials)
    assert all(t["settings"]["distill.lr"] in (0.001, 0.01) for t in trials)
    assert 0 <= manifest["stopped_early"] < 4 and manifest["epochs_trained"] == sum(t["epochs"] for t in trials)
    best = load_config(out / "best.yaml")
    top = max(trials, key=lambda t: t["val_accuracy"])
    assert best.distill.lr == top["settings"]["distill.lr"] and best.student.dropout == top["settings"]["student.dropout"]
    assert best.distill.lr_factors == [1.0] and cfg.distill.lr_factors != [1.0]  # tune's rate: no second search
    assert best.run_dir == cfg.run_dir and best.teacher == cfg.teacher  # the earlier stages stay up to date
    assert "| val_accuracy | epochs | distill.lr | student.dropout |" in (out / "trials.md").read_text()
