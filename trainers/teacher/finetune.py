"""Stage ``teacher-finetune``: fine-tune the teacher with DeepSpeed inside Ray Train TorchTrainers.

The learning rate is chosen on validation by the recipe search (``recipe.py``: successive halving
over ``teacher.lr_grid`` within ``teacher.budget``; ``teacher.lr`` fixes it); each of the search's
training calls is one Ray Train run of ``worker_loop``, which trains one candidate from its last
checkpoint up to a given step. Data-parallel over ``ray.num_workers`` workers with ZeRO stage
``teacher.zero_stage`` (``auto``: 0, DeepSpeed's plain data parallel, whenever the fp32 weights,
gradients and AdamW moments fit a worker; ZeRO-2 would add an all-gather of the updated parameters
to every step for nothing); each worker reads its equal Ray Data shard of the training split. A
long document contributes ``teacher.train_windows`` randomly sampled windows per epoch (default
one; every window would cost Brown ~20x more per epoch), each with the document's label.
Micro-batches are cut from length-sorted shuffle buffers (``BUCKET_BATCHES`` micro-batches each), so
a batch is padded to its own longest window, not to the longest of a random sample; the workers
check that all still have data once per buffer, not once per step. Training is validated in
rounds of the search's ``round_steps`` steps; the time split of each round's loop (data, collation,
forward, backward with the gradient all-reduce, optimizer step, validation) goes to the manifest's
history as ``timing``, and ``teacher.patience`` rounds without a better score stop the chosen
candidate early.
Validation (all windows, averaged, as the logits stage does) is reported per round together with a
Ray Train checkpoint: the HF weights (rank 0) and DeepSpeed's own checkpoint (every rank writes its
part: the optimizer moments, ZeRO partitions and LR schedule), so an interrupted call resumes at the
next round on the same data order (windows and batches are seeded by epoch, dropout by round, and
the steps already taken are replayed). A re-run after a killed driver finds the search's state in
``search.json`` and the running call's checkpoints through Ray Train's run snapshot in
``teacher-finetune/_ray`` (same run name and storage); a worker failure restarts from the latest one
(``FailureConfig``). The chosen candidate's best round is copied out as a plain Hugging Face
directory ``RUN_DIR/teacher-finetune/model``, recorded in the manifest relative to the stage
directory (``trainers.teacher.model.finetuned_model_dir`` resolves it) so that a run directory can
move; the manifest's ``recipe`` records the search. With ``teacher.finetune: false`` (or a
zero-shot ``causal-lm`` teacher, or the pair task whose teacher is the sentence-embedding model)
the given checkpoint is passed through untouched.
"""
from __future__ import annotations

import itertools
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tgd.config import RunConfig, TeacherConfig
from tgd.errors import StageError
from tgd.schema import DOCUMENTS, read_manifest, stage_dir
from trainers.seeding import epoch_seed
from trainers.shard_split import split_config
from trainers.teacher.inference import DOCS_PER_BATCH
from trainers.teacher.model import head_labels, resolve_model_path, teacher_id, weights_fingerprint
from trainers.teacher.recipe import Search, plan_search
from trainers.teacher.windows import Windower

if TYPE_CHECKING:
    from trainers.tasks import Task

MODEL_DIR = "model"  # the best checkpoint as a HF directory, inside the stage directory
PROGRESS_EVERY = 20  # steps between progress lines (rank 0)
PROBE_DOCS = 8  # validation documents whose logits are stored to check that the saved checkpoint reloads
BUCKET_BATCHES = 8  # micro-batches per length-sorted shuffle buffer (dynamic padding)
DEEPSPEED_DIR = "deepspeed"  # inside a Ray Train checkpoint: DeepSpeed's per-rank engine checkpoint
HISTORY_FILE = "history.json"  # inside a Ray Train checkpoint: the validation rounds trained so far
CANDIDATES_DIR = "candidates"  # each candidate's best round so far, as a HF directory (lr<i>/)
SEARCH_FILE = "search.json"  # the recipe search's state while it runs (a re-run after a killed driver goes on)


def training_rows(cfg: RunConfig, split: str) -> pa.Table:
    from trainers.tasks import get_task

    cols = ["id", "split", "text", "text_b", "label", "tokens", "tags"]
    files = sorted((stage_dir(cfg, "ingest") / "documents").glob("part-*.parquet"))
    t = pa.concat_tables(pq.read_table(f, schema=DOCUMENTS, columns=cols, filters=[("split", "=", split)])
                         for f in files)
    task = get_task(cfg.data.task)
    spans = [task.validation_nodes(toks) for toks in t.column("tokens").to_pylist()]
    t = t.append_column("node_start", pa.array([s for s, _ in spans], pa.list_(pa.int64())))
    t = t.append_column("node_end", pa.array([e for _, e in spans], pa.list_(pa.int64())))
    return t


