"""`tgd tune`: search the student and distillation settings on validation with Ray Tune.

Each trial is one distilled student trained in a single process (``trainers.distill.fit``,
with the distill stage's global batch) on one shared object-store copy of the encoded graphs; it
reports its validation score after every epoch (the task's headline metric: accuracy, or Spearman
for pair scores; kept under the key ``val_accuracy``), and ASHA (Li et al. 2020) stops the weaker trials
at rungs of ``grace_epochs`` x ``reduction_factor``^k epochs, so most of the budget goes to the
promising settings. Trials draw their settings at random from ``tune.space`` (null: the task's own
space, ``tgd/tasks.py``). Only the validation split is used: the test split stays for ``tgd
evaluate``. The best settings are written as a run config (``RUN_DIR/tune/best.yaml``) that ``tgd
run`` takes as it is; the earlier stages stay up to date.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainers.distill.data import Prepared, prepare
from trainers.distill.fit import FitContext
from trainers.distill.loop import train_in_process

BEST_CONFIG = "best.yaml"


def _trial(settings: dict[str, Any], base: dict[str, Any], prepared: Prepared) -> None:
    """One Ray Tune trial: train a distilled student with ``settings``, report validation accuracy per epoch."""
    from ray import tune

    from tgd.config import RunConfig
    from trainers.tasks import get_task

    cfg = RunConfig.model_validate(base).with_changes(settings)
    headline = get_task(cfg.data.task).headline(prepared.enc.labels)

    def report(row, _snapshot):  # "val_accuracy": the task's headline metric (Spearman for pair scores), as in fit
        tune.report({"val_accuracy": row[f"val_{headline}"], "epoch": row["epoch"]})

    # ".": the trial's directory
    train_in_process(cfg, Path("."), prepared, True, FitContext(report=report), save=False)


def run(cfg, out_dir: Path, log=print) -> dict[str, Any]:
    """Stage entry point: the search, a table of every trial, and the best settings as a config."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from tgd.config import dump_yaml
    from trainers.distill import curriculum
    from trainers.distill.teacher_gate import ensure_teacher_check

    tc, dc = cfg.tune, cfg.distill
    prepared = prepare(cfg, use_teacher=True)
    ensure_teacher_check(prepared, cfg)  # once, not in every trial
    epochs = len(curriculum.stages(dc.epochs_align, dc.epochs_fusion, dc.epochs_adaptive, True))
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=cfg.model_dump(mode="json"), prepared=prepared),
        {"cpu": cfg.ray.cpus_per_worker})
    space = cfg.tune_space()
    log(f"[tune] {tc.num_samples} trials over {', '.join(space)}; ASHA: {epochs} epochs at most, "
        f"grace {tc.grace_epochs}, reduction {tc.reduction_factor}")
    tuner = tune.Tuner(
        trainable, param_space={k: tune.choice(v) for k, v in space.items()},
        tune_config=tune.TuneConfig(
            metric="val_accuracy", mode="max", num_samples=tc.num_samples,
            search_alg=BasicVariantGenerator(random_state=tc.seed),
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=tc.grace_epochs,
                                    reduction_factor=tc.reduction_factor)),
        run_config=tune.RunConfig(name="tune", storage_path=str((out_dir / "ray").resolve()), verbose=0))
    results = tuner.fit()
    trials = []
    for r in results:
        history = r.metrics_dataframe
        if r.error or history is None or history.empty:
            trials.append({"settings": r.config, "error": str(r.error)[:300], "epochs": 0, "val_accuracy": None})
            continue
        best = history.loc[history["val_accuracy"].idxmax()]
        trials.append({"settings": r.config, "epochs": int(len(history)), "val_accuracy": float(best["val_accuracy"]),
                       "best_epoch": int(best["epoch"])})
    done = [t for t in trials if t["val_accuracy"] is not None]
    if not done:
        raise RuntimeError(f"every tune trial failed; first error: {trials[0].get('error')}")
    best = max(done, key=lambda t: t["val_accuracy"])
    # a rate the search chose is the rate to run: the distill stage then trains that one student only
    pinned = {"distill.lr_factors": [1.0]} if "distill.lr" in best["settings"] else {}
    (out_dir / BEST_CONFIG).write_text(dump_yaml(cfg.with_changes({**best["settings"], **pinned})))
    (out_dir / "trials.json").write_text(json.dumps(trials, indent=2))
    (out_dir / "trials.md").write_text(_markdown(trials, list(space)))
    log("\n" + (out_dir / "trials.md").read_text())
    log(f"[tune] best validation accuracy {best['val_accuracy']:.4f} with {best['settings']}; "
        f"run it: tgd run {out_dir / BEST_CONFIG}")
    return {"input_rows": prepared.splits["train"].num_rows, "output_rows": len(trials), "trials": len(trials),
            "stopped_early": sum(t["epochs"] < epochs for t in done), "failed": len(trials) - len(done),
            "epochs_trained": sum(t["epochs"] for t in trials), "max_epochs": epochs,
            "best": best, "best_config": BEST_CONFIG}


def _markdown(trials: list[dict], keys: list[str]) -> str:
    rows = sorted(trials, key=lambda t: -(t["val_accuracy"] or -1))
    lines = ["| " + " | ".join(["val_accuracy", "epochs", *keys]) + " |", "|" + "---|" * (len(keys) + 2)]
    for t in rows:
        acc = "failed" if t["val_accuracy"] is None else f"{t['val_accuracy']:.4f}"
        lines.append("| " + " | ".join([acc, str(t["epochs"]), *(str(t["settings"].get(k)) for k in keys)]) + " |")
    return "\n".join(lines) + "\n"
