"""Is the teacher worth distilling from? A check on validation before the student trains.

Distillation pulls the student towards the teacher; a teacher that predicts worse than a model
trained on the labels alone pulls it down (measured: on 2,000 e-mails an under-trained teacher at
0.864 dragged the distilled student 8 points below the same GNN without a teacher). The GNN without
a teacher is too expensive to train before every run, so the yardstick is the bag-of-words baseline
of the evaluate table, which trains in seconds on the same split and is, on the built-in corpora,
at least as strong as the plain GNN. The teacher's validation accuracy comes from its stored
logits. ``distill.teacher_gate`` decides what happens when the teacher is the weaker party.
"""
from __future__ import annotations

from typing import Any

import torch

from trainers.distill.data import Prepared, unpack
from trainers.tasks import get_task


def assess_teacher(prepared: Prepared, cfg) -> dict[str, Any]:
    """{teacher_val_accuracy, bow_val_accuracy, weaker, message}: the teacher's validation score
    (its stored outputs) against the task's non-graph baseline (``bow``), trained in seconds on the
    same split. ``weaker`` is None when it cannot be judged (no teacher or no labelled validation)."""
    from trainers.evaluate.baselines import train_baseline

    task = get_task(prepared.task)
    val = [d for _, _, d in unpack(prepared.splits["validation"])]
    if not prepared.has_teacher or not val:
        return {"weaker": None, "message": "teacher not assessed (no teacher or no validation split)"}
    gold, teacher = (torch.cat(x).numpy() for x in zip(*(task.gold_and_teacher(d) for d in val)))
    labels = prepared.enc.labels
    train = [d for _, _, d in unpack(prepared.splits["train"])]
    ev = cfg.evaluate
    _, history = train_baseline(prepared.task, train, val, len(prepared.enc.vocab), labels, ev.bow_hidden,
                                ev.bow_epochs, cfg.distill.seed)
    headline = task.headline(labels)
    t_acc = task.scores(teacher, gold, None, labels)[headline]
    b_acc = max(h[f"val_{headline}"] for h in history)
    weaker = t_acc < b_acc
    verdict = ("WEAK TEACHER: it predicts worse than bag-of-words on validation, distilling from it would pull the "
               "student down" if weaker else "teacher stronger than bag-of-words on validation")
    return {"teacher_val_accuracy": round(t_acc, 4), "bow_val_accuracy": round(b_acc, 4), "weaker": weaker,
            "message": f"{verdict} (teacher {t_acc:.4f}, bag-of-words {b_acc:.4f})"}


def gate_active(mode: str, check: dict[str, Any] | None) -> bool:
    """``distill.teacher_gate``: on, off, or auto = on exactly when the teacher was found weaker."""
    return mode == "on" or (mode == "auto" and bool(check and check.get("weaker")))


def ensure_teacher_check(prepared: Prepared, cfg) -> None:
    """Assess the teacher once per prepared set when ``distill.teacher_gate`` is auto (before the
    set is shared by several students, so they do not each retrain the baseline)."""
    if cfg.distill.teacher_gate == "auto" and prepared.teacher_check is None:
        prepared.teacher_check = assess_teacher(prepared, cfg)
