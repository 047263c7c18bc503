"""The cascade curve and the validation-chosen threshold (trainers/evaluate/cascade.py) on units
whose outcomes are known, and how each task defines a unit's confidence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.evaluate.cascade import Outcomes, choose_threshold, curve
from trainers.tasks import get_task


def units(conf, student, teacher) -> Outcomes:
    """One labelled row per unit (documents)."""
    s = [np.array([bool(x)]) for x in student]
    t = [np.array([bool(x)]) for x in teacher]
    return Outcomes(np.asarray(conf, float), np.array(student), np.array(teacher), np.ones(len(conf), int), s, t)


# the student is wrong on its two least confident documents, the teacher right on all but one confident one
VAL = units([0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.991, 0.999],
            [0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1, 0, 1, 1])


def test_deferring_the_least_confident_units_takes_the_teachers_answers():
    assert VAL.accuracy_deferring(0) == 0.8  # the student alone
    assert VAL.accuracy_deferring(2) == 1.0  # its two errors answered by the teacher
    assert VAL.accuracy_deferring(10) == 0.9  # the teacher alone
    pts = curve(VAL, student_ms=2.0, teacher_ms=10.0, points=11)
    assert [p["deferred"] for p in pts] == pytest.approx([k / 10 for k in range(11)])
    assert pts[0]["cost_ms"] == 2.0 and pts[-1]["cost_ms"] == 12.0  # the deferred are predicted twice
    assert pts[2]["accuracy"] == 1.0 and 0.6 < pts[2]["threshold"] < 0.7


def test_threshold_is_the_fewest_deferrals_within_the_goal():
    c = choose_threshold(VAL, within_points=0.5, max_deferred=0.3)
    # one deferral gives 0.9, already the teacher's 0.9: the fewest within half a point
    assert c["validation"]["deferred"] == 0.1 and c["validation"]["accuracy"] == 0.9
    assert 0.55 < c["threshold"] < 0.6 and "fewest deferrals" in c["why"]
    assert (VAL.confidence < c["threshold"]).sum() == 1


def test_threshold_falls_back_to_the_best_point_under_the_deferral_cap():
    hard = units([0.5, 0.6, 0.7, 0.8], [0, 0, 0, 1], [1, 1, 1, 1])  # the goal needs 75% deferred
    c = choose_threshold(hard, within_points=0.5, max_deferred=0.5)
    assert c["validation"]["deferred"] == 0.5 and c["validation"]["accuracy"] == 0.75
    assert "most accurate point" in c["why"] and 0.6 < c["threshold"] < 0.7


def test_unit_confidence_per_task():
    doc = torch.tensor([2.0, 0.0])
    assert get_task("classification").unit_confidence(doc) == pytest.approx(torch.softmax(doc, -1).max().item())
    sentence = torch.tensor([[5.0, 0.0, 0.0], [0.2, 0.0, 0.1], [0.0, 4.0, 0.0]])  # one unsure token
    want = torch.softmax(sentence[1], -1).max().item()
    assert get_task("token").unit_confidence(sentence) == pytest.approx(want)
    assert get_task("token").cascade_unit == "sentence" and get_task("pair").cascade_unit is None
    assert get_task("pair").unit_confidence(torch.tensor([0.3])) is None
