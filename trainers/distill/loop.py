"""`tgd distill`: train the student on Ray Train (TorchTrainer, DDP) with the curriculum.

The driver prepares per-document ``Data`` (``trainers.distill.data``) into Ray Data datasets; each worker
reads its shard with ``ray.train.get_dataset_shard``, keeps it in memory, and every epoch selects
documents by the curriculum's pacing, samples node-budgeted subgraphs and batches them with PyG
(``Batch`` is moved with ``.to(device)``: Ray's ``prepare_data_loader`` does not move PyG batches).
Rank 0 validates, logs to the console and TensorBoard, and checkpoints every epoch through Ray
Train. A worker failure restarts from the latest checkpoint (``FailureConfig``); a re-run of an
interrupted stage resumes from the latest checkpoint on disk.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import torch

from tgd.schema import TRANSFER_SPLIT
from trainers.distill import curriculum, temperature
from trainers.distill.lr_schedule import lr_factor
from trainers.distill.data import Prepared, prepare, subsample, unpack
from trainers.distill.sampling import GraphSampler
from trainers.student.subgraph import decompose
from trainers.tasks import get_task
from trainers.student.checkpoint import build_student, save_student
from trainers.student.features import GraphEncoding
from trainers.distill.teacher_gate import ensure_teacher_check, gate_active


class Distiller(torch.nn.Module):
    """Student + (training-only) attention bridge, one module so DDP syncs both."""

    def __init__(self, student, bridge):
        super().__init__()
        self.student, self.bridge = student, bridge

    def forward(self, batch, bridge: bool = False):
        """-> (logits, node states, bridge loss or None); the bridge runs inside forward so DDP
        sees every parameter used in the step."""
        logits, h = self.student(batch)
        use = bridge and self.bridge is not None
        b = get_task(self.student.task).bridge_loss(self.bridge, self.student, h, batch) if use else None
        return logits, h, b


@torch.no_grad()
def predict(student, datas, device, node_budget: int | None = None, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted labels, gold labels and teacher predictions for a list of Data, one row per
    prediction of the task (per graph or per node), in the order of ``datas``.
    ``node_budget``: decompose graphs larger than it into sentence windows (bounded memory)."""
    from torch_geometric.data import Batch

    student.eval()
    task = get_task(student.task)
    preds: list[torch.Tensor | None] = [None] * len(datas)
    whole = [i for i, d in enumerate(datas) if node_budget is None or d.num_nodes <= node_budget]
    for k in range(0, len(whole), batch_size):
        idx = whole[k:k + batch_size]
        b = Batch.from_data_list([datas[i] for i in idx]).to(device)
        out = task.predictions(student(b)[0]).cpu()
        sizes = [datas[i].num_nodes for i in idx] if task.head == "node" else [1] * len(idx)
        for i, p in zip(idx, out.split(sizes)):
            preds[i] = p
    for i, d in enumerate(datas):
        if preds[i] is None:
            parts = [p.to(device) for p in decompose(d, node_budget, len(student.encoder.layers))]
            for p in parts:
                p.batch = torch.zeros(p.num_nodes, dtype=torch.long, device=device)
            preds[i] = task.predictions(student.forward_parts(parts)).cpu()
    gold, teach = zip(*(task.gold_and_teacher(d) for d in datas)) if datas else ((), ())
    cat = lambda xs: torch.cat(list(xs)).numpy() if xs else np.zeros(0, dtype=np.int64)
    return cat(preds), cat(gold), cat(teach)


def metrics(pred, gold, teach, labels: list[str], has_teacher: bool, task: str = "classification",
            lengths: list[int] | None = None) -> dict[str, float]:
    """The task's scores of ``pred`` (``agreement`` with the teacher when there is one)."""
    return get_task(task).scores(pred, gold, teach if has_teacher else None, labels, lengths)


