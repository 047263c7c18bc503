"""Student-training throughput, measured side by side in one run (not a test).

Same encoded graphs (the config's run directory: missing stages up to teacher-logits run first),
same student + bridge, same loss (fusion stage: CE + KL + bridge), same batch size, same epochs,
every training document every epoch (curriculum off), the same total CPU threads:
(a) a plain single-process PyG loop: shuffle, ``Batch.from_data_list``, forward, backward, step;
(b) the ``distill`` stage: Ray Train, ``ray.num_workers`` DDP workers, per-epoch validation and
    checkpoints included (what a user waits for), and its time inside the epochs alone;
(c) ``train_in_process``: the same training loop in one process, as evaluate's rows run it.
Training docs/s = epochs x training documents / seconds. The last line is one JSON object with
``stage_over_plain`` and the other ratios.

    .venv/bin/python bench/student_throughput.py                       # configs/default.yaml, 3 epochs
    .venv/bin/python bench/student_throughput.py --epochs 2 --set run_dir=runs/dev
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def plain_loop(cfg, prepared, epochs: int, threads: int) -> float:
    """(a): seconds for ``epochs`` over every training document in one process."""
    import numpy as np
    import torch
    from torch_geometric.data import Batch

    from trainers.distill.bridge import AttentionBridge
    from trainers.distill.curriculum import STAGES
    from trainers.distill.data import unpack
    from trainers.distill.fit import GRAD_CLIP_NORM, Distiller, step_loss
    from trainers.student.checkpoint import build_student

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    train = [d for _, _, d in unpack(prepared.splits["train"])]
    student = build_student(prepared.enc, cfg.student, prepared.task)
    model = Distiller(student, AttentionBridge(cfg.student.hidden, prepared.state_dim))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.distill.lr, weight_decay=cfg.distill.weight_decay, fused=True)
    rng, bs = np.random.default_rng(0), cfg.distill.batch_size * cfg.ray.num_workers
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(train))
        for i in range(0, len(order), bs):
            batch = Batch.from_data_list([train[j] for j in order[i:i + bs]])
            loss, _, _ = step_loss(model, batch, STAGES["fusion"], cfg.distill)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            opt.step()
    return time.perf_counter() - t0


def local_fit(cfg, prepared, out_dir: str, threads: int) -> None:
    """(c): the stage's loop in this process, as an evaluate row runs it."""
    import torch

    from trainers.distill.loop import train_in_process

    torch.set_num_threads(threads)
    train_in_process(cfg, out_dir, prepared)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()

    import ray

    from cluster.ray_session import ensure_ray
    from tgd.config import load_config
    from tgd.stages import ensure
    from trainers.distill.data import prepare
    from trainers.distill.loop import train_on_ray

    cfg = load_config(args.config, args.set)
    cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={
        "epochs_align": 0, "epochs_fusion": args.epochs, "epochs_adaptive": 0, "curriculum": False})})
    ensure_ray(cfg.ray)
    ensure(cfg, "teacher-logits")
    t0 = time.perf_counter()
    prepared = prepare(cfg, use_teacher=True)
    n_train = prepared.splits["train"].num_rows
    threads = cfg.ray.num_workers * cfg.distill.threads_per_worker
    print(f"{n_train} training documents (prepared in {time.perf_counter() - t0:.1f}s), {args.epochs} epochs, "
          f"batch {cfg.distill.batch_size}, {threads} CPU threads in all")

    plain_s = ray.get(ray.remote(num_cpus=threads)(plain_loop).remote(cfg, prepared, args.epochs, threads))
    docs = n_train * args.epochs
    print(f"(a) plain PyG loop, 1 process, {threads} threads     {docs / plain_s:8.0f} training docs/s "
          f"({plain_s:.1f}s)")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = train_on_ray(cfg, Path(tmp) / "stage", prepared=prepared, log=lambda _: None)
        stage_s = time.perf_counter() - t0
        epochs_s = sum(h["seconds"] for h in summary["history"])
        print(f"(b) distill stage, Ray Train, {cfg.ray.num_workers} workers       "
              f"{docs / stage_s:8.0f} training docs/s "
              f"({stage_s:.1f}s in all; epochs incl. validation {epochs_s:.1f}s: {docs / epochs_s:.0f} docs/s; "
              f"start-up, data and checkpoints {stage_s - epochs_s:.1f}s)")
        local = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"threads_per_worker": threads})})
        t0 = time.perf_counter()
        ray.get(ray.remote(num_cpus=threads)(local_fit).remote(local, prepared, str(Path(tmp) / "local"), threads))
        local_s = time.perf_counter() - t0
        print(f"(c) one process, the stage's loop, {threads} threads    {docs / local_s:8.0f} training docs/s "
              f"({local_s:.1f}s, "
              f"validation included)")
    ratios = {"stage_over_plain": plain_s / stage_s, "stage_epochs_over_plain": plain_s / epochs_s,
              "local_over_plain": plain_s / local_s}
    for k, v in ratios.items():
        print(f"{k:<28} {v:.2f}")
    print(json.dumps({"train_docs": n_train, "epochs": args.epochs, "plain_docs_per_s": round(docs / plain_s, 1),
                      "stage_docs_per_s": round(docs / stage_s, 1), "local_docs_per_s": round(docs / local_s, 1),
                      **{k: round(v, 3) for k, v in ratios.items()}}))


if __name__ == "__main__":
    main()
