"""The training loop of one student, free of Ray: the distill stage's DDP workers, evaluate's rows
and tune's trials all run ``fit``.

Each epoch: the curriculum's stage for the epoch (``curriculum.STAGES``) and its pacing pick the
documents, the sampler cuts node-budgeted subgraphs, PyG batches them, and the step loss is the
stage's weighted sum of the gold loss, KD and the attention bridge. Rank 0 validates through the one
prediction path (``trainers.student.predict``), keeps the best epoch's weights, logs and hands a
snapshot to ``FitContext.report`` (Ray Train checkpoints it). Where it runs (DDP or one process,
device, checkpoints) is the caller's ``FitContext``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch_geometric.data import Batch

from trainers.distill import curriculum, temperature
from trainers.distill.lr_schedule import lr_factor
from trainers.distill.sampling import GraphSampler
from trainers.distill.spec import FitSpec
from trainers.seeding import epoch_seed, sampler_seed
from trainers.student.checkpoint import build_student
from trainers.student.predict import metrics, predict
from trainers.tasks import get_task

# Gradient-norm clip: a safety rail against the rare exploding step (KD at a high temperature on a
# near-one-hot teacher), far above the norms of ordinary steps so it does not shape training.
GRAD_CLIP_NORM = 5.0


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


def step_loss(model, batch, stage: curriculum.CurriculumStage, dcfg, gate: bool = False
              ) -> tuple[torch.Tensor, dict[str, float], float]:
    """The stage's weighted sum of its loss terms on one batch -> (loss, each term's value, mean
    temperature). A bridge term runs only when there is a bridge and its weight is positive; where
    the stage names a stand-in for it (``without_bridge``), that term takes its place."""
    raw = model.module if hasattr(model, "module") else model
    weights = stage.weights(dcfg)
    if "bridge" in weights and not (dcfg.bridge and raw.bridge is not None and weights["bridge"] > 0):
        del weights["bridge"]
        if stage.without_bridge:
            weights[stage.without_bridge] = 1.0
    logits, _, bridge_loss = model(batch, "bridge" in weights)
    task = get_task(raw.student.task)
    y, s_kd, t_kd = task.targets(logits, batch, stage.name)
    temp = torch.tensor(dcfg.temperature)
    if stage.temperature == "adaptive" and dcfg.adaptive_temperature and task.soft_labels:
        temp = temperature.adaptive_temperature(t_kd, dcfg.t_min, dcfg.t_max).detach()
    # teacher gate: KD only where the teacher predicts the gold label (unlabelled copies never reach
    # here: the gate drops the transfer set)
    kd_weight = task.gate_weight(batch, t_kd) if gate else None
    terms = {"ce": lambda: task.gold_loss(logits, y),
             "kd": lambda: task.kd_loss(s_kd, t_kd, temp, kd_weight) if len(t_kd) else logits.sum() * 0,
             "bridge": lambda: bridge_loss}
    parts = {name: terms[name]() for name in ("ce", "kd", "bridge") if name in weights}
    total = sum(weights[name] * value for name, value in parts.items())
    total = total + 0.0 * logits.sum()  # every head parameter gets a gradient, in bridge-only stages too
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


def fit(spec: FitSpec, train: list, diff: np.ndarray, val: list, ctx: FitContext = FitContext()) -> dict[str, Any]:
    """Train one student over the curriculum; the same loop for a DDP worker and a single process.

    ``train``: this worker's training ``Data`` (sorted by id), ``diff`` their difficulties; ``val``:
    validation ``Data`` (used on rank 0). Returns {"history", "best"} (best: the headline validation
    score under the key "accuracy", its epoch and the student's weights at that epoch)."""
    dcfg, enc = spec.distill, spec.encoding
    torch.set_num_threads(dcfg.threads_per_worker)
    rank, world, device = ctx.rank, ctx.world, ctx.device
    headline, task = spec.headline, get_task(spec.task)
    train, val = [enc.restrict(d) for d in train], [enc.restrict(d) for d in val]

    torch.manual_seed(dcfg.seed)
    student = build_student(enc, spec.student, spec.task)
    if spec.init_embeddings is not None:
        student.word.weight.data.copy_(torch.tensor(spec.init_embeddings))  # a copy: the array arrives read-only
    if student.static is not None and spec.static_vectors is not None:
        student.static.weight.data.copy_(torch.tensor(spec.static_vectors))
    if spec.init_state is not None:
        student.load_state_dict(spec.init_state)
    bridge = (task.make_bridge(student, spec.state_dim, train[0] if train else None)
              if spec.has_teacher and dcfg.bridge else None)
    raw = Distiller(student, bridge).to(device)
    model = ctx.wrap(raw)
    opt = torch.optim.AdamW(model.parameters(), lr=dcfg.lr, weight_decay=dcfg.weight_decay,
                            fused=True)  # one kernel over all parameters: much faster than per-tensor updates on CPU

    ema = None  # the weights validated and kept: an exponential moving average of the student's
    if dcfg.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(raw.student, multi_avg_fn=get_ema_multi_avg_fn(dcfg.ema_decay), use_buffers=True)
    start, history, best = 0, [], {"accuracy": -1.0, "state": None, "epoch": -1}
    if ctx.state is not None:
        raw.load_state_dict(ctx.state["model"])
        opt.load_state_dict(ctx.state["optimizer"])
        if ema is not None and ctx.state.get("ema") is not None:
            ema.load_state_dict(ctx.state["ema"])
        start, history, best = ctx.state["epoch"] + 1, ctx.state["history"], ctx.state["best"]
        if rank == 0:
            ctx.log(f"[distill] resuming from checkpoint at epoch {start}")

    plan = curriculum.stages(dcfg.epochs_align, dcfg.epochs_fusion, dcfg.epochs_adaptive, spec.has_teacher)
    sampler = GraphSampler(dcfg.sampler, dcfg.sampler_backend)
    writer = None
    if rank == 0 and spec.tb_dir:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(spec.tb_dir)
    use_curriculum = dcfg.curriculum and spec.has_teacher
    batch_size = spec.batch_size
    for epoch in range(start, len(plan)):
        t0, stage = time.time(), curriculum.STAGES[plan[epoch]]
        torch.manual_seed(epoch_seed(dcfg.seed, epoch, rank))
        rng = np.random.default_rng([dcfg.seed, epoch, rank])
        gen = torch.Generator().manual_seed(sampler_seed(dcfg.seed, epoch, rank))
        order = curriculum.select(diff, epoch, use_curriculum, dcfg.pace_start, dcfg.pace_epochs, rng)
        steps = math.ceil(len(order) / batch_size)
        if world > 1:  # every rank must take the same number of DDP steps
            t = torch.tensor([steps], device=device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
            steps = int(t)
        model.train()
        sums: dict[str, float] = {}
        temps, max_nodes = [], 0
        for s in range(steps):
            items = [sampler.sample(train[i], dcfg.node_budget, gen)
                     for i in order[s * batch_size:(s + 1) * batch_size]]
            max_nodes = max(max_nodes, max(d.num_nodes for d in items))
            batch = Batch.from_data_list(items, exclude_keys=["orig_nodes"]).to(device)
            for group in opt.param_groups:
                group["lr"] = dcfg.lr * lr_factor(dcfg.lr_schedule, epoch, s, steps, len(plan))
            loss, parts, temp = step_loss(model, batch, stage, dcfg, spec.teacher_gate)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            opt.step()
            if ema is not None:
                ema.update_parameters(raw.student)
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in parts.items():
                sums[f"loss_{k}"] = sums.get(f"loss_{k}", 0.0) + v
            temps.append(temp)
        row = {"epoch": epoch, "stage": stage.name, "train_docs": int(len(order)) * world, "steps": steps,
               "lr": opt.param_groups[0]["lr"],  # at the epoch's last step
               "temperature": float(np.mean(temps)) if temps and stage.uses_teacher and task.soft_labels else None,
               "max_nodes_per_graph": max_nodes, **{k: v / max(steps, 1) for k, v in sums.items()}}
        if rank != 0:
            ctx.report(row, None)
            continue
        kept = ema.module if ema is not None else raw.student
        pred, gold, teach = predict(kept, val, device=device)
        scores = metrics(pred, gold, teach, enc.labels, spec.has_teacher, spec.task, [d.num_nodes for d in val])
        row.update({f"val_{k}": v for k, v in scores.items()})
        row["seconds"] = round(time.time() - t0, 2)
        history.append(row)
        if row[f"val_{headline}"] > best["accuracy"]:  # "accuracy": the headline metric, kept as the key
            best = {"accuracy": row[f"val_{headline}"], "epoch": epoch,
                    "state": {k: v.detach().cpu().clone() for k, v in kept.state_dict().items()}}
        if spec.verbose:
            ctx.log("[distill] " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in row.items()))
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
