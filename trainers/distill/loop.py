"""`tgd distill`: the drivers around ``fit`` (``trainers.distill.fit``, the training loop itself).

``train_on_ray`` is the distill stage: Ray Train (TorchTrainer, DDP) over ``ray.num_workers``
workers. The driver puts the prepared graphs into Ray Data datasets; each worker reads its shard
with ``ray.train.get_dataset_shard``, keeps it in memory and runs ``fit``. Rank 0 checkpoints every
epoch through Ray Train; a worker failure restarts from the latest checkpoint (``FailureConfig``),
a re-run of an interrupted stage resumes from the latest checkpoint on disk.

``train_in_process`` trains one student in this process with the stage's global batch (the same
optimizer steps): evaluate's rows and tune's trials, which Ray runs side by side as tasks.

Both save the best epoch's student, its history and learning curves the same way (``_finish``).
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.distill import curriculum, unseen_words
from trainers.distill.curves import plot_history
from trainers.distill.data import Prepared, prepare, unpack
from trainers.distill.fit import FitContext, fit
from trainers.distill.spec import FitSpec, build_spec
from trainers.student.checkpoint import save_student

SHARD_BATCH_ROWS = 256  # rows per Arrow batch when a worker reads its dataset shard (any size works; fewer copies)


def train_loop(config: dict[str, FitSpec]) -> None:
    """Runs on every Ray Train worker (``config["spec"]``: the student's spec, Ray Train's loop config
    is a dict): its shard of the training set, DDP, checkpoints through Ray Train."""
    import ray.train
    import ray.train.torch

    spec = config["spec"]
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()

    def materialize(name):
        rows = []
        for b in ray.train.get_dataset_shard(name).iter_batches(batch_size=SHARD_BATCH_ROWS, batch_format="pyarrow"):
            rows.extend(unpack(b))
        return sorted(rows, key=lambda x: x[0])

    train = materialize("train")
    val = [d for _, _, d in materialize("validation")] if rank == 0 else []

    def report(row, snapshot):
        metrics_row = {k: v for k, v in row.items() if v is not None}
        if snapshot is None:
            ray.train.report(metrics_row)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(snapshot(), Path(d) / "state.pt")
            (Path(d) / "epoch.json").write_text(json.dumps({"epoch": row["epoch"]}))
            ray.train.report(metrics_row, checkpoint=ray.train.Checkpoint.from_directory(d))

    state = None
    ckpt = ray.train.get_checkpoint()  # set after a worker failure (FailureConfig restart)
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=True)
    elif spec.resume_dir:  # a re-run of an interrupted / extended training
        state = torch.load(Path(spec.resume_dir) / "state.pt", map_location="cpu", weights_only=True)
    fit(spec, [x[2] for x in train], np.array([x[1] for x in train]), val,
        FitContext(rank=rank, world=ctx.get_world_size(), device=ray.train.torch.get_device(),
                   wrap=lambda m: ray.train.torch.prepare_model(
                       m, parallel_strategy_kwargs={"find_unused_parameters": True}),
                   report=report, state=state, log=lambda line: print(line, flush=True)))


def latest_checkpoint(storage: Path) -> Path | None:
    """The checkpoint with the highest epoch under ``storage`` (Ray Train's layout), if any."""
    best, best_epoch = None, -1
    for f in storage.glob("*/checkpoint_*/epoch.json"):
        e = json.loads(f.read_text())["epoch"]
        if e > best_epoch and (f.parent / "state.pt").is_file():
            best, best_epoch = f.parent, e
    return best


def _finish(cfg, out_dir: Path, spec: FitSpec, prepared: Prepared, use_teacher: bool, train_docs: int,
            history: list, best: dict, log=print) -> dict[str, Any]:
    """Save the best epoch's student (a distilled one with rows for the teacher's whole words it never
    saw where ``student.unseen_words`` says so), its history and learning curves; the run's summary."""
    state, enc = best["state"], spec.encoding
    extra = {"best_epoch": best["epoch"], "val_accuracy": best["accuracy"], "use_teacher": use_teacher,
             "training_vocabulary": len(enc.vocab)}
    if use_teacher:
        enc, state, extra["unseen_words"] = unseen_words.choose(cfg, enc, state, log)
    if "static_mix" in state:  # the GNN's share of the pair similarity, learned (student.static_path)
        extra["static_mix"] = round(float(torch.sigmoid(state["static_mix"])), 4)
    save_student(out_dir / "student.pt", state, enc, cfg.student, prepared.task, extra)
    plot_history(history, out_dir / "learning_curves.png")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))  # last: marks a finished student
    return {"train_docs": train_docs, "epochs": len(history), "best_epoch": best["epoch"],
            "val_accuracy": best["accuracy"], "history": history, "teacher_check": prepared.teacher_check,
            "teacher_gate": spec.teacher_gate, "unseen_words": (extra.get("unseen_words") or {}),
            "static_mix": extra.get("static_mix")}


