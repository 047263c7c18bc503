"""The teacher recipe search's plan and bookkeeping (trainers/teacher/recipe.py), without training:
the rungs fit the budget, the worse half is dropped at each rung, and a re-run after a killed
driver goes on from the last finished training call instead of starting over."""
from __future__ import annotations

import math

import pytest

from trainers.teacher.recipe import Search, plan_search


@pytest.mark.parametrize("n,steps,budget", [(4, 200, 1.5), (3, 150, 1.5), (2, 40, 2.0), (5, 300, 1.2), (4, 7, 1.5)])
def test_plan_halves_to_one_within_the_budget(n, steps, budget):
    plan = plan_search([10.0 ** -k for k in range(n)], steps, budget)
    assert plan.survivors()[0] == n and len(plan.rungs) == math.ceil(math.log2(n))
    assert list(plan.rungs) == sorted(plan.rungs) and plan.rungs[0] == plan.round_steps >= 1
    assert plan.total_steps() <= max(budget * steps, steps + sum(plan.survivors()) * len(plan.rungs))
    if steps >= 100:
        assert plan.total_steps() <= budget * steps and plan.total_steps() > steps  # the budget is used, not exceeded


def test_one_rate_or_no_budget_means_no_search():
    assert plan_search([1e-4], 160, 1.5).rungs == ()
    assert plan_search([1e-4, 1e-3], 160, 1.0).lrs == (1e-4,)
    assert plan_search([1e-4, 1e-4], 160, 1.5).lrs == (1e-4,)  # a repeated rate is one candidate
    assert plan_search([1e-4], 160, 1.5).round_steps == 20


def _scripted_trainer(scores: dict[float, float], calls: list):
    """train_to for Search.run: each call appends one round per round_steps up to stop_at, scoring a
    candidate by its rate's entry in ``scores`` (plus a little per step, as training would)."""
    def train_to(search):
        def call(i, stop_at, patience):
            c = search.candidates[i]
            calls.append((c.lr, stop_at, patience))
            rounds = list(c.rounds)
            step = c.step
            while step < stop_at:
                step = min(stop_at, step + search.plan.round_steps)
                rounds.append({"step": step, "val_score": scores[c.lr] + step * 1e-4})
            return rounds, f"ckpt-{c.lr}-{step}"
        return call
    return train_to


def test_search_drops_the_worse_half_at_each_rung_and_trains_the_best_to_the_end(tmp_path):
    plan = plan_search([3e-5, 1e-4, 3e-4, 1e-3], 200, 1.5)
    search, calls = Search(plan, tmp_path / "search.json"), []
    scores = {3e-5: 0.50, 1e-4: 0.70, 3e-4: 0.80, 1e-3: 0.60}
    chosen = search.run(_scripted_trainer(scores, calls)(search), patience=3, log=lambda _: None)
    assert chosen.lr == 3e-4 and chosen.step == 200
    assert [c.dropped_at for c in search.candidates] == [plan.rungs[0], plan.rungs[1], None, plan.rungs[0]]
    assert calls[-1] == (3e-4, 200, 3) and all(p is None for *_, p in calls[:-1])  # patience only at the end
    rec = search.record(chosen)
    assert rec["lr"] == 3e-4 and rec["steps_trained"] == plan.total_steps() == 300
    assert chosen.latest == "ckpt-0.0003-200" and chosen.best_round()["step"] == 200


def test_a_tie_on_validation_goes_to_the_lower_training_loss(tmp_path):
    """Rates too gentle to move a prediction by the first rung tie on validation (the majority
    class); the one whose training loss has come further goes on."""
    plan = plan_search([3e-5, 1e-4], 100, 1.5)
    search = Search(plan, tmp_path / "search.json")

    def train_to(i, stop_at, patience):
        c = search.candidates[i]
        step = stop_at
        rounds = c.rounds + [{"step": step, "val_score": 0.33, "train_loss": 0.69 - 0.01 * i - step * 1e-4}]
        return rounds, f"ckpt-{i}-{step}"

    assert search.run(train_to, patience=None, log=lambda _: None).lr == 1e-4


def test_search_rerun_goes_on_from_the_saved_state(tmp_path):
    plan = plan_search([3e-5, 1e-4, 3e-4, 1e-3], 200, 1.5)
    scores = {3e-5: 0.50, 1e-4: 0.70, 3e-4: 0.80, 1e-3: 0.60}
    first, calls = Search(plan, tmp_path / "search.json"), []
    trainer = _scripted_trainer(scores, calls)(first)

    def killed(i, stop_at, patience):  # the driver dies during the fourth training call
        if len(calls) == 3:
            raise KeyboardInterrupt
        return trainer(i, stop_at, patience)

    with pytest.raises(KeyboardInterrupt):
        first.run(killed, patience=3, log=lambda _: None)
    assert len(calls) == 3
    again, more = Search(plan, tmp_path / "search.json"), []
    chosen = again.run(_scripted_trainer(scores, more)(again), patience=3, log=lambda _: None)
    assert more[0] == (1e-3, plan.rungs[0], None)  # the interrupted call, not the three before it
    assert chosen.lr == 3e-4 and len(calls) + len(more) == 4 + 2 + 1

    other = Search(plan_search([1e-4, 1e-3], 200, 1.5), tmp_path / "search.json")  # another plan: a fresh start
    assert all(not c.rounds for c in other.candidates)


def test_the_evaluate_table_states_the_recipe_and_the_search(tmp_path):
    from trainers.evaluate.report import markdown

    plan = plan_search([3e-5, 1e-4, 3e-4, 1e-3], 200, 1.5)
    search = Search(plan, tmp_path / "search.json")
    scores = {3e-5: 0.50, 1e-4: 0.70, 3e-4: 0.80, 1e-3: 0.60}
    chosen = search.run(_scripted_trainer(scores, [])(search), patience=3, log=lambda _: None)
    for c in search.candidates:  # the stage adds each round's epoch
        for r in c.rounds:
            r["epoch"] = r["step"] / 50
    rec = {**search.record(chosen), "best_step": 200, "seconds": 12.0}
    text = markdown([{"model": "teacher", "accuracy": 0.8}], teacher_recipe=rec)
    assert "Teacher recipe: learning rate 0.0003, 200 optimizer steps per worker; best validation score 0.8200 at " \
           "step 200 (epoch 4)" in text
    assert "3e-05: 0.5025 (dropped at step 25)" in text and "0.0003: 0.8200 (chosen)" in text
    assert "the search trained 300 steps per worker in 12 s" in text
