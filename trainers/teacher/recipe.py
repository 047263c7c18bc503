"""The teacher's fine-tuning recipe, chosen on validation within a budget: which learning rate, how long.

No single learning rate fine-tunes every head on every corpus: a fresh token head over many tags
needs a rate several times a sentence classifier's, and a small corpus needs more passes than a
large one to reach the same number of optimizer steps. So the rate is searched by successive
halving (Jamieson & Talwalkar, 2016): every candidate in ``teacher.lr_grid`` trains for a first
rung of steps; the better half by validation score goes on to twice as many, and so on until one
is left, which trains to the end with early stopping. Every candidate follows the same schedule
(warm-up, then linear decay over the whole run's length), so one continued from a rung carries on
exactly as if it had never stopped, and the search costs only the steps of the candidates it drops.

``teacher.budget`` bounds that cost: all candidates' optimizer steps together are at most
``budget`` times one run's. The run's length in steps is the larger of ``teacher.min_steps`` and
``teacher.epochs`` passes over the training split, so a corpus of a few thousand documents still
gets enough steps to fit its head. A validation round (score + checkpoint) closes every rung's
worth of steps; this module is the plan and the bookkeeping, ``finetune.py`` trains.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROUNDS_WITHOUT_SEARCH = 8  # validation rounds of a run with one candidate (a fixed teacher.lr)


@dataclass(frozen=True)
class SearchPlan:
    """``lrs``: the candidates; ``steps``: the run's length per worker (every candidate's schedule);
    ``round_steps``: optimizer steps between validations; ``rungs``: the step counts after which
    the field is halved (empty: one candidate, nothing to choose)."""
    lrs: tuple[float, ...]
    steps: int
    round_steps: int
    rungs: tuple[int, ...]

    def survivors(self) -> list[int]:
        """How many candidates train up to each rung (the first: all of them)."""
        alive = [len(self.lrs)]
        for _ in self.rungs[1:]:
            alive.append(math.ceil(alive[-1] / 2))
        return alive

    def total_steps(self) -> int:
        """Optimizer steps per worker of the whole search if nothing stops early."""
        alive = self.survivors() + [1]
        return self.steps + sum((alive[k] - alive[k + 1]) * r for k, r in enumerate(self.rungs))


def plan_search(lrs: list[float], steps: int, budget: float) -> SearchPlan:
    """Rungs at r, 2r, 4r, ... steps, halving the field after each until one candidate is left, with
    the first rung r as long as ``budget`` allows: the dropped candidates' steps sum to at most
    (budget - 1) x ``steps``."""
    lrs = tuple(dict.fromkeys(lrs))  # a repeated rate is one candidate
    if len(lrs) == 1 or budget <= 1:
        return SearchPlan(lrs[:1], steps, max(math.ceil(steps / ROUNDS_WITHOUT_SEARCH), 1), ())
    alive, cost_per_r = [len(lrs)], 0  # cost of the dropped candidates in units of r
    while alive[-1] > 1:
        alive.append(math.ceil(alive[-1] / 2))
        cost_per_r += (alive[-2] - alive[-1]) * 2 ** (len(alive) - 2)
    # the last rung at most half the run, so the one left still trains most of it after the choice
    r = max(min(int((budget - 1) * steps / cost_per_r), steps // 2 ** (len(alive) - 1)), 1)
    rungs = tuple(min(r * 2 ** k, steps) for k in range(len(alive) - 1))
    return SearchPlan(lrs, steps, r, rungs)


@dataclass
class Candidate:
    """One learning rate's validation rounds so far (each: step, validation score, ...), the Ray
    Train checkpoint of its latest round (what it continues from) and, once dropped, the rung it was
    dropped at. Its best round's weights are kept apart from Ray Train's checkpoints (``finetune.py``)."""
    lr: float
    rounds: list[dict] = field(default_factory=list)
    latest: str | None = None
    dropped_at: int | None = None

    @property
    def step(self) -> int:
        return self.rounds[-1]["step"] if self.rounds else 0

    @property
    def best(self) -> float:
        return max((r["val_score"] for r in self.rounds), default=-math.inf)

    @property
    def train_loss(self) -> float:
        """The last round's mean training loss: breaks ties of the validation score (rates that have
        not yet moved a prediction still differ in how far they have come)."""
        return self.rounds[-1].get("train_loss", math.inf) if self.rounds else math.inf

    def best_round(self) -> dict:
        """The round with the best validation score (the earliest of equals)."""
        return max(self.rounds, key=lambda r: (r["val_score"], -r["step"]))


# train(candidate index, stop at step, early-stopping patience or None) -> (all rounds so far, the
# path of the latest round's checkpoint)
TrainTo = Callable[[int, int, "int | None"], "tuple[list[dict], str]"]


class Search:
    """Successive halving over ``plan``, its state saved to ``state_file`` after every training call
    so that a re-run after a killed driver goes on from the last finished call."""

    def __init__(self, plan: SearchPlan, state_file: Path):
        self.plan, self.state_file = plan, state_file
        saved = json.loads(state_file.read_text()) if state_file.is_file() else None
        if saved and saved["plan"] == self._plan_json():
            self.candidates = [Candidate(**c) for c in saved["candidates"]]
        else:
            self.candidates = [Candidate(lr) for lr in plan.lrs]

    def _plan_json(self) -> dict:
        """The plan as its JSON round trip reads back (tuples as lists): what a saved state must match."""
        return json.loads(json.dumps(asdict(self.plan)))

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"plan": self._plan_json(), "candidates": [asdict(c) for c in self.candidates]}))
        tmp.replace(self.state_file)

    def _train(self, i: int, stop_at: int, patience: int | None, train_to: TrainTo) -> None:
        c = self.candidates[i]
        if c.step >= stop_at:  # done before a killed driver's re-run
            return
        c.rounds, c.latest = train_to(i, stop_at, patience)
        self._save()

    def run(self, train_to: TrainTo, patience: int | None, log: Callable[[str], None] = print) -> Candidate:
        """Train the rungs, drop the worse half after each, train the last one left to the end."""
        alive = [i for i, c in enumerate(self.candidates) if c.dropped_at is None]
        for k, stop_at in enumerate(self.plan.rungs):
            for i in alive:
                self._train(i, stop_at, None, train_to)
            keep = math.ceil(len(alive) / 2)
            ranked = sorted(alive, key=lambda i: (-self.candidates[i].best, self.candidates[i].train_loss, i))
            for i in ranked[keep:]:
                self.candidates[i].dropped_at = stop_at
            alive = sorted(ranked[:keep])
            self._save()
            log(f"[teacher-finetune] rung {k + 1}/{len(self.plan.rungs)} at step {stop_at}: "
                + ", ".join(f"lr {self.candidates[i].lr:g} {self.candidates[i].best:.4f}"
                            + ("" if i in alive else " (dropped)") for i in ranked))
        (last,) = alive
        self._train(last, self.plan.steps, patience, train_to)
        return self.candidates[last]

    def record(self, chosen: Candidate) -> dict:
        """The manifest's account of the search: the plan, every candidate's validation rounds and
        where it was dropped, and the optimizer steps it cost."""
        keys = ("step", "epoch", "val_score", "val_accuracy", "val_macro_f1")
        return {"lr": chosen.lr, "steps": self.plan.steps, "round_steps": self.plan.round_steps,
                "rungs": list(self.plan.rungs), "steps_trained": sum(c.step for c in self.candidates),
                "candidates": [{"lr": c.lr, "dropped_at": c.dropped_at, "best_val_score": c.best,
                                "rounds": [{k: r.get(k) for k in keys} for r in c.rounds]}
                               for c in self.candidates]}
