"""Teacher fine-tuning throughput: the ``teacher-finetune`` stage vs a plain PyTorch loop, side by side (not a test).

Same training documents, same model, same sampled windows (one per document), same padding policy
(length-sorted micro-batches inside shuffle buffers of the same size), same documents per optimizer
step, same optimizer (torch AdamW, fused, gradient clipping 1.0), same total CPU threads:
(a) a plain single-process PyTorch loop (a Ray task holding ``--cpus`` CPUs, ``--cpus`` torch threads),
    run before and after (b) so that load from other processes on the machine shows as a spread;
(b) the stage: DeepSpeed on Ray Train, ``--workers`` workers x ``--cpus / --workers`` threads, timed
    (1) whole: Ray Train start-up, model load, training, validation and checkpointing of every epoch,
    the best checkpoint copied out;
    (2) inside the workers: the training loops only (the stage's own per-epoch clock).
Prints training documents/second of each, the ratios to (a) and the stage's own time split; the last
line is one JSON object.

    .venv/bin/python bench/teacher_finetune_throughput.py                     # 2,000 rt-sentiment documents
    .venv/bin/python bench/teacher_finetune_throughput.py --docs 0            # the whole corpus
    .venv/bin/python bench/teacher_finetune_throughput.py --set teacher.zero_stage=2
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")


def plain_loop(cfg_json: dict, model_path: str, labels: list[str], workers: int, threads: int) -> dict:
    """One process, ``threads`` torch threads: the stage's epoch loop without Ray, DeepSpeed or collectives."""
    import numpy as np
    import torch

    from tgd.config import RunConfig
    from trainers.tasks import get_task
    from trainers.teacher.finetune import BUCKET_BATCHES, PhaseTimer, length_buckets, make_batch, training_rows
    from trainers.teacher.inference import pad_batch
    from trainers.teacher.model import load_model, load_tokenizer
    from trainers.teacher.windows import Windower

    torch.set_num_threads(threads)
    cfg = RunConfig.model_validate(cfg_json)
    tcfg, task = cfg.teacher, get_task(cfg.data.task)
    train = training_rows(cfg, "train")
    n_docs = train.num_rows // workers * workers  # the stage's equal shards drop the remainder
    if tcfg.max_train_docs:
        n_docs = min(n_docs, tcfg.max_train_docs // workers * workers)
    docs = {k: train.column(k).to_pylist()[:n_docs] for k in ("text", "label", "tokens", "tags")}
    label_index = {l: i for i, l in enumerate(labels)}
    tok = load_tokenizer(Path(model_path))
    windower = Windower(tok, tcfg.max_length, tcfg.stride, tcfg.max_windows)
    torch.manual_seed(tcfg.seed)
    model = load_model(Path(model_path), tcfg.kind, task.teacher_head, labels, train=True)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=True)
    batch = tcfg.batch_size * workers  # documents per optimizer step, as the stage's all workers together
    steps_total = math.ceil(n_docs / batch) * tcfg.epochs
    warmup = max(int(tcfg.warmup_fraction * steps_total), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(steps_total - s, 0) / max(steps_total - warmup, 1)))
    seconds, losses, windows, real, padded = 0.0, [], 0, 0, 0
    timer = PhaseTimer()
    for epoch in range(tcfg.epochs):
        rng = np.random.default_rng([tcfg.seed, epoch])
        order = rng.permutation(n_docs)  # a whole-epoch shuffle: at least as random as the stage's
        t0 = time.perf_counter()
        timer.lap("other")
        chunk = BUCKET_BATCHES * batch
        for c in range(0, n_docs, chunk):
            idx = order[c:c + chunk]
            rows, lab = make_batch({k: [v[i] for i in idx] for k, v in docs.items()}, windower, task, label_index, rng)
            for mb in length_buckets([len(r) for r in rows], batch, np.random.default_rng([tcfg.seed, epoch, c]), rng):
                ids, mask = pad_batch([rows[i] for i in mb], tok.pad_token_id)
                y = task.finetune_batch_targets([lab[i] for i in mb])
                timer.lap("collate")
                loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
                timer.lap("forward")
                loss.backward()
                timer.lap("backward")
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                timer.lap("step")
                losses.append(float(loss.detach()))
                windows += ids.shape[0]
                real, padded = real + int(mask.sum()), padded + mask.numel()
        seconds += time.perf_counter() - t0
    timer.seconds.pop("other", None)
    return {"docs_per_s": windows / seconds, "windows": windows, "seconds": seconds,
            "first_loss": losses[0], "last_loss": float(np.mean(losses[-5:])),
            "padding_fraction": 1 - real / max(padded, 1), "phases": timer.seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="rt-sentiment")
    ap.add_argument("--docs", type=int, default=2000, help="corpus documents (data.limit; 0 = all); ~80%% are training")
    ap.add_argument("--model", default="all-minilm-l6-v2",
                    help="teacher checkpoint directory (default: packaged MiniLM)")
    ap.add_argument("--cpus", type=int, default=2, help="total CPU threads given to each variant")
    ap.add_argument("--workers", type=int, default=2,
                    help="Ray Train workers of the stage (cpus / workers threads each)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for both variants, e.g. teacher.zero_stage=2 or teacher.batch_size=64")
    args = ap.parse_args()

    import ray

    from pipeline import ingest
    from tgd.config import load_config
    from trainers.teacher.finetune import finetune
    from trainers.teacher.model import resolve_model_path

    work = Path(tempfile.mkdtemp(prefix="tgd-bench-finetune-"))
    over = [f"run_dir={work}", f"data.source={args.corpus}", f"teacher.model={args.model}",
            f"ray.num_workers={args.workers}", f"ray.cpus_per_worker={args.cpus / args.workers}",
            *([f"data.limit={args.docs}"] if args.docs else []),
            # one learning rate and exactly teacher.epochs passes, as the plain loop trains: throughput, not the search
            "teacher.lr=1e-4", "teacher.min_steps=1", *args.overrides]
    cfg = load_config(None, over)
    model_path = resolve_model_path(cfg.teacher.model)
    # +1 logical CPU for the Ray Data tasks that feed the workers (see cluster/ray_session.py)
    ray.init(num_cpus=args.cpus + 1, include_dashboard=True, log_to_driver=False)
    (work / "ingest").mkdir(parents=True)
    m = ingest.run(cfg, work / "ingest")
    (work / "ingest" / "manifest.json").write_text(json.dumps(m))
    labels = m["labels"]
    t = cfg.teacher
    print(f"{m['accepted_rows']} {args.corpus} documents, teacher {cfg.teacher.model}, max_length {t.max_length}, "
          f"{t.batch_size} windows per worker per step x {args.workers} workers = {t.batch_size * args.workers} per "
          f"optimizer step, {t.epochs} epoch(s), {args.cpus} CPU threads per variant, {os.cpu_count()} cores on this "
          f"machine (1-min load average before: {os.getloadavg()[0]:.1f})")

    def run_plain(tag: str) -> dict:
        p = ray.get(ray.remote(num_cpus=args.cpus)(plain_loop).remote(
            cfg.model_dump(mode="json"), str(model_path), labels, args.workers, args.cpus))
        phases = "  ".join(f"{k} {v:.1f}s" for k, v in p["phases"].items())
        print(f"(a) plain PyTorch, 1 process, {args.cpus} threads [{tag}] {p['docs_per_s']:7.1f} docs/s   "
              f"({p['windows']} windows in {p['seconds']:.1f}s: {phases}; padding {p['padding_fraction']:.0%}; "
              f"loss {p['first_loss']:.3f} -> {p['last_loss']:.3f})")
        return p

    before = run_plain("before")
    out = work / "teacher-finetune"
    out.mkdir()
    t0 = time.perf_counter()
    res = finetune(cfg, out, model_path, labels)
    whole = time.perf_counter() - t0
    after = run_plain("after")
    plain = (before["docs_per_s"] + after["docs_per_s"]) / 2

    hist = res["history"]
    windows = sum(h["timing"]["train_windows"] for h in hist)
    inside = windows / sum(h["timing"]["train_seconds"] for h in hist)
    stage = windows / whole
    split: dict[str, float] = {}
    for h in hist:
        for k, v in h["timing"].items():
            if k.endswith("_seconds") and k not in ("train_seconds", "validation_seconds"):
                split[k[:-8]] = split.get(k[:-8], 0.0) + v
    inside_s = sum(h["timing"]["train_seconds"] for h in hist)
    print(f"(b) stage, DeepSpeed ZeRO-{res['zero_stage']} on Ray Train, {args.workers} workers   "
          f"{stage:7.1f} docs/s whole stage "
          f"({windows} windows in {whole:.1f}s)")
    print(f"    inside the workers (training loops only)            {inside:7.1f} docs/s   ({inside_s:.1f}s: "
          + "  ".join(f"{k} {v:.1f}s" for k, v in split.items())
          + f"; padding {hist[-1]['timing']['padding_fraction']:.0%})")
    val_s = sum(h["timing"].get("validation_seconds", 0.0) for h in hist)
    print(f"    outside the training loops: {whole - inside_s:.1f}s "
          f"(Ray Train start-up, model load, validation {val_s:.1f}s, "
          f"checkpoints)")
    print(f"    zero_stage {res['zero_stage']}: {res['zero_stage_reason']}")
    print(f"    validation accuracy {res['best_validation']['accuracy']:.4f}, "
          f"macro-F1 {res['best_validation']['macro_f1']:.4f}; "
          f"train loss {hist[0]['first_loss']:.3f} -> {hist[-1]['last_loss']:.3f}")
    print(f"plain, mean of before/after: {plain:.1f} docs/s "
          f"(spread {abs(before['docs_per_s'] - after['docs_per_s']) / plain:.0%}); "
          f"1-min load average after: {os.getloadavg()[0]:.1f}")
    print(f"ratio (b) whole stage / (a) plain:        {stage / plain:.2f}")
    print(f"ratio (b) inside workers / (a) plain:     {inside / plain:.2f}")
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"stage_over_plain": round(stage / plain, 3), "stage_docs_per_s": round(stage, 2),
                      "plain_docs_per_s": round(plain, 2), "inside_workers_over_plain": round(inside / plain, 3),
                      "inside_workers_docs_per_s": round(inside, 2), "zero_stage": res["zero_stage"],
                      "plain_before_docs_per_s": round(before["docs_per_s"], 2),
                      "plain_after_docs_per_s": round(after["docs_per_s"], 2), "train_windows": windows,
                      "val_accuracy": res["best_validation"]["accuracy"]}))


if __name__ == "__main__":
    main()
