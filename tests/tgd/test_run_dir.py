"""A run directory can move: what a manifest points to inside it resolves under its new location."""
import os
import shutil
from pathlib import Path

from tests.conftest import make_config
from tests.fixtures.teacher_fixtures import review_corpus, tiny_bert
from tgd.config import TransferConfig
from tgd.stages import ensure, is_up_to_date
from trainers.teacher.model import finetuned_model_dir, head_labels

LABELS = ["fresh", "rotten"]


def _cfg(root, corpus, base, **teacher):
    t = {"model": str(base), "max_length": 24, "stride": 4, "max_windows": 8, "eval_batch_size": 5, **teacher}
    return make_config(root, data={"source": str(corpus), "labels": LABELS, "split_fractions": [0.6, 0.2, 0.2]},
                       teacher=t, ray={"num_workers": 2})


def test_moved_run_dir_resolves_its_own_finetuned_teacher(ray_local, tmp_path):
    corpus, base = review_corpus(tmp_path / "reviews.jsonl"), tiny_bert(tmp_path / "base")
    teacher = {"finetune": True, "epochs": 1, "min_steps": 1, "lr": 3e-3, "batch_size": 8}
    old = _cfg(tmp_path / "old", corpus, base, **teacher)
    m = ensure(old, "teacher-finetune", log=lambda _: None)
    assert m["model_path"] == "model"  # relative to the stage directory, not this machine's absolute path

    new = _cfg(tmp_path / "new", corpus, base, **teacher)
    shutil.copytree(old.run_dir, new.run_dir)
    shutil.rmtree(old.run_dir)
    assert is_up_to_date(new, "teacher-finetune")
    assert finetuned_model_dir(new) == new.run_dir / "teacher-finetune" / "model"
    assert head_labels(finetuned_model_dir(new)) == LABELS  # the moved copy's checkpoint, readable

    # a relative run_dir (as in configs/default.yaml): the Ray Train workers, which run in their own
    # working directory, load the moved teacher and label every document
    rel = new.model_copy(update={"run_dir": Path(os.path.relpath(new.run_dir)), "transfer": TransferConfig(copies=0)})
    assert not rel.run_dir.is_absolute() and finetuned_model_dir(rel) == new.run_dir / "teacher-finetune" / "model"
    m = ensure(rel, "teacher-logits", log=lambda _: None)
    assert m["output_rows"] == m["input_rows"] == 47


def test_kept_teacher_has_no_finetuned_dir(ray_local, tmp_path):
    corpus, base = review_corpus(tmp_path / "reviews.jsonl"), tiny_bert(tmp_path / "base", labels=LABELS)
    cfg = _cfg(tmp_path, corpus, base, finetune=False)
    m = ensure(cfg, "teacher-finetune", log=lambda _: None)
    assert m["model_path"] is None and finetuned_model_dir(cfg) is None