def _step_loss(model, batch, stage: str, cfg, has_states: bool, gate: bool = False) -> tuple[torch.Tensor, dict[str, float], float]:
    raw = model.module if hasattr(model, "module") else model
    use_bridge = cfg.bridge and raw.bridge is not None and (stage == "align" or (stage in ("fusion", "adaptive") and cfg.beta_bridge > 0))
    logits, h, bridge_loss = model(batch, use_bridge)
    task = get_task(raw.student.task)
    y, s_kd, t_kd = task.targets(logits, batch, stage)
    # teacher gate: KD only where the teacher predicts the gold label (unlabelled copies never reach
    # here: the gate drops the transfer set)
    kd_weight = task.gate_weight(batch, t_kd) if gate else None
    parts: dict[str, torch.Tensor] = {}
    temp = torch.tensor(cfg.temperature)
    if stage == "ce":
        parts["ce"] = task.gold_loss(logits, y)
        total = parts["ce"]
    elif stage == "align":
        if use_bridge:
            parts["bridge"] = bridge_loss
            total = bridge_loss + 0.0 * logits.sum()
        else:  # no stored teacher states: the logits stand in for the representation target
            parts["kl"] = task.kd_loss(s_kd, t_kd, temp, kd_weight)
            total = parts["kl"]
    else:
        if stage == "adaptive" and cfg.adaptive_temperature and task.soft_labels:
            temp = temperature.adaptive_temperature(t_kd, cfg.t_min, cfg.t_max).detach()
        parts["ce"] = task.gold_loss(logits, y)
        parts["kl"] = task.kd_loss(s_kd, t_kd, temp, kd_weight) if len(t_kd) else logits.sum() * 0
        total = (1 - cfg.alpha_kl) * parts["ce"] + cfg.alpha_kl * parts["kl"]
        if use_bridge:
            parts["bridge"] = bridge_loss
            total = total + cfg.beta_bridge * bridge_loss
    return total, {k: float(v.detach()) for k, v in parts.items()}, float(temp.float().mean())


@dataclass
class FitContext:
    """Where ``fit`` runs: one Ray Train worker of a DDP group, or a single process (world 1).

    ``wrap`` turns the module into the trained model (DDP on Ray Train, identity alone); ``report``
    receives each epoch's row and, on rank 0, a function that snapshots the training state for a
    checkpoint; ``state`` is a snapshot to resume from."""
    rank: int = 0
    world: int = 1
    device: Any = "cpu"
    wrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m
    report: Callable[[dict, Callable[[], dict] | None], None] = lambda row, snapshot: None
    state: dict | None = None
    log: Callable[[str], None] = print


