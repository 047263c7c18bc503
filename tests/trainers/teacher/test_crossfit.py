"""Cross-fitted teacher outputs (teacher.folds): the fold rule, which teacher labels which document,
and the real stages on a local Ray with DeepSpeed engines and a tiny teacher: fold teachers train
on the other folds only, every training document and its transfer copies are labelled by its own
fold's teacher, everything else by the full teacher, and changing teacher.folds leaves the
fine-tuned teacher (and its recipe search) up to date."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.conftest import make_config
from tests.fixtures.teacher_fixtures import review_corpus, tiny_bert
from tgd.schema import DOCUMENTS, TEACHER, read_manifest, read_table, stage_dir
from tgd.stages import ensure, is_up_to_date
from trainers.teacher.crossfit import Labeller, assign, fold_of, labellers

LABELS = ["fresh", "rotten"]
QUIET = dict(log=lambda _: None)
pytestmark = pytest.mark.timeout(600)


def test_fold_rule_is_stable_balanced_and_follows_the_original():
    ids = [f"doc-{i}" for i in range(3000)]
    folds = [fold_of(i, 3) for i in ids]
    assert folds == [fold_of(i, 3) for i in ids]  # a pure function of the id
    assert min(Counter(folds).values()) > 900  # about a third each
    assert all(fold_of(f"{i}~aug{k}", 3) == fold_of(i, 3) for i in ids[:50] for k in range(3))


def _cfg(tmp_path, folds: int):
    base = tmp_path / "base"
    if not base.exists():
        tiny_bert(base)
    t = {"model": str(base), "finetune": True, "lr": 1e-2, "epochs": 6, "min_steps": 1, "batch_size": 8,
         "warmup_fraction": 0.0,
         "patience": None, "folds": folds, "max_length": 24, "stride": 4, "max_windows": 8, "eval_batch_size": 5,
         "state_dim": 8}
    return make_config(tmp_path, data={"source": str(review_corpus(tmp_path / "reviews.jsonl", n=160)),
                                       "labels": LABELS, "split_fractions": [0.6, 0.2, 0.2], "shard_words": 150},
                       teacher=t, transfer={"copies": 1}, ray={"num_workers": 2})


def test_fold_teachers_label_their_own_fold_and_the_full_teacher_the_rest(ray_local, tmp_path):
    cfg = _cfg(tmp_path, folds=2)
    ensure(cfg, "teacher-logits", **QUIET)
    ft, fm, lm = (read_manifest(cfg, s) for s in ("teacher-finetune", "teacher-folds", "teacher-logits"))
    docs = read_table(stage_dir(cfg, "ingest") / "documents", DOCUMENTS)
    split = dict(zip(docs.column("id").to_pylist(), docs.column("split").to_pylist()))
    train = [i for i, s in split.items() if s == "train"]

    assert ft["best_step"] > ft["history"][0]["step"]  # the teacher learned (else every teacher is its first round)
    # each fold teacher trained on the training documents outside its fold, with the chosen recipe
    assert fm["folds"] == 2 and len(fm["models"]) == 2
    for rec in fm["fold_teachers"]:
        assert rec["train_documents"] == sum(fold_of(i, 2) != rec["fold"] for i in train) > 0
        assert rec["labels_documents"] == len(train) - rec["train_documents"]
        assert rec["best_step"] <= ft["best_step"]

    teachers = labellers(cfg)
    assert [t.name for t in teachers] == ["full", "fold0", "fold1"]
    assert [t.teacher_id for t in teachers] == [ft["teacher_id"], f"{ft['teacher_id']}~fold0", f"{ft['teacher_id']}~fold1"]
    assert len({(t.model_path / "model.safetensors").read_bytes() for t in teachers}) == 3  # three different weights
    out = read_table(stage_dir(cfg, "teacher-logits"), TEACHER)
    ids, by = out.column("id").to_pylist(), out.column("teacher").to_pylist()
    assert sorted(ids) == sorted(set(ids)) and len(ids) == lm["input_rows"]  # every document once
    name = {t.teacher_id: t.name for t in teachers}
    for i, who in zip(ids, by):
        original = i.split("~aug")[0]
        want = f"fold{fold_of(i, 2)}" if split[original] == "train" else "full"
        assert name[who] == want, (i, split[original])
    assert lm["labelled_by"] == dict(Counter(name[w] for w in by)) and lm["folds"] == 2
    assert sum(s == "transfer" for s in out.column("split").to_pylist()) == len(train)  # copies: out of fold too
    assert np.isfinite(np.concatenate(out.column("logits").to_pylist())).all()

    # teacher.folds is read after fine-tuning: changing it re-runs the folds and the logits, not the search
    one = _cfg(tmp_path, folds=1)
    assert is_up_to_date(one, "teacher-finetune") and is_up_to_date(one, "graphs")
    assert not is_up_to_date(one, "teacher-folds")


def test_assign_without_fold_teachers_gives_everything_to_the_full_teacher(tmp_path):
    cfg = _cfg(tmp_path, folds=1)
    full = Labeller("full", tmp_path, "t", None)
    assert assign(cfg, ["a", "b~aug0"], [full]) == [0, 0]
