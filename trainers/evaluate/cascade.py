"""The cascade curve: how much of the teacher's accuracy the student buys back by deferring its least
confident inputs to the teacher, and the threshold a deployment should use, chosen on validation.

A deferral unit is what a deployment answers as a whole: a document (classification), a sentence
(token labelling: every token of a deferred sentence gets the teacher's tag). A unit's confidence
is the task adapter's ``unit_confidence`` of the student's logits (classification: the largest class
probability; tokens: the least confident token's largest tag probability, so one unsure token
defers its sentence). Pairs have no cascade: a labelled pair has no pair-classifier teacher, and a
similarity score has no confidence.

Deferring the ``k`` least confident units of a split gives one point of the curve: the headline
accuracy when those units take the teacher's stored predictions (the outputs the student was
distilled from, so no teacher forward runs here) and the mean end-to-end cost per unit, the
student's latency plus the deferred fraction of the teacher's (every unit is parsed and predicted
by the student; the deferred ones are predicted again by the teacher).

The threshold is chosen on validation for a goal stated in config (``evaluate.cascade_within``,
``evaluate.cascade_max_deferred``): the fewest deferrals whose validation accuracy is within
``cascade_within`` points of the teacher's, if that defers at most ``cascade_max_deferred`` of the
units; else the most accurate point that does. The chosen threshold is then applied to the test
split, and the test point is reported with a paired bootstrap interval against the teacher.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from trainers.evaluate.statistics import paired_bootstrap_ci
from trainers.student.predict import logits_per_graph
from trainers.tasks import get_task

CURVE_POINTS = 21  # deferral fractions 0, 5%, ..., 100% in the report and the plot


@dataclass
class Outcomes:
    """One split's units: the student's confidence per unit, and per unit the correctness of the
    student's and the teacher's labelled rows (documents: one row; sentences: its labelled tokens)."""

    confidence: np.ndarray  # (units,)
    student_right: np.ndarray  # (units,) labelled rows the student gets right
    teacher_right: np.ndarray  # (units,) labelled rows the teacher gets right
    rows: np.ndarray  # (units,) labelled rows
    student_rows: list[np.ndarray]  # per unit, per labelled row: student right
    teacher_rows: list[np.ndarray]

    def accuracies(self) -> np.ndarray:
        """(units + 1,): accuracy when the ``k`` least confident units are answered by the teacher,
        for every ``k`` (one sort, cumulative sums)."""
        order = np.argsort(self.confidence, kind="stable")
        gain = np.concatenate([[0], np.cumsum(self.teacher_right[order] - self.student_right[order])])
        return (self.student_right.sum() + gain) / max(self.rows.sum(), 1)

    def accuracy_deferring(self, k: int) -> float:
        """Accuracy when the ``k`` least confident units are answered by the teacher."""
        return float(self.accuracies()[k])

    def accuracy(self, deferred: np.ndarray) -> float:
        right = np.where(deferred, self.teacher_right, self.student_right).sum()
        return float(right / max(self.rows.sum(), 1))

    def row_correct(self, deferred: np.ndarray) -> np.ndarray:
        """Per labelled row (units in order), whether the cascade with ``deferred`` units gets it right."""
        parts = [t if d else s for s, t, d in zip(self.student_rows, self.teacher_rows, deferred)]
        return np.concatenate(parts) if parts else np.zeros(0, bool)


def outcomes(model, datas: Sequence, node_budget: int | None = None) -> Outcomes | None:
    """The student's confidence and both models' correctness per unit of ``datas`` (encoded graphs
    carrying gold targets and the teacher's stored outputs); None when the task has no cascade."""
    task = get_task(model.task)
    logits = logits_per_graph(model, datas, node_budget)
    conf, s_rows, t_rows = [], [], []
    for lg, d in zip(logits, datas):
        c = task.unit_confidence(lg)
        if c is None:
            return None
        gold, teach = (x.numpy() for x in task.gold_and_teacher(d))
        pred = task.predictions(lg.reshape(-1, lg.shape[-1])).numpy()
        m = gold >= 0
        conf.append(c); s_rows.append(pred[m] == gold[m]); t_rows.append(teach[m] == gold[m])
    return Outcomes(np.asarray(conf, np.float64), np.array([r.sum() for r in s_rows]),
                    np.array([r.sum() for r in t_rows]), np.array([len(r) for r in s_rows]), s_rows, t_rows)


def _threshold(conf_sorted: np.ndarray, k: int) -> float:
    """The confidence threshold deferring exactly the ``k`` least confident units (defer when below)."""
    if k == 0:
        return 0.0
    if k >= len(conf_sorted):
        return 1.0
    return float((conf_sorted[k - 1] + conf_sorted[k]) / 2)


def curve(o: Outcomes, student_ms: float | None, teacher_ms: float | None,
          points: int = CURVE_POINTS) -> list[dict[str, float]]:
    """Accuracy and mean end-to-end cost per unit at evenly spaced deferral fractions."""
    n = len(o.confidence)
    conf_sorted, accs = np.sort(o.confidence), o.accuracies()
    out = []
    for f in np.linspace(0, 1, points):
        k = int(round(f * n))
        point = {"deferred": k / max(n, 1), "threshold": _threshold(conf_sorted, k), "accuracy": float(accs[k])}
        if student_ms is not None and teacher_ms is not None:
            point["cost_ms"] = student_ms + point["deferred"] * teacher_ms
        out.append(point)
    return out


def choose_threshold(val: Outcomes, within_points: float, max_deferred: float) -> dict[str, Any]:
    """The validation-chosen threshold (module docstring) and why it was chosen."""
    n = len(val.confidence)
    teacher = float(val.teacher_right.sum() / max(val.rows.sum(), 1))
    accs = val.accuracies()
    cap = int(np.floor(max_deferred * n + 1e-9))
    reach = np.flatnonzero(accs >= teacher - within_points / 100)
    if len(reach) and reach[0] <= cap:
        k, why = int(reach[0]), f"the fewest deferrals within {within_points:g} point(s) of the teacher on validation"
    else:
        k = int(np.argmax(accs[: cap + 1]))
        why = (f"no point within {within_points:g} point(s) of the teacher defers at most {max_deferred:.0%} on "
               f"validation: the most accurate point that does")
    return {"threshold": _threshold(np.sort(val.confidence), k), "why": why,
            "validation": {"deferred": k / max(n, 1), "accuracy": float(accs[k]), "teacher": teacher,
                           "student": float(accs[0])}}


def cascade_report(model, val_datas: Sequence, test_datas: Sequence, student_ms: float | None,
                   teacher_ms: float | None, within_points: float, max_deferred: float, resamples: int,
                   seed: int) -> dict[str, Any] | None:
    """The ``cascade`` entry of the evaluate stage (its metrics.json and cascade.json, and the
    threshold `tgd export --with-teacher` carries): the validation choice, the chosen point on test
    with its interval against the teacher, and both curves. None for a task without a cascade."""
    val, test = outcomes(model, val_datas), outcomes(model, test_datas)
    if val is None or test is None or not len(val.confidence) or not len(test.confidence):
        return None
    chosen = choose_threshold(val, within_points, max_deferred)
    deferred = test.confidence < chosen["threshold"]
    ok = test.row_correct(deferred)
    teacher_ok = np.concatenate(test.teacher_rows)
    point = {"deferred": float(deferred.mean()), "accuracy": test.accuracy(deferred),
             "teacher": float(teacher_ok.mean()), "student": test.accuracy(np.zeros_like(deferred)),
             "ci95_vs_teacher": paired_bootstrap_ci(ok[None], teacher_ok[None], resamples, seed)}
    if student_ms is not None and teacher_ms is not None:
        point["cost_ms"] = student_ms + point["deferred"] * teacher_ms
        point["teacher_cost_ms"] = teacher_ms
    return {"unit": get_task(model.task).cascade_unit, "goal": {"within_points": within_points,
                                                                "max_deferred": max_deferred},
            **chosen, "test": point, "curve": {"validation": curve(val, student_ms, teacher_ms),
                                               "test": curve(test, student_ms, teacher_ms)}}


def markdown(c: dict[str, Any]) -> str:
    """The cascade's lines under the evaluate table."""
    t, v = c["test"], c["validation"]
    lo, hi = t["ci95_vs_teacher"]
    cost = (f", mean end-to-end cost {t['cost_ms']:.2f} ms per {c['unit']} (teacher alone {t['teacher_cost_ms']:.2f})"
            if "cost_ms" in t else "")
    lines = ["", f"Cascade (student first, the teacher below confidence {c['threshold']:.4f}, chosen on validation: "
             f"{c['why']}; validation: {v['deferred']:.1%} deferred, accuracy {v['accuracy']:.4f} vs teacher "
             f"{v['teacher']:.4f}): on test {t['deferred']:.1%} of {c['unit']}s deferred, accuracy {t['accuracy']:.4f} "
             f"(student {t['student']:.4f}, teacher {t['teacher']:.4f}; cascade - teacher "
             f"{100 * (t['accuracy'] - t['teacher']):+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] points){cost}.",
             "", "| deferred | threshold | test accuracy | cost ms |", "|---|---|---|---|"]
    for p in c["curve"]["test"][::2]:
        lines.append(f"| {p['deferred']:.0%} | {p['threshold']:.4f} | {p['accuracy']:.4f} | "
                     + (f"{p['cost_ms']:.2f} |" if "cost_ms" in p else "- |"))
    return "\n".join(lines)


def plot(c: dict[str, Any], path, headline: str = "accuracy") -> None:
    """Accuracy against the fraction deferred (validation and test), the chosen point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for split, style in (("validation", "--"), ("test", "-")):
        pts = c["curve"][split]
        ax.plot([p["deferred"] for p in pts], [p["accuracy"] for p in pts], style, marker=".", label=split)
    t = c["test"]
    ax.axhline(t["teacher"], color="grey", lw=0.8, label="teacher (test)")
    ax.plot([t["deferred"]], [t["accuracy"]], "r*", ms=12, label=f"chosen: below {c['threshold']:.3f}")
    ax.set_xlabel(f"fraction of {c['unit']}s deferred to the teacher"); ax.set_ylabel(headline)
    ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)