def fit(config: dict[str, Any], train: list, diff: np.ndarray, val: list, ctx: FitContext = FitContext()) -> dict[str, Any]:
    """Train one student over the curriculum; the same loop for a DDP worker and a single process.

    ``train``: this worker's training ``Data`` (sorted by id), ``diff`` their difficulties; ``val``:
    validation ``Data`` (used on rank 0). Returns {"history", "best"} (best: validation accuracy,
    epoch and the student's weights at that epoch)."""
    from torch_geometric.data import Batch

    from tgd.config import DistillConfig, StudentConfig

    dcfg, scfg = DistillConfig(**config["distill"]), StudentConfig(**config["student"])
    torch.set_num_threads(dcfg.threads_per_worker)
    rank, world, device = ctx.rank, ctx.world, ctx.device
    enc = GraphEncoding(**config["encoding"])
    has_teacher, has_states, task = config["has_teacher"], config["state_dim"] > 0, config["task"]
    headline = get_task(task).headline(enc.labels)
    train, val = [enc.restrict(d) for d in train], [enc.restrict(d) for d in val]

    torch.manual_seed(dcfg.seed)
    student = build_student(enc, scfg, task)
    if config.get("init_embeddings") is not None:
        student.word.weight.data.copy_(torch.tensor(config["init_embeddings"]))  # a copy: the array arrives read-only
    bridge = (get_task(task).make_bridge(student, config["state_dim"], train[0] if train else None)
              if has_teacher and dcfg.bridge else None)
    raw = Distiller(student, bridge).to(device)
    model = ctx.wrap(raw)
    opt = torch.optim.AdamW(model.parameters(), lr=dcfg.lr, weight_decay=dcfg.weight_decay,
                            fused=True)  # one kernel over all parameters: ~9x faster than the per-tensor default on CPU

    ema = None  # the weights validated and kept: an exponential moving average of the student's
    if dcfg.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(raw.student, multi_avg_fn=get_ema_multi_avg_fn(dcfg.ema_decay), use_buffers=True)
    start, history, best = 0, [], {"accuracy": -1.0, "state": None, "epoch": -1}
    if ctx.state is not None:
        raw.load_state_dict(ctx.state["model"]); opt.load_state_dict(ctx.state["optimizer"])
        if ema is not None and ctx.state.get("ema") is not None:
            ema.load_state_dict(ctx.state["ema"])
        start, history, best = ctx.state["epoch"] + 1, ctx.state["history"], ctx.state["best"]
        if rank == 0:
            ctx.log(f"[distill] resuming from checkpoint at epoch {start}")

    plan = curriculum.stages(dcfg.epochs_align, dcfg.epochs_fusion, dcfg.epochs_adaptive, has_teacher)
    sampler = GraphSampler(dcfg.sampler, dcfg.sampler_backend)
    writer = None
    if rank == 0 and config.get("tb_dir"):
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(config["tb_dir"])
    use_curriculum = dcfg.curriculum and has_teacher
    for epoch in range(start, len(plan)):
        t0, stage = time.time(), plan[epoch]
        torch.manual_seed(dcfg.seed * 100_003 + epoch * 101 + rank)
        rng = np.random.default_rng([dcfg.seed, epoch, rank])
        gen = torch.Generator().manual_seed(dcfg.seed * 7919 + epoch * 31 + rank)
        order = curriculum.select(diff, epoch, use_curriculum, dcfg.pace_start, dcfg.pace_epochs, rng)
        steps = math.ceil(len(order) / dcfg.batch_size)
        if world > 1:  # every rank must take the same number of DDP steps
            t = torch.tensor([steps], device=device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
            steps = int(t)
        model.train()
        sums: dict[str, float] = {}
        temps, max_nodes = [], 0
        for s in range(steps):
            items = [sampler.sample(train[i], dcfg.node_budget, gen) for i in order[s * dcfg.batch_size:(s + 1) * dcfg.batch_size]]
            max_nodes = max(max_nodes, max(d.num_nodes for d in items))
            batch = Batch.from_data_list(items, exclude_keys=["orig_nodes"]).to(device)
            for group in opt.param_groups:
                group["lr"] = dcfg.lr * lr_factor(dcfg.lr_schedule, epoch, s, steps, len(plan))
            loss, parts, temp = _step_loss(model, batch, stage, dcfg, has_states, config.get("teacher_gate", False))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if ema is not None:
                ema.update_parameters(raw.student)
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in parts.items():
                sums[f"loss_{k}"] = sums.get(f"loss_{k}", 0.0) + v
            temps.append(temp)
        row = {"epoch": epoch, "stage": stage, "train_docs": int(len(order)) * world, "steps": steps,
               "lr": opt.param_groups[0]["lr"],  # at the epoch's last step
               "temperature": float(np.mean(temps)) if temps and stage != "ce" and get_task(task).soft_labels else None,
               "max_nodes_per_graph": max_nodes, **{k: v / max(steps, 1) for k, v in sums.items()}}
        if rank != 0:
            ctx.report(row, None)
            continue
        kept = ema.module if ema is not None else raw.student
        pred, gold, teach = predict(kept, val, device)
        row.update({f"val_{k}": v for k, v in metrics(pred, gold, teach, enc.labels, has_teacher, task,
                                                      [d.num_nodes for d in val]).items()})
        row["seconds"] = round(time.time() - t0, 2)
        history.append(row)
        if row[f"val_{headline}"] > best["accuracy"]:  # "accuracy": the headline metric, kept as the key
            best = {"accuracy": row[f"val_{headline}"], "epoch": epoch,
                    "state": {k: v.detach().cpu().clone() for k, v in kept.state_dict().items()}}
        if config.get("verbose", True):
            ctx.log("[distill] " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if writer:
            for k, v in row.items():
                if isinstance(v, (int, float)) and v is not None and k != "epoch":
                    writer.add_scalar(f"{k}", v, epoch)
            writer.flush()
        ctx.report(row, lambda: {"model": raw.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                                 "history": history, "best": best, "ema": ema.state_dict() if ema else None})
    if writer:
        writer.close()
    return {"history": history, "best": best}


def train_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: its shard of the training set, DDP, checkpoints through Ray Train."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()

    def materialize(name):
        rows = []
        for b in ray.train.get_dataset_shard(name).iter_batches(batch_size=256, batch_format="pyarrow"):
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
    elif config.get("resume_dir"):  # a re-run of an interrupted / extended training
        state = torch.load(Path(config["resume_dir"]) / "state.pt", map_location="cpu", weights_only=True)
    fit(config, [x[2] for x in train], np.array([x[1] for x in train]), val,
        FitContext(rank=rank, world=ctx.get_world_size(), device=ray.train.torch.get_device(),
                   wrap=lambda m: ray.train.torch.prepare_model(m, parallel_strategy_kwargs={"find_unused_parameters": True}),
                   report=report, state=state, log=lambda line: print(line, flush=True)))


def latest_checkpoint(storage: Path) -> Path | None:
    """The checkpoint with the highest epoch under ``storage`` (Ray Train's layout), if any."""
    best, best_epoch = None, -1
    for f in storage.glob("*/checkpoint_*/epoch.json"):
        e = json.loads(f.read_text())["epoch"]
        if e > best_epoch and (f.parent / "state.pt").is_file():
            best, best_epoch = f.parent, e
    return best


def _fit_config(cfg, prepared: Prepared, use_teacher: bool, out_dir: Path) -> tuple[dict[str, Any], Any]:
    """The worker config of one student (distilled or plain, per ``cfg``) and its training rows."""
    dcfg = cfg.distill
    train_tbl = subsample(prepared.splits["train"], dcfg.train_fraction, dcfg.seed)
    transfer = prepared.splits.get(TRANSFER_SPLIT)
    has_teacher = use_teacher and prepared.has_teacher
    if has_teacher:
        ensure_teacher_check(prepared, cfg)
    gate = has_teacher and gate_active(dcfg.teacher_gate, prepared.teacher_check)
    if has_teacher and not gate and dcfg.use_transfer and transfer is not None and transfer.num_rows:
        # KD + bridge only (gold label -1). Sorted by id, each copy follows its original, so every
        # worker's contiguous Ray Data shard mixes labelled documents and copies.
        train_tbl = pa.concat_tables([train_tbl, transfer]).sort_by("id")
    init = None
    if cfg.student.init_from_teacher:
        from trainers.student.features import teacher_embedding_init

        init = teacher_embedding_init(prepared.enc.vocab, teacher_model_dir(cfg), cfg.student.hidden, dcfg.seed).numpy()
    enc = replace(prepared.enc, edges=cfg.student.edges)  # prepared graphs carry every edge kind; fit drops the rest
    config = {"distill": dcfg.model_dump(), "student": cfg.student.model_dump(), "encoding": enc.state(),
              "has_teacher": has_teacher, "teacher_gate": gate, "state_dim": prepared.state_dim if use_teacher else 0,
              "task": prepared.task, "tb_dir": str(out_dir / "tensorboard"), "init_embeddings": init}
    return config, train_tbl


def _finish(cfg, out_dir: Path, config: dict, prepared: Prepared, use_teacher: bool, train_docs: int,
            history: list, best: dict) -> dict[str, Any]:
    """Save the best epoch's student, its history and learning curves; the run's summary."""
    save_student(out_dir / "student.pt", best["state"], GraphEncoding(**config["encoding"]), cfg.student, prepared.task,
                 {"best_epoch": best["epoch"], "val_accuracy": best["accuracy"], "use_teacher": use_teacher})
    plot_history(history, out_dir / "learning_curves.png")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))  # last: marks a finished student
    return {"train_docs": train_docs, "epochs": len(history), "best_epoch": best["epoch"],
            "val_accuracy": best["accuracy"], "history": history, "teacher_check": prepared.teacher_check,
            "teacher_gate": config["teacher_gate"]}