def _announce_teacher(spec: FitSpec, prepared: Prepared, log) -> None:
    check = prepared.teacher_check
    if check:
        banner = "!" * 100 if check.get("weaker") or check.get("memorised") else ""
        log("\n".join(x for x in (banner, f"[distill] {check['message']}", banner) if x))
    if spec.teacher_gate:
        log("[distill] teacher gate on: KD only on training documents whose gold label the teacher predicts, "
            "no transfer set (distill.teacher_gate)")


def train_on_ray(cfg, out_dir: Path, prepared: Prepared | None = None, use_teacher: bool | None = None,
                 log=print) -> dict[str, Any]:
    """Train one student on Ray Train (``ray.num_workers`` DDP workers) into ``out_dir``; its summary.
    Ray must be running (the stage runner starts it once per command)."""
    import ray
    import ray.train

    from trainers.raytrain import make_trainer

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    dcfg = cfg.distill
    use_teacher = dcfg.use_teacher if use_teacher is None else use_teacher
    prepared = prepared or prepare(cfg, use_teacher, cfg.student.edges)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    spec, train_tbl = build_spec(cfg, prepared, use_teacher, out_dir, workers=cfg.ray.num_workers)
    _announce_teacher(spec, prepared, log)
    storage = out_dir / "ray"
    resume = latest_checkpoint(storage)
    if resume is not None:
        log(f"[distill] found checkpoint {resume}; resuming")
        spec = spec.with_resume(resume)
    trainer = make_trainer(
        cfg, train_loop, {"spec": spec}, name=f"run-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6}",
        storage=storage, checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1), max_failures=dcfg.max_failures,
        datasets={"train": ray.data.from_arrow(train_tbl),
                  "validation": ray.data.from_arrow(prepared.splits["validation"])},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]), stage="distill")
    total = len(curriculum.stages(dcfg.epochs_align, dcfg.epochs_fusion, dcfg.epochs_adaptive, spec.has_teacher))
    if resume is not None and json.loads((resume / "epoch.json").read_text())["epoch"] >= total - 1:
        state = torch.load(resume / "state.pt", map_location="cpu", weights_only=True)  # already finished
    else:
        with trainer.fit().checkpoint.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=True)
    return _finish(cfg, out_dir, spec, prepared, use_teacher, train_tbl.num_rows, state["history"], state["best"],
                   log)


