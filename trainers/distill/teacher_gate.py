"""Is the teacher worth distilling from? A check on validation before the student trains.

Distillation pulls the student towards the teacher; a teacher that predicts worse than a model
trained on the labels alone pulls it down, below the same GNN trained without a teacher. The GNN
without a teacher is too expensive to train before every run, so the yardstick is the bag-of-words
baseline of the evaluate table, cheap enough to train on the same split before every run and
usually at least as strong as the plain GNN. The teacher's validation accuracy comes from its stored logits.
``distill.teacher_gate`` decides what happens when the teacher is the weaker party.

A teacher can also be strong on validation and still teach little: one that has memorised its
training documents gives them near-one-hot outputs that say no more than the gold labels
(docs/RESULTS.md, "Teacher recipe", has the measurement). The check reports that gap and warns
when it exceeds ``distill.teacher_fit_gap``.
"""
from __future__ import annotations

from typing import Any

import torch

from trainers.distill.data import Prepared, unpack
from trainers.tasks import get_task


def assess_teacher(prepared: Prepared, cfg) -> dict[str, Any]:
    """{teacher_val_accuracy, bow_val_accuracy, weaker, teacher_train_accuracy, memorised, message}:
    the teacher's validation score (its stored outputs) against the task's non-graph baseline
    (``bow``), trained on the same split (cheap: no graphs), and its score on the training documents.
    ``weaker`` is None when it cannot be judged (no teacher or no labelled validation)."""
    from trainers.evaluate.baselines import train_baseline

    task = get_task(prepared.task)
    val = [d for _, _, d in unpack(prepared.splits["validation"])]
    if not prepared.has_teacher or not val:
        return {"weaker": None, "message": "teacher not assessed (no teacher or no validation split)"}
    labels = prepared.enc.labels
    headline = task.headline(labels)
    train = [d for _, _, d in unpack(prepared.splits["train"])]
    t_acc, t_train = (_teacher_score(task, docs, labels) for docs in (val, train))
    ev = cfg.evaluate
    _, history = train_baseline(prepared.task, train, val, len(prepared.enc.vocab), labels, ev.bow_hidden,
                                ev.bow_epochs, cfg.distill.seed)
    b_acc = max(h[f"val_{headline}"] for h in history)
    weaker = t_acc < b_acc
    verdict = ("WEAK TEACHER: it predicts worse than bag-of-words on validation, distilling from it would pull the "
               "student down" if weaker else "teacher stronger than bag-of-words on validation")
    memorised = t_train - t_acc > cfg.distill.teacher_fit_gap
    fit = (f"MEMORISED TRAINING SET: the teacher scores {t_train:.4f} on its training documents against {t_acc:.4f} on "
           "validation, so its outputs there are close to the gold labels and teach the student little; cross-fitted "
           "outputs (teacher.folds: 2 or more) give the student targets from teachers that never saw those documents "
           "(docs/DESIGN.md, \"Memorising teacher\")"
           if memorised else f"teacher on its training documents {t_train:.4f}")
    return {"teacher_val_accuracy": round(t_acc, 4), "bow_val_accuracy": round(b_acc, 4), "weaker": weaker,
            "teacher_train_accuracy": round(t_train, 4), "memorised": memorised,
            "message": f"{verdict} (teacher {t_acc:.4f}, bag-of-words {b_acc:.4f}); {fit}"}


def _teacher_score(task, docs: list, labels: list[str]) -> float:
    """The task's headline score of the teacher's stored outputs on ``docs``."""
    gold, teacher = (torch.cat(x).numpy() for x in zip(*(task.gold_and_teacher(d) for d in docs)))
    return task.scores(teacher, gold, None, labels)[task.headline(labels)]


def gate_active(mode: str, check: dict[str, Any] | None) -> bool:
    """``distill.teacher_gate``: on, off, or auto = on exactly when the teacher was found weaker."""
    return mode == "on" or (mode == "auto" and bool(check and check.get("weaker")))


def ensure_teacher_check(prepared: Prepared, cfg) -> None:
    """Assess the teacher once per prepared set when ``distill.teacher_gate`` is auto (before the
    set is shared by several students, so they do not each retrain the baseline)."""
    if cfg.distill.teacher_gate == "auto" and prepared.teacher_check is None:
        prepared.teacher_check = assess_teacher(prepared, cfg)
