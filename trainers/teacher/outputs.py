"""Stage ``teacher-logits``: every document's teacher outputs, precomputed once, in Parquet (TEACHER).

Each Ray Train worker reads its own Ray Data shard of the documents and writes its own Parquet
shards; the driver then checks that every accepted document appears exactly once. How the workers
hold the teacher is ``teacher.parallel``:

- ``replicate``: every worker loads the whole model and runs its documents independently (data
  parallel, no communication in the forward) - the fast path whenever the model fits a worker;
- ``zero3``: DeepSpeed ZeRO stage 3 shards the parameters across the workers (each holds 1/N), so
  a teacher larger than one device runs; every layer is all-gathered in every forward, so all
  workers must run the same number of forwards: a worker whose shard is exhausted runs a dummy
  forward until every worker is done;
- ``auto``: replicate when the checkpoint's parameter bytes x ``teacher.memory_safety`` fit the
  free memory of every worker's device, else zero3; the choice and its reason go to the log and
  the manifest.

Resuming: every finished document batch is its own part file, written atomically, named after the
attempt, teacher and rank (``part-aAAA-tTT-rRRR-NNNNN.parquet``). A re-run after an interruption
(the stage runner keeps the directory when the fingerprint is unchanged) reads the ids of the part
files already there, hands the workers only the other documents and writes under the next attempt
number, so nothing is redone or duplicated; a part file that cannot be read is deleted and its
documents redone.

Cross-fitting (``teacher.folds`` > 1, ``crossfit.py``): one launch per teacher, the full teacher for
validation, test and unlabelled documents, each fold teacher for the training documents of its fold
and their transfer copies; each row's ``teacher`` column names the teacher that labelled it.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tgd.config import RunConfig, TeacherConfig
from tgd.errors import StageError
from tgd.schema import DOCUMENTS, GRAPHS, TEACHER, read_manifest, stage_dir, write_table
from trainers.shard_split import split_config
from trainers.teacher.crossfit import Labeller, assign, labellers
from trainers.teacher.inference import DOCS_PER_BATCH, TeacherForward, process, verbalizer_ids
from trainers.teacher.model import hidden_size, load_model, load_tokenizer, state_projection, teacher_model_dir
from trainers.teacher.windows import Windower

# A part file per finished document batch: a killed run loses at most the batch in progress on each
# worker (a whole 4096-row file took minutes; on a large teacher, hours).
ROWS_PER_FILE = DOCS_PER_BATCH
PART_NAME = re.compile(r"part-a(\d+)-t\d+-r\d+-\d+\.parquet")  # attempt, teacher, rank, file number
PROGRESS_SECONDS = 30  # a progress line at most this often (one Brown document batch takes minutes)
WORKER_STATS = "_workers.json"
ROWS_PER_BLOCK = 64  # documents per Ray Data block handed to a worker


# ---------------------------------------------------------------- Ray Data: documents + node offsets
def _read_shard_pair(batch: pa.Table, done: pa.Array | None = None) -> pa.Table:
    """One (ingest shard, graph shard) pair -> the columns the teacher needs, one row per document
    (without the ids in ``done``: documents an earlier attempt finished)."""
    out = []
    for src, gsrc in zip(batch.column("docs").to_pylist(), batch.column("graphs").to_pylist()):
        docs = pq.read_table(src, schema=DOCUMENTS, columns=["id", "split", "text", "text_b"])
        graphs = pq.read_table(gsrc, schema=GRAPHS, columns=["id", "graph"])
        if docs.column("id").to_pylist() != graphs.column("id").to_pylist():
            raise StageError(f"{gsrc} does not match {src} row for row; re-run the graphs stage")
        g = graphs.column("graph").combine_chunks()
        out.append(pa.table({"id": docs.column("id"), "split": docs.column("split"), "text": docs.column("text"),
                             "text_b": docs.column("text_b"), "node_start": g.field("start"),
                             "node_end": g.field("end")}))
    table = pa.concat_tables(out)
    if done is not None and len(done):
        table = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=done)))
    return table


def _input_pairs(cfg: RunConfig) -> list[dict[str, str]]:
    """(document shard, graph shard) of every input: the accepted documents, then the transfer copies."""
    transfer = stage_dir(cfg, "transfer")
    return [{"docs": str(p), "graphs": str(graph_dir / p.name)}
            for doc_dir, graph_dir in ((stage_dir(cfg, "ingest") / "documents", stage_dir(cfg, "graphs")),
                                       (transfer / "documents", transfer / "graphs"))
            for p in sorted(doc_dir.glob("part-*.parquet"))]


def documents_dataset(cfg: RunConfig, done: set[str] | None = None):
    """The documents for the workers, less ``done`` (ids an earlier attempt of the stage wrote)."""
    import ray

    pairs = _input_pairs(cfg)
    ds = ray.data.from_items(pairs, override_num_blocks=max(len(pairs), 1))
    kwargs = {"done": pa.array(sorted(done), pa.string())} if done else None
    # Workers receive whole blocks: cut each shard into small blocks so that every worker gets a
    # share even when the corpus has fewer ingest shards than workers.
    return ds.map_batches(_read_shard_pair, batch_size=1, batch_format="pyarrow", fn_kwargs=kwargs).repartition(
        target_num_rows_per_block=ROWS_PER_BLOCK)


def resume_state(out_dir: Path) -> tuple[set[str], int, int]:
    """What earlier attempts left in ``out_dir``: (ids of their complete part files, number of those
    files, the next attempt number). Leftover ``*.tmp`` files (a write cut short) and part files that
    cannot be read or that repeat documents of another part are deleted: their documents are redone."""
    attempt = 1 + max((int(m.group(1)) for p in out_dir.glob("part-*") if (m := PART_NAME.match(p.name))), default=-1)
    for tmp in out_dir.glob("*.tmp"):
        tmp.unlink()
    done: set[str] = set()
    kept = 0
    for f in sorted(out_dir.glob("part-*.parquet")):
        try:
            ids = pq.read_table(f, schema=TEACHER).column("id").to_pylist()  # every column: a damaged one fails here
            why = ("repeats documents of another part file" if done.intersection(ids) or len(set(ids)) != len(ids)
                   else None)
        except (OSError, pa.ArrowException, ValueError) as e:
            why = f"cannot be read ({type(e).__name__}: {str(e)[:200]})"
        if why:
            print(f"[teacher-logits] {f.name} {why}: deleted, its documents will be redone", flush=True)
            f.unlink()
            continue
        done.update(ids)
        kept += 1
    return done, kept, attempt


# ---------------------------------------------------------------- the Ray Train worker
def choose_parallel(requested: str, param_bytes: int, free_bytes: float, safety: float) -> tuple[str, str]:
    """-> (replicate | zero3, why) for one worker; ``auto`` compares parameters x safety with free memory."""
    if requested != "auto":
        return requested, f"teacher.parallel={requested}"
    need, mib = param_bytes * safety, 2**20
    if need <= free_bytes:
        return "replicate", (f"auto: parameters {param_bytes / mib:,.0f} MiB x {safety:g} = {need / mib:,.0f} MiB "
                             f"fit the worker's {free_bytes / mib:,.0f} MiB of free device memory")
    return "zero3", (f"auto: parameters {param_bytes / mib:,.0f} MiB x {safety:g} = {need / mib:,.0f} MiB "
                     f"exceed the worker's {free_bytes / mib:,.0f} MiB of free device memory; "
                     "sharding them with ZeRO-3")


def worker_loop(config: dict[str, Any]) -> None:
    """Teacher inference on this worker's shard (replicated or ZeRO-3); writes ``part-aAAA-tTT-rRRR-NNNNN.parquet``
    files (attempt, teacher, rank, file number), one per finished document batch."""
    import ray.train
    import torch
    import torch.distributed as dist

    from trainers.tasks import get_task
    from trainers.teacher.deepspeed_env import checkpoint_bytes, free_device_bytes, peak_memory_mb
    from trainers.teacher.inference import TeacherForward, verbalizer_ids
    from trainers.teacher.model import load_model, load_tokenizer, state_projection

    t0 = time.time()
    tcfg = TeacherConfig.model_validate(config["teacher"])
    task, labels, path = config["task"], config["labels"], Path(config["model_path"])
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    mode, reason = choose_parallel(tcfg.parallel, checkpoint_bytes(path), free_device_bytes(config["use_gpu"], device),
                                   tcfg.memory_safety)
    if tcfg.parallel == "auto":  # every worker must hold the model the same way: zero3 if any one cannot replicate
        fits = torch.tensor([1.0 if mode == "replicate" else 0.0], device=device)
        dist.all_reduce(fits, op=dist.ReduceOp.MIN)
        if fits.item() == 0 and mode == "replicate":
            mode, reason = "zero3", "auto: another worker has too little free memory to replicate; sharding with ZeRO-3"
    if rank == 0:
        print(f"[teacher-logits] parallel={mode} ({reason})", flush=True)

    if mode == "zero3":
        from trainers.teacher.deepspeed_env import setup_worker, zero3_inference_config

        device = setup_worker(config["use_gpu"], config["threads"])
        import deepspeed
        from transformers.integrations.deepspeed import HfDeepSpeedConfig

        ds_config = zero3_inference_config(tcfg.eval_batch_size)
        dschf = HfDeepSpeedConfig(ds_config)  # noqa: F841  must be alive during from_pretrained: load straight into shards
        engine, *_ = deepspeed.initialize(model=load_model(path, tcfg.kind, get_task(task).teacher_head, labels),
                                          config=ds_config)
        module = engine.module
    else:
        module = load_model(path, tcfg.kind, get_task(task).teacher_head, labels).to(device)
    module.eval()
    tok = load_tokenizer(path)
    causal = tcfg.kind == "causal-lm"
    windower = Windower(tok, tcfg.max_length, tcfg.stride, tcfg.max_windows, tcfg.prompt if causal else None)
    verb = verbalizer_ids(tok, labels, tcfg.verbalizer) if causal else None
    forward = TeacherForward(module, tcfg.kind, task, tok.pad_token_id, device, verb)
    proj = state_projection(config["hidden"], tcfg.state_dim, tcfg.seed) if tcfg.node_states else None

    def sync(has_work: bool) -> bool:
        flag = torch.tensor([1.0 if has_work else 0.0], device=device)
        dist.all_reduce(flag)
        return flag.item() > 0

    shard = ray.train.get_dataset_shard("docs")
    batches = (
        {k: list(v) for k, v in b.items()}
        for b in shard.iter_batches(batch_size=DOCS_PER_BATCH, batch_format="pandas")
    )
    out_dir, buf, files, rows, windows = Path(config["out_dir"]), [], 0, 0, 0

    def flush() -> None:
        nonlocal buf, files
        if buf:
            write_table(pa.Table.from_pylist(buf, schema=TEACHER),
                        out_dir / f"part-a{config['attempt']:03d}-t{config['launch']:02d}-r{rank:03d}-"
                        f"{files:05d}.parquet", TEACHER)
            files += 1
            buf = []

    seen, last_print, first_forward = 0, time.time(), None

    def progress(final: bool = False) -> None:
        nonlocal last_print
        if rank == 0 and (final or time.time() - last_print >= PROGRESS_SECONDS):
            last_print, dt = time.time(), time.time() - t0
            print(f"[teacher-logits] rank 0: {rows} documents done, {seen} windows run ({seen / dt:.1f} windows/s, "
                  f"{rows / dt:.2f} docs/s)", flush=True)

    def forward_with_progress(seqs):
        nonlocal seen, first_forward
        first_forward = first_forward or time.time()  # after model load and the first Ray Data block
        out = forward(seqs)
        seen += len(seqs)
        progress()
        return out

    for done in process(batches, forward_with_progress, tcfg, get_task(task), windower, proj, config["teacher_id"],
                        sync if mode == "zero3" else None):
        buf.extend(done)
        rows += len(done)
        windows += sum(r["num_windows"] for r in done)
        if len(buf) >= ROWS_PER_FILE:
            flush()
    flush()
    progress(final=True)
    # What this rank holds of the teacher: the whole model (replicate) or its ZeRO-3 partition (1/N).
    held = sum(p.ds_tensor.numel() * p.ds_tensor.element_size() if hasattr(p, "ds_tensor")
               else p.numel() * p.element_size()
               for p in module.parameters())
    stats = torch.tensor([rows, windows, files, peak_memory_mb(), time.time() - t0, held / 2**20,
                          time.time() - (first_forward or time.time())], dtype=torch.float64, device=device)
    gathered = [torch.zeros_like(stats) for _ in range(world)]
    dist.all_gather(gathered, stats)
    per_worker = [{"rank": i, "rows": int(g[0]), "windows": int(g[1]), "files": int(g[2]),
                   "peak_rss_mb": round(float(g[3]), 1), "seconds": round(float(g[4]), 1),
                   "param_mb_held": round(float(g[5]), 2), "forward_seconds": round(float(g[6]), 1)}
                  for i, g in enumerate(gathered)]
    if rank == 0:  # Ray Train v2 keeps metrics only with checkpoints: hand the stats over beside the shards
        tmp = out_dir / (WORKER_STATS + ".tmp")
        tmp.write_text(json.dumps({"parallel": mode, "reason": reason, "workers": per_worker}))
        tmp.replace(out_dir / WORKER_STATS)


def run_workers(cfg: RunConfig, out_dir: Path, teachers: list[Labeller], labels: list[str]) -> dict[str, Any]:
    """Launch a TorchTrainer per teacher over the documents it labels that no earlier attempt finished;
    returns {parallel, reason, workers: per-worker statistics of this attempt's last launch, resumed_rows,
    run_rows, attempt, per_teacher: documents each teacher labels}."""
    from trainers.raytrain import make_trainer

    done, kept, attempt = resume_state(out_dir)
    ids = [i for pair in _input_pairs(cfg)
           for i in pq.read_table(pair["docs"], columns=["id"]).column("id").to_pylist()]
    owner = assign(cfg, ids, teachers)
    todo = sum(1 for i in ids if i not in done)
    print(f"[teacher-logits] {len(done)} documents already done ({kept} part files of earlier attempts kept), "
          f"{todo} to run" + (f" (attempt {attempt})" if todo else ""), flush=True)
    stats = out_dir / WORKER_STATS
    resume = {"resumed_rows": len(done), "run_rows": todo, "attempt": attempt,
              "per_teacher": {t.name: owner.count(n) for n, t in enumerate(teachers)}}
    if not todo:  # everything was written before the interruption: no workers needed
        prev = json.loads(stats.read_text()) if stats.is_file() else {}
        stats.unlink(missing_ok=True)
        return {"parallel": prev.get("parallel", "none"),
                "reason": prev.get("reason", "every document was done by an earlier attempt; no workers launched"),
                "workers": prev.get("workers", []), **resume}
    result: dict[str, Any] = {}
    for n, teacher in enumerate(teachers):
        # each launch skips what is done and what another teacher labels
        skip = done | {i for i, o in zip(ids, owner) if o != n}
        if len(skip) == len(ids):
            continue
        if len(teachers) > 1:
            print(f"[teacher-logits] teacher {teacher.name}: {len(ids) - len(skip)} documents", flush=True)
        stats.unlink(missing_ok=True)
        shutil.rmtree(out_dir / "_ray", ignore_errors=True)  # no checkpoints to resume: the part files are the state
        config = {"teacher": cfg.teacher.model_dump(mode="json"), "task": cfg.data.task, "labels": labels,
                  "model_path": str(teacher.model_path), "teacher_id": teacher.teacher_id,
                  "out_dir": str(out_dir.resolve()), "use_gpu": cfg.ray.use_gpu,
                  "threads": max(int(cfg.ray.cpus_per_worker), 1), "hidden": hidden_size(teacher.model_path),
                  "attempt": attempt, "launch": n}
        trainer = make_trainer(cfg, worker_loop, config, name="teacher-logits", storage=out_dir / "_ray",
                               datasets={"docs": documents_dataset(cfg, skip)}, dataset_config=split_config(equal=()),
                               stage="teacher-logits")
        trainer.fit()
        result = json.loads(stats.read_text())
        stats.unlink()
    return {**result, **resume}


# ---------------------------------------------------------------- documents from outside the run
def label_in_process(cfg: RunConfig, docs: list[dict[str, Any]], graphs: list[dict[str, Any]],
                     log=print) -> pa.Table:
    """TEACHER rows for documents that are not the run's (`tgd adapt`'s domain texts), in this process:
    the run's teacher (fine-tuned, as the stage used it), its label order, windows and state projection,
    through the stage's one inference path, so they read exactly like the stage's own rows.
    ``docs``: DOCUMENTS fields (id, split, text, text_b); ``graphs``: each document's graph (node offsets
    for the node-level outputs)."""
    from trainers.tasks import get_task

    m = read_manifest(cfg, "teacher-logits")
    if m is None:
        raise StageError(f"no teacher outputs under {stage_dir(cfg, 'teacher-logits')}: run `tgd run CONFIG` first")
    tcfg, task = cfg.teacher, get_task(cfg.data.task)
    path = teacher_model_dir(cfg)
    module = load_model(path, tcfg.kind, task.teacher_head, m["labels"]).eval()
    tok = load_tokenizer(path)
    causal = tcfg.kind == "causal-lm"
    windower = Windower(tok, tcfg.max_length, tcfg.stride, tcfg.max_windows, tcfg.prompt if causal else None)
    forward = TeacherForward(module, tcfg.kind, task.name, tok.pad_token_id, "cpu",
                             verbalizer_ids(tok, m["labels"], tcfg.verbalizer) if causal else None)
    proj_file = stage_dir(cfg, "teacher-logits") / "state_projection.npy"
    proj = np.load(proj_file) if tcfg.node_states and proj_file.is_file() else None
    t0, rows = time.time(), []

    def batches():
        for k in range(0, len(docs), DOCS_PER_BATCH):
            part, gpart = docs[k:k + DOCS_PER_BATCH], graphs[k:k + DOCS_PER_BATCH]
            yield {"id": [d["id"] for d in part], "split": [d["split"] for d in part],
                   "text": [d["text"] for d in part], "text_b": [d.get("text_b") for d in part],
                   "node_start": [g["start"] for g in gpart], "node_end": [g["end"] for g in gpart]}

    for done in process(batches(), forward, tcfg, task, windower, proj, m["teacher_id"]):
        rows.extend(done)
        log(f"[teacher] {len(rows):,} of {len(docs):,} documents labelled "
            f"({len(rows) / (time.time() - t0):.1f} docs/s)")
    return pa.Table.from_pylist(rows, schema=TEACHER)


# ---------------------------------------------------------------- quality of the stored outputs
def teacher_scores(out_dir: Path, cfg: RunConfig, labels: list[str]) -> dict[str, Any]:
    """Per split, the task's teacher scores: accuracy + macro-F1 (classification), node accuracy
    (token), Pearson r (pair)."""
    from trainers.tasks import get_task

    task = get_task(cfg.data.task)
    all_rows = _read_outputs(out_dir).to_pylist()
    docs = pa.concat_tables(pq.read_table(f, schema=DOCUMENTS, columns=["id", task.teacher_gold])
                            for f in sorted((stage_dir(cfg, "ingest") / "documents").glob("part-*.parquet")))
    truth = dict(zip(docs.column("id").to_pylist(), docs.column(task.teacher_gold).to_pylist()))
    out: dict[str, Any] = {}
    for split in ("train", "validation", "test"):
        rows = [r for r in all_rows if r["split"] == split]
        if not rows:
            continue
        gold, pred = [], []
        for r in rows:
            row_gold, row_pred = task.teacher_predictions(r, truth[r["id"]], labels)
            gold.extend(row_gold)
            pred.extend(row_pred)
        out[split] = task.teacher_scores(gold, pred, labels)
    return out


def _read_outputs(out_dir: Path) -> pa.Table:
    files = sorted(out_dir.glob("part-*.parquet"))
    return pa.concat_tables(pq.read_table(f, schema=TEACHER) for f in files) if files else TEACHER.empty_table()


# ---------------------------------------------------------------- the stage
def run(cfg: RunConfig, out_dir: Path) -> dict[str, Any]:
    ft = read_manifest(cfg, "teacher-finetune")
    teachers = labellers(cfg)
    model_path = teachers[0].model_path
    labels, teacher = ft["labels"], ft["teacher_id"]
    input_rows = (read_manifest(cfg, "ingest")["accepted_rows"]
                  + (read_manifest(cfg, "transfer") or {}).get("output_rows", 0))
    t0 = time.time()
    launched = run_workers(cfg, out_dir, teachers, labels)
    seconds = time.time() - t0
    table = _read_outputs(out_dir)
    ids = table.column("id").to_pylist()
    if len(ids) != input_rows or len(set(ids)) != len(ids):
        raise RuntimeError(f"teacher-logits wrote {len(ids)} rows ({len(set(ids))} distinct ids) for {input_rows} "
                           f"documents; delete {out_dir} and re-run")
    shutil.rmtree(out_dir / "_ray", ignore_errors=True)
    extras: dict[str, Any] = {}
    if cfg.teacher.node_states:
        proj = state_projection(hidden_size(model_path), cfg.teacher.state_dim, cfg.teacher.seed)
        np.save(out_dir / "state_projection.npy", proj)
        extras["state_projection"] = {"file": "state_projection.npy", "shape": list(proj.shape),
                                      "seed": cfg.teacher.seed, "kind": "gaussian / sqrt(state_dim)"}
    files = sorted(out_dir.glob("part-*.parquet"))
    total = sum(f.stat().st_size for f in files)
    ns = table.column("node_states")
    state_values = pc.sum(pc.list_value_length(ns)).as_py() or 0
    return {
        "input_rows": input_rows, "output_rows": len(ids), "labels": labels, "task": cfg.data.task,
        "teacher_id": teacher, "kind": cfg.teacher.kind,
        "parallel": launched["parallel"], "parallel_reason": launched["reason"],
        "sharding": (f"deepspeed-zero3 x {cfg.ray.num_workers} ray train workers" if launched["parallel"] == "zero3"
                     else f"whole model replicated on {cfg.ray.num_workers} ray train workers"
                     if launched["parallel"] == "replicate" else "none: no workers launched"),
        "resumed_rows": launched["resumed_rows"], "attempt": launched["attempt"],
        "max_length": cfg.teacher.max_length, "stride": cfg.teacher.stride, "max_windows": cfg.teacher.max_windows,
        "long_documents": "sliding windows, outputs averaged over windows",
        "alignment": {"first": "first sub-word", "mean": "mean of sub-words"}[cfg.teacher.alignment],
        "state_dim": cfg.teacher.state_dim if cfg.teacher.node_states else None,
        "truncated_rows": int(pc.sum(table.column("truncated")).as_py() or 0),
        "windows_per_document": round(float(np.mean(table.column("num_windows").to_numpy())), 3),
        "bytes_per_document": round(total / max(len(ids), 1), 1), "total_bytes": total,
        "state_bytes_per_document": round(2 * state_values / max(len(ids), 1), 1),
        "documents_per_second": round(launched["run_rows"] / seconds, 2), "workers": launched["workers"],
        "folds": max(len(teachers) - 1, 1), "labelled_by": launched["per_teacher"],
        "scores": teacher_scores(out_dir, cfg, labels), **extras,
    }