def train_student(cfg, out_dir: Path, prepared: Prepared | None = None, use_teacher: bool | None = None,
                  log=print) -> dict[str, Any]:
    """Train one student on Ray Train (``ray.num_workers`` DDP workers) into ``out_dir``; its summary."""
    import ray
    import ray.train

    from cluster.ray_session import ensure_ray
    from trainers.raytrain import make_trainer

    ensure_ray(cfg.ray)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    dcfg = cfg.distill
    use_teacher = dcfg.use_teacher if use_teacher is None else use_teacher
    prepared = prepared or prepare(cfg, use_teacher, cfg.student.edges)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config, train_tbl = _fit_config(cfg, prepared, use_teacher, out_dir)
    check = prepared.teacher_check
    if check:
        banner = "!" * 100 if check.get("weaker") or check.get("memorised") else ""
        log("\n".join(x for x in (banner, f"[distill] {check['message']}", banner) if x))
    if config["teacher_gate"]:
        log("[distill] teacher gate on: KD only on training documents whose gold label the teacher predicts, "
            "no transfer set (distill.teacher_gate)")
    storage = out_dir / "ray"
    resume = latest_checkpoint(storage)
    if resume is not None:
        log(f"[distill] found checkpoint {resume}; resuming")
        config["resume_dir"] = str(resume)
    trainer = make_trainer(
        cfg, train_loop, config, name=f"run-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6}",
        storage=storage, checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1), max_failures=dcfg.max_failures,
        datasets={"train": ray.data.from_arrow(train_tbl), "validation": ray.data.from_arrow(prepared.splits["validation"])},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]), stage="distill")
    total = len(curriculum.stages(dcfg.epochs_align, dcfg.epochs_fusion, dcfg.epochs_adaptive, config["has_teacher"]))
    if resume is not None and json.loads((resume / "epoch.json").read_text())["epoch"] >= total - 1:
        state = torch.load(resume / "state.pt", map_location="cpu", weights_only=True)  # already finished
    else:
        with trainer.fit().checkpoint.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=True)
    return _finish(cfg, out_dir, config, prepared, use_teacher, train_tbl.num_rows, state["history"], state["best"])