def make_batch(docs: dict[str, list], windower: Windower, task: Task, label_index: dict[str, int],
               rng: np.random.Generator, per_doc: int = 1) -> tuple[list[list[int]], list]:
    """``per_doc`` distinct sampled windows per document (all when it has fewer) -> (input rows,
    labels per row)."""
    encs = windower.encode(docs["text"])
    rows, labels = [], []
    for d, e in enumerate(encs):
        spans = windower.spans(len(e.ids))
        # one window: the draw the stage always made (runs stay reproducible); several: distinct ones
        picks = rng.integers(len(spans), size=1) if per_doc == 1 else \
            rng.choice(len(spans), size=min(per_doc, len(spans)), replace=False)
        for a, b in (spans[int(i)] for i in picks):
            rows.append(windower.wrap(e.ids[a:b]))
            labels.append(task.finetune_target(docs, d, e, a, b, windower, label_index))
    return rows, labels


def rounds_without_improvement(history: list[dict]) -> int:
    """Validation rounds since the score last improved (a tie is no improvement)."""
    best = max(range(len(history)), key=lambda i: (history[i]["val_score"], -i))
    return len(history) - 1 - best


def length_buckets(lengths: list[int], batch_size: int, order_rng: np.random.Generator,
                   tie_rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of one shuffle buffer cut into micro-batches of similar window length, in random order.

    Sorting by length (ties broken at random) before batching pads each micro-batch only to its own
    longest window instead of the buffer's. ``order_rng`` orders the micro-batches: seeded the same
    on every worker, so workers take their k-th shortest micro-batches at the same step and none
    waits long at the gradient all-reduce for another's longer batch.
    """
    order = np.lexsort((tie_rng.random(len(lengths)), np.asarray(lengths)))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in order_rng.permutation(len(batches))]


class PhaseTimer:
    """Wall seconds per phase of the training loop (what the manifest's ``timing`` reports)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._t
        self._t = now


def worker_loop(config: dict[str, Any]) -> None:
    from trainers.teacher.deepspeed_env import (
        checkpoint_parameters,
        choose_zero_stage,
        free_device_bytes,
        setup_worker,
        training_config,
    )

    device = setup_worker(config["use_gpu"], config["threads"])
    import deepspeed
    import ray.train
    import torch
    import torch.distributed as dist
    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    from trainers.tasks import get_task
    from trainers.teacher.inference import TeacherForward, pad_batch, process
    from trainers.teacher.model import load_model, load_tokenizer

    tcfg = TeacherConfig.model_validate(config["teacher"])
    task, labels, path = get_task(config["task"]), config["labels"], Path(config["model_path"])
    label_index = {l: i for i, l in enumerate(labels)}
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(tcfg.seed)

    zero, why = choose_zero_stage(tcfg.zero_stage, checkpoint_parameters(path),
                                  free_device_bytes(config["use_gpu"], device), world, tcfg.memory_safety)
    if tcfg.zero_stage == "auto":  # one stage for all: the highest any worker needs
        top = torch.tensor([float(zero)], device=device)
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        if int(top.item()) != zero:
            zero, why = int(top.item()), f"auto: another worker has less free memory and needs ZeRO-{int(top.item())}"
    if rank == 0:
        print(f"[teacher-finetune] zero_stage={zero} ({why})", flush=True)

    # This call trains one candidate (``lr``) from where its checkpoint left off up to step ``stop_at``
    # of a schedule ``horizon`` steps long, validating every ``round_steps`` (see recipe.py).
    spe, lr, horizon, stop_at = config["steps_per_epoch"], config["lr"], config["horizon"], config["stop_at"]
    round_steps, patience = config["round_steps"], config["patience"]
    ds_config = training_config(tcfg.batch_size, zero, lr, tcfg.weight_decay, horizon,
                                int(tcfg.warmup_fraction * horizon))
    dschf = HfDeepSpeedConfig(ds_config) if zero == 3 else None  # noqa: F841
    model = load_model(path, tcfg.kind, task.teacher_head, labels, train=True)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
                                      config=ds_config)
    tok = load_tokenizer(path)
    windower = Windower(tok, tcfg.max_length, tcfg.stride, tcfg.max_windows)
    pad = tok.pad_token_id

    def all_min(x: int) -> int:
        t = torch.tensor([float(x)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def any_all(flag: bool) -> bool:
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.item() > 0

    def evaluate() -> tuple[dict[str, float], list]:
        engine.module.eval()
        vcfg = tcfg.model_copy(update={"node_states": False, "topk": None})
        fwd = TeacherForward(engine.module, "encoder", task.name, pad, device)
        batches = ({k: list(v) for k, v in b.items()}
                   for b in ray.train.get_dataset_shard("validation").iter_batches(batch_size=DOCS_PER_BATCH,
                                                                                   batch_format="pandas"))
        gold_of = {}
        gold, pred = [], []

        def remember(b):
            for i, d in enumerate(b["id"]):
                gold_of[d] = b[task.teacher_gold][i]
            return b

        # Only ZeRO-3 forwards are collective (parameters gathered layer by layer): only then must a
        # worker with no validation left keep stepping with the others.
        for rows in process((remember(b) for b in batches), fwd, vcfg, task, windower, None, "",
                            any_all if zero == 3 else None):
            for r in rows:
                row_gold, row_pred = task.teacher_predictions(r, gold_of[r["id"]], labels)
                gold.extend(row_gold)
                pred.extend(row_pred)
        both = [None] * world
        dist.all_gather_object(both, (gold, pred))
        g = [x for gp in both for x in gp[0]]
        p = [x for gp in both for x in gp[1]]
        # Probe: the same few documents on every rank (ZeRO-3 forwards are collective).
        probe = config["probe_texts"]
        out = fwd([windower.wrap(e.ids[a:b]) for e in windower.encode(probe) for a, b in e.windows[:1]])
        engine.module.train()
        return task.teacher_scores(g, p, labels), out["logits"].tolist()

    def train_batches(epoch: int, timer: PhaseTimer):
        """(input ids, mask, targets) per micro-batch: a shuffle buffer of BUCKET_BATCHES micro-batches
        is read, ``train_windows`` windows sampled per document, cut into length-sorted micro-batches."""
        rng = np.random.default_rng([tcfg.seed, epoch, rank])  # windows and ties: per worker
        chunk = BUCKET_BATCHES * tcfg.batch_size
        it = ray.train.get_dataset_shard("train").iter_batches(
            batch_size=chunk, batch_format="pandas", local_shuffle_buffer_size=2 * chunk,
            local_shuffle_seed=tcfg.seed + epoch)
        for c, b in enumerate(it):
            timer.lap("ray_data")
            rows, lab = make_batch({k: list(v) for k, v in b.items()}, windower, task, label_index, rng,
                                  tcfg.train_windows)
            order_rng = np.random.default_rng([tcfg.seed, epoch, c])  # the same on every worker
            for idx in length_buckets([len(r) for r in rows], tcfg.batch_size, order_rng, rng):
                ids, mask = pad_batch([rows[i] for i in idx], pad)
                y = task.finetune_batch_targets([lab[i] for i in idx])
                timer.lap("collate")
                yield ids, mask, y

    def micro_batches(timer: PhaseTimer):
        """Every micro-batch of the run in order, epoch after epoch: (epoch, ids, mask, targets).
        Lock step without a collective per step: every worker has the same number of documents
        (equal shards), so one check per shuffle buffer that all still have micro-batches."""
        for epoch in itertools.count():
            source, n = train_batches(epoch, timer), 0
            while n < spe:
                todo = list(itertools.islice(source, BUCKET_BATCHES))
                todo = todo[:min(all_min(len(todo)), spe - n)]
                if not todo:
                    break
                n += len(todo)
                for item in todo:
                    yield (epoch, *item)
            if n == 0:
                return

    history = []
    # A restarted worker group or a re-run after a killed driver: this call's own latest checkpoint;
    # else the candidate's checkpoint from the rung before (``continue_from``), if any.
    ckpt = ray.train.get_checkpoint() or (ray.train.Checkpoint(config["continue_from"])
                                          if config["continue_from"] else None)
    if ckpt is not None:
        with ckpt.as_directory() as d:
            engine.load_checkpoint(str(Path(d) / DEEPSPEED_DIR))
            history = json.loads((Path(d) / HISTORY_FILE).read_text())
        if rank == 0:
            print(f"[teacher-finetune] lr {lr:g}: continuing from the checkpoint of step {history[-1]['step']} "
                  f"(to step {stop_at} of {horizon})", flush=True)
    done = history[-1]["step"] if history else 0
    timer = PhaseTimer()
    stream = micro_batches(timer)
    for _ in itertools.islice(stream, done):  # replay the data order up to where the checkpoint left off
        pass
    while done < stop_at:
        if patience and history and rounds_without_improvement(history) >= patience:
            if rank == 0:
                print(f"[teacher-finetune] lr {lr:g}: early stop at step {done}: validation has not improved for "
                      f"{patience} round(s) (teacher.patience)", flush=True)
            break
        t0, rnd = time.time(), len(history)
        torch.manual_seed(epoch_seed(tcfg.seed, rnd, rank))  # dropout per round: a resumed round replays it
        timer.reset()
        target = min(stop_at, (done // round_steps + 1) * round_steps)
        losses, windows, real, padded, epoch = [], 0, 0, 0, 0
        for epoch, ids, mask, y in itertools.islice(stream, target - done):
            out = engine(input_ids=ids.to(device), attention_mask=mask.to(device), labels=y.to(device))
            timer.lap("forward")
            engine.backward(out.loss)
            timer.lap("backward")
            engine.step()
            timer.lap("step")
            losses.append(float(out.loss.detach()))
            done += 1
            windows += ids.shape[0]
            real, padded = real + int(mask.sum()), padded + mask.numel()
            if rank == 0 and (done % PROGRESS_EVERY == 0 or done == target):
                print(f"[teacher-finetune] lr {lr:g} step {done}/{horizon} (epoch {epoch}) "
                      f"loss {np.mean(losses[-PROGRESS_EVERY:]):.4f} ({time.time() - t0:.0f}s)", flush=True)
            timer.lap("other")
        if not losses:  # the training split ran dry (cannot happen with equal shards; never loop on it)
            break
        train_s = sum(timer.seconds.values())
        scores, probe_logits = evaluate()
        timer.lap("validation")
        loss_t = torch.tensor([sum(losses), len(losses), windows], dtype=torch.float64, device=device)
        dist.all_reduce(loss_t)
        # rank 0's clock; the workers run in lock step (one all-reduce per step)
        timing = {"train_windows": int(loss_t[2]), "train_seconds": round(train_s, 2),
                  "windows_per_second": round(float(loss_t[2]) / max(train_s, 1e-9), 2),
                  "padding_fraction": round(1 - real / max(padded, 1), 3),
                  **{f"{k}_seconds": round(v, 4) for k, v in timer.seconds.items()}}  # a tiny step is under 5 ms
        metrics = {"round": rnd, "step": done, "epoch": round(done / spe, 2), "lr": lr,
                   "train_loss": float(loss_t[0] / max(loss_t[1], 1)), "first_loss": losses[0],
                   "last_loss": losses[-1], "val_accuracy": scores["accuracy"], "val_macro_f1": scores["macro_f1"],
                   "val_score": scores[task.teacher_selection_metric], "seconds": round(time.time() - t0, 1),
                   "timing": timing}
        if rank == 0:
            print(f"[teacher-finetune] lr {lr:g} step {done}/{horizon} validated: train loss "
                  f"{metrics['train_loss']:.4f}, validation accuracy {scores['accuracy']:.4f}, macro-F1 "
                  f"{scores['macro_f1']:.4f} ({metrics['seconds']:.0f}s)", flush=True)
        flat = {k: v for k, v in metrics.items() if k != "timing"}  # the timing goes with the history
        with tempfile.TemporaryDirectory() as tmp:
            params = list(engine.module.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=zero == 3):
                if rank == 0:
                    state = {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()}
            # Every rank writes its own files; Ray Train merges the ranks' folders into one checkpoint.
            engine.save_checkpoint(str(Path(tmp) / DEEPSPEED_DIR), tag=f"step{done}")
            if rank == 0:
                engine.module.save_pretrained(tmp, state_dict=state)
                tok.save_pretrained(tmp)
                (Path(tmp) / "tgd_probe.json").write_text(json.dumps({"texts": config["probe_texts"],
                                                                      "logits": probe_logits}))
                if metrics["val_score"] > max((h["val_score"] for h in history), default=-math.inf):
                    keep_best(Path(tmp), Path(config["best_dir"]))  # the earliest of equal rounds stays
                (Path(tmp) / HISTORY_FILE).write_text(json.dumps(history + [metrics]))
            history.append(metrics)
            ray.train.report({**flat, "history": json.dumps(history), "zero_stage": zero, "zero_stage_reason": why},
                             checkpoint=ray.train.Checkpoint.from_directory(tmp))


def keep_best(checkpoint: Path, best_dir: Path) -> None:
    """Copy a round's Hugging Face files (not DeepSpeed's training state) to ``best_dir``, replacing
    the candidate's previous best: Ray Train keeps only each call's latest checkpoint (what the next
    call continues from), so the best round's weights are kept here, on the run's storage."""
    tmp = best_dir.with_name(best_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp, ignore=shutil.ignore_patterns(DEEPSPEED_DIR, HISTORY_FILE))
    shutil.rmtree(best_dir, ignore_errors=True)
    tmp.rename(best_dir)


def _steps_per_epoch(train: pa.Table, cfg: RunConfig, base: Path) -> int:
    """Optimizer steps per epoch (a run: teacher.epochs of them, at least teacher.min_steps): a
    worker's documents x the mean number of windows sampled per document (counted with the
    teacher's tokenizer when several are)."""
    t = cfg.teacher
    per_worker = train.num_rows // cfg.ray.num_workers
    if t.max_train_docs:
        per_worker = min(per_worker, t.max_train_docs // cfg.ray.num_workers)
    per_doc = 1.0
    if t.train_windows > 1:
        from trainers.teacher.model import load_tokenizer

        windower = Windower(load_tokenizer(base), t.max_length, t.stride, t.max_windows)
        per_doc = float(np.mean([min(t.train_windows, len(windower.spans(len(e.ids))))
                                 for e in windower.encode(train.column("text").to_pylist())]))
    return max(math.ceil(per_worker * per_doc / t.batch_size), 1)


def loop_config(cfg: RunConfig, base: Path, labels: list[str], train: pa.Table, val: pa.Table, horizon: int,
                round_steps: int) -> dict[str, Any]:
    """What every training call's workers share: one schedule ``horizon`` steps long over ``train``,
    validated every ``round_steps``."""
    t = cfg.teacher
    return {"teacher": t.model_dump(mode="json"), "task": cfg.data.task, "labels": labels, "model_path": str(base),
            "use_gpu": cfg.ray.use_gpu, "threads": max(int(cfg.ray.cpus_per_worker), 1),
            "steps_per_epoch": _steps_per_epoch(train, cfg, base),
            "probe_texts": val.column("text").to_pylist()[:PROBE_DOCS], "horizon": horizon,
            "round_steps": round_steps}


def train_call(cfg: RunConfig, config: dict[str, Any], datasets: dict[str, Any], *, name: str, storage: Path,
               lr: float, stop_at: int, patience: int | None, continue_from: str | None,
               best_dir: Path) -> tuple[list[dict], str, dict[str, Any]]:
    """One Ray Train run of ``worker_loop``: trains at ``lr`` from ``continue_from`` (or this run's own
    latest checkpoint, after a killed driver) up to ``stop_at``, keeping the best round in ``best_dir``.
    -> (validation rounds so far, the latest checkpoint, {stage, reason} of the ZeRO stage; empty
    when the run had already reached ``stop_at``)."""
    import ray.train

    from trainers.raytrain import make_trainer

    trainer = make_trainer(
        cfg, worker_loop, {**config, "lr": lr, "stop_at": stop_at, "patience": patience,
                           "continue_from": continue_from, "best_dir": str(best_dir.resolve())},
        name=name, storage=storage, stage="teacher-finetune", max_failures=cfg.teacher.max_failures,
        # only the latest round: what the next call continues from (the best is kept by keep_best)
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        datasets=datasets, dataset_config=split_config(equal=("train",)))
    result = trainer.fit()
    if result.metrics is None:  # nothing reported: the call had reached stop_at before a killed driver's re-run
        return [], continue_from, {}
    zero = {"stage": result.metrics["zero_stage"], "reason": result.metrics["zero_stage_reason"]}
    return json.loads(result.metrics["history"]), result.checkpoint.path, zero


def finetune(cfg: RunConfig, out_dir: Path, base: Path, labels: list[str]) -> dict[str, Any]:
    import ray.data

    from trainers.tasks import get_task

    t = cfg.teacher
    train, val = training_rows(cfg, "train"), training_rows(cfg, "validation")
    if train.num_rows < cfg.ray.num_workers or val.num_rows == 0:
        raise StageError(f"teacher-finetune needs training ({train.num_rows}) and validation ({val.num_rows}) "
                         "documents")
    spe = _steps_per_epoch(train, cfg, base)
    plan = plan_search([t.lr] if t.lr else t.lr_grid, max(t.min_steps, t.epochs * spe), t.budget)
    print(f"[teacher-finetune] {plan.steps} optimizer steps per worker ({spe} per epoch); "
          + (f"learning rate searched over {', '.join(f'{lr:g}' for lr in plan.lrs)} (rungs at steps "
             f"{', '.join(map(str, plan.rungs))}; at most {plan.total_steps()} steps in all, teacher.budget "
             f"{t.budget:g})" if plan.rungs else f"learning rate {plan.lrs[0]:g}"), flush=True)
    config = loop_config(cfg, base, labels, train, val, plan.steps, plan.round_steps)
    datasets = {"train": ray.data.from_arrow(train), "validation": ray.data.from_arrow(val)}
    search = Search(plan, out_dir / SEARCH_FILE)
    zero: dict[str, Any] = {}

    def train_to(i: int, stop_at: int, patience: int | None) -> tuple[list[dict], str]:
        c = search.candidates[i]
        rounds, latest, zero_stage = train_call(
            cfg, config, datasets, name=f"lr{i}-to{stop_at}", storage=out_dir / "_ray", lr=c.lr, stop_at=stop_at,
            patience=patience, continue_from=c.latest, best_dir=out_dir / CANDIDATES_DIR / f"lr{i}")
        zero.update(zero_stage)
        return rounds or c.rounds, latest

    t0 = time.time()
    chosen = search.run(train_to, t.patience)
    best = chosen.best_round()
    model_dir = out_dir / MODEL_DIR
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(out_dir / CANDIDATES_DIR / f"lr{search.candidates.index(chosen)}", model_dir)
    recipe = {**search.record(chosen), "best_step": best["step"], "seconds": round(time.time() - t0, 1)}
    metric = get_task(cfg.data.task).teacher_selection_metric
    print(f"[teacher-finetune] chosen: lr {chosen.lr:g}, best validation {metric} {best['val_score']:.4f} at step "
          f"{best['step']} of {plan.steps}; the search trained {recipe['steps_trained']} steps per worker", flush=True)
    for tmp in ("_ray", CANDIDATES_DIR):
        shutil.rmtree(out_dir / tmp, ignore_errors=True)
    (out_dir / SEARCH_FILE).unlink(missing_ok=True)
    return {"model_path": MODEL_DIR, "recipe": recipe, "best_step": best["step"], "history": chosen.rounds,
            "stopped_early": chosen.step < plan.steps,
            "best_validation": {"accuracy": best["val_accuracy"], "macro_f1": best["val_macro_f1"]},
            "train_documents": train.num_rows, "validation_documents": val.num_rows,
            "steps_per_epoch": spe, "zero_stage": zero.get("stage"), "zero_stage_reason": zero.get("reason")}


def source_fingerprint(cfg: RunConfig) -> dict[str, Any]:
    """The teacher checkpoint's content: a re-saved model at the same path invalidates the stage."""
    path = resolve_model_path(cfg.teacher.model)
    return {"model": cfg.teacher.model, "weights": weights_fingerprint(path)}


def run(cfg: RunConfig, out_dir: Path) -> dict[str, Any]:
    from trainers.tasks import get_task

    ingest = read_manifest(cfg, "ingest")
    labels, task, t = ingest["labels"], get_task(cfg.data.task), cfg.teacher
    base = resolve_model_path(t.model)
    skip = None
    if not t.finetune:
        skip = "teacher.finetune is false"
    elif t.kind == "causal-lm":
        skip = "causal-lm teachers are used zero-shot (prompt + verbalizer)"
    elif task.teacher_as_is:
        skip = task.teacher_as_is
    if skip:
        have = head_labels(base)
        if t.kind == "encoder" and not task.teacher_as_is and have != labels:
            raise StageError(f"teacher.finetune is false but {base} has no head for labels {labels} "
                               f"(its head: {have}); fine-tune it or point teacher.model at a fine-tuned checkpoint")
        result = {"model_path": None, "skipped": skip}
    else:
        result = finetune(cfg, out_dir, base, labels)
    path = out_dir / result["model_path"] if result["model_path"] else base
    # its input: the labelled documents (not the data.unlabelled_source ones, which it never sees)
    return {"input_rows": sum(ingest["splits"].values()), "output_rows": 1, "labels": labels, "task": task.name,
            "teacher_id": teacher_id(t.model, path), **result}
