"""The accuracy / end-to-end latency Pareto front and the verdict under the evaluate table."""
from __future__ import annotations

from trainers.evaluate.pareto import pareto_front, verdict
from trainers.evaluate.report import markdown, plot_rows

# (model, accuracy, end-to-end ms at batch 1): the shape of a real table; gnn and fast_graph are
# dominated (distilled is more accurate and as fast or faster; bow beats fast_graph on both)
ROWS = [{"model": m, "accuracy": a, "e2e_latency_ms_b1": ms, "params": p}
        for m, a, ms, p in (("teacher", 0.834, 28.1, 22_700_000), ("distilled", 0.790, 13.0, 835_000),
                            ("gnn", 0.695, 13.8, 835_000), ("fast_graph", 0.710, 6.5, 813_000),
                            ("bow", 0.755, 0.59, 1_153_000))] + [{"model": "distilled_decomposed", "accuracy": 0.8}]


def test_front_keeps_only_undominated_rows_fastest_first():
    assert pareto_front(ROWS) == ["bow", "distilled", "teacher"]  # untimed rows are not on it


def test_a_tie_on_both_axes_keeps_both_and_a_strict_win_drops_the_other():
    tie = [{"model": "a", "accuracy": 0.8, "e2e_latency_ms_b1": 1.0}, {"model": "b", "accuracy": 0.8,
                                                                        "e2e_latency_ms_b1": 1.0}]
    assert pareto_front(tie) == ["a", "b"]
    assert pareto_front([*tie[:1], {"model": "c", "accuracy": 0.8, "e2e_latency_ms_b1": 0.9}]) == ["c"]


def test_verdict_names_the_row_for_accuracy_the_best_small_model_and_the_row_for_latency(tmp_path):
    line = verdict(ROWS)
    assert line.startswith("Verdict (end-to-end latency at batch 1; Pareto front: bow, distilled, teacher)")
    assert "for accuracy: teacher (accuracy 0.8340, 28.10 ms)" in line
    assert "the most accurate small model: distilled (accuracy 0.7900, 13.00 ms)" in line
    assert line.endswith("for latency: bow (accuracy 0.7550, 0.59 ms).")
    assert line in markdown(ROWS)
    assert verdict([{"model": "gnn", "accuracy": 0.9}]) == "Verdict: no row was timed end to end."
    plot_rows(ROWS, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 10_000