def train_in_process(cfg, out_dir: Path, prepared: Prepared, use_teacher: bool | None = None,
                     ctx: FitContext = FitContext(), save: bool = True) -> dict[str, Any]:
    """Train one student in this process (no DDP, no per-epoch checkpoints) with the distill stage's
    global batch (``distill.batch_size`` x ``ray.num_workers``), so it takes the same optimizer steps
    as the stage's student. ``save``: write the student into ``out_dir`` (tune's trials only report).
    Returns the summary (``save``) or ``fit``'s result."""
    use_teacher = cfg.distill.use_teacher if use_teacher is None else use_teacher
    out_dir = Path(out_dir).resolve()
    if save:
        out_dir.mkdir(parents=True, exist_ok=True)
    spec, train_tbl = build_spec(cfg, prepared, use_teacher, out_dir, workers=1)
    spec = replace(spec, verbose=False)
    train = unpack(train_tbl)
    val = [d for _, _, d in unpack(prepared.splits["validation"])]
    result = fit(spec, [x[2] for x in train], np.array([x[1] for x in train]), val, ctx)
    if not save:
        return result
    return _finish(cfg, out_dir, spec, prepared, use_teacher, train_tbl.num_rows, result["history"], result["best"])


def learning_rates(cfg) -> list[float]:
    """The rates the distill stage tries: ``distill.lr`` times each of ``distill.lr_factors``."""
    return sorted({float(f"{cfg.distill.lr * f:.6g}") for f in cfg.distill.lr_factors})


def saved_val_score(summary: dict[str, Any]) -> float:
    """The validation score of the student as saved: with the teacher's words for unseen ones where
    ``student.unseen_words`` chose them on validation (they can move it more than the rate does)."""
    return max((summary["unseen_words"].get("validation") or {}).values(), default=summary["val_accuracy"])


CHOSEN_FILES = ("student.pt", "history.json", "learning_curves.png")  # what the stage's readers take from its dir


def choose_learning_rate(cfg, out_dir: Path, log=print) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One student per rate (``learning_rates``) into ``out_dir/lr-<rate>/``, each resumable on its
    own; the one with the best validation score is copied to ``out_dir``. The best rate moves with the
    optimizer steps an epoch holds (the corpus size), so validation picks it rather than a corpus YAML.
    Returns the chosen student's summary and one record per rate."""
    prepared = prepare(cfg, cfg.distill.use_teacher, cfg.student.edges)
    tried, summaries = [], {}
    for lr in learning_rates(cfg):
        t0 = time.time()
        log(f"[distill] learning rate {lr:g}: training a student (distill.lr_factors)")
        summaries[lr] = train_on_ray(cfg.with_changes({"distill.lr": lr}), out_dir / f"lr-{lr:g}", prepared, log=log)
        tried.append({"lr": lr, "val_score": saved_val_score(summaries[lr]), "best_epoch": summaries[lr]["best_epoch"],
                      "seconds": round(time.time() - t0, 1)})
        log(f"[distill] learning rate {lr:g}: best validation score {tried[-1]['val_score']:.4f} "
            f"(epoch {tried[-1]['best_epoch']}, {tried[-1]['seconds']:.0f}s)")
    chosen = max(tried, key=lambda t: (t["val_score"], -t["lr"]))["lr"]  # a tie: the gentler rate
    for t in tried:
        t["chosen"] = t["lr"] == chosen
    for name in CHOSEN_FILES:
        shutil.copy2(out_dir / f"lr-{chosen:g}" / name, out_dir / name)
    log(f"[distill] chosen learning rate {chosen:g} (" + ", ".join(f"{t['lr']:g}: {t['val_score']:.4f}"
                                                                  for t in tried) + ")")
    return {**summaries[chosen], "lr": chosen}, tried


def run(cfg, out_dir: Path) -> dict[str, Any]:
    """Stage entry point: one student per learning rate, the best on validation kept."""
    out_dir = Path(out_dir).resolve()
    summary, tried = choose_learning_rate(cfg, out_dir)
    return {"input_rows": summary["train_docs"], "output_rows": 1, "epochs": summary["epochs"],
            "best_epoch": summary["best_epoch"], "val_accuracy": summary["val_accuracy"],
            "lr": summary["lr"], "lr_search": tried,
            "teacher_check": summary["teacher_check"], "teacher_gate": summary["teacher_gate"],
            "unseen_words": summary["unseen_words"], "static_mix": summary["static_mix"],
            "final": dict(summary["history"][-1])}