def fit_local(cfg, prepared: Prepared, use_teacher: bool, out_dir: Path,
              ctx: FitContext = FitContext()) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Train one student in this process (no DDP) with the Ray Train stage's global batch
    (``distill.batch_size`` x ``ray.num_workers``), so it takes the same optimizer steps as the
    distill stage's student. Returns (worker config, training rows, ``fit``'s result)."""
    config, train_tbl = _fit_config(cfg, prepared, use_teacher, out_dir)
    config["distill"]["batch_size"] = cfg.distill.batch_size * cfg.ray.num_workers
    config["verbose"] = False
    train = unpack(train_tbl)
    val = [d for _, _, d in unpack(prepared.splits["validation"])]
    return config, train_tbl, fit(config, [x[2] for x in train], np.array([x[1] for x in train]), val, ctx)


def train_student_local(cfg, out_dir: Path, prepared: Prepared, use_teacher: bool | None = None) -> dict[str, Any]:
    """Train one student in this process (no per-epoch checkpoints) into ``out_dir``: a row of the
    evaluate table, run as one Ray task among many so independent students train side by side."""
    use_teacher = cfg.distill.use_teacher if use_teacher is None else use_teacher
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config, train_tbl, result = fit_local(cfg, prepared, use_teacher, out_dir)
    return _finish(cfg, out_dir, config, prepared, use_teacher, train_tbl.num_rows, result["history"], result["best"])


def teacher_model_dir(cfg) -> str:
    """The fine-tuned teacher's HF directory (teacher-finetune manifest), else the configured base."""
    from trainers.teacher.finetune import finetuned_model_dir
    from trainers.teacher.model import resolve_model_path

    return str(finetuned_model_dir(cfg) or resolve_model_path(cfg.teacher.model))


def plot_history(history: list[dict], path: Path) -> None:
    """Learning curves per epoch, background shaded by curriculum stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("loss", "loss_ce", "loss_kl", "loss_bridge"):
        if any(key in h for h in history):
            ax[0].plot(ep, [h.get(key, np.nan) for h in history], marker="o", label=key)
    for key in ("val_accuracy", "val_macro_f1", "val_spearman", "val_pearson", "val_agreement"):
        if any(key in h for h in history):
            ax[1].plot(ep, [h.get(key, np.nan) for h in history], marker="o", label=key)
    colors = {"align": "#dde", "fusion": "#ded", "adaptive": "#edd", "ce": "#eee"}
    for a in ax:
        for h in history:
            a.axvspan(h["epoch"] - 0.5, h["epoch"] + 0.5, color=colors.get(h["stage"], "#fff"), zorder=0)
        a.legend(fontsize=7); a.set_xlabel("epoch (shading: align / fusion / adaptive stage)")
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


def run(cfg, out_dir: Path) -> dict[str, Any]:
    """Stage entry point."""
    summary = train_student(cfg, out_dir)
    return {"input_rows": summary["train_docs"], "output_rows": 1, "epochs": summary["epochs"],
            "best_epoch": summary["best_epoch"], "val_accuracy": summary["val_accuracy"],
            "teacher_check": summary["teacher_check"], "teacher_gate": summary["teacher_gate"],
            "final": {k: v for k, v in summary["history"][-1].items()}}
