"""Graph stage: the accepted document shards -> text graphs in Parquet, on a Ray Data actor pool.

Ray Data schedules one task per ingest shard onto a fixed pool of ``ray.num_workers`` actors; each
actor loads the spaCy model once, parses its shard with ``nlp.pipe`` and commits
``graphs/part-NNNNN.parquet`` atomically. Rows never travel through the driver or the object
store, and a shard whose output file exists is done: an interrupted run resumes where it stopped,
without redoing or duplicating shards. Afterwards the training-split vocabulary is counted.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tgd.config import GraphConfig, RunConfig
from tgd.schema import DOCUMENTS, GRAPHS, VOCAB, read_manifest, stage_dir, write_table
from tgd.tasks import task_spec

GRAPH_FIELDS = [f.name for f in GRAPHS.field("graph").type]


def build_shard(builder, task: str, src: Path, dst: Path) -> dict[str, Any]:
    """Parse one document shard and write its graphs; returns the shard's statistics."""
    t0, c0 = time.time(), time.process_time()
    docs = pq.read_table(src, schema=DOCUMENTS)
    spec = task_spec(task)
    if spec.pretokenized:
        graphs = builder.build_pretokenized(docs.column("tokens").to_pylist())
    else:
        graphs = builder.build(docs.column("text").to_pylist())
    graphs_b = builder.build(docs.column("text_b").to_pylist()) if spec.paired else None
    table = pa.table({
        "id": docs.column("id"), "split": docs.column("split"), "label": docs.column("label"),
        "tags": docs.column("tags"), "score": docs.column("score"),
        "graph": pa.array(graphs, type=GRAPHS.field("graph").type),
        "graph_b": pa.array(graphs_b if graphs_b is not None else [None] * docs.num_rows,
                            type=GRAPHS.field("graph_b").type),
    })
    write_table(table, dst, GRAPHS)
    words = sum(g["num_nodes"] for g in graphs) + sum(g["num_nodes"] for g in graphs_b or [])
    t1 = time.time()
    return {"shard": dst.name, "rows": docs.num_rows, "words": words, "seconds": t1 - t0,
            "cpu_seconds": time.process_time() - c0, "pid": os.getpid(), "finished": t1}


class ShardGraphWorker:
    """Ray Data actor: the spaCy model is loaded once here, never shipped as an object."""

    def __init__(self, graph_cfg: dict, task: str):
        from pipeline.graph_builder import GraphBuilder

        self.task = task
        self.builder = GraphBuilder(GraphConfig.model_validate(graph_cfg))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stats = [build_shard(self.builder, self.task, Path(s), Path(d)) for s, d in zip(batch["src"], batch["dst"])]
        return {k: np.array([s[k] for s in stats]) for k in stats[0]}


def build_graphs(shards: list[Path], out_dir: Path, graph_cfg: GraphConfig, task: str, num_workers: int,
                 cpus_per_worker: float = 1.0, log=print) -> list[dict[str, Any]]:
    """Build the graphs of the shards whose output is missing, on a pool of ``num_workers`` actors."""
    import ray

    todo = [s for s in shards if not (out_dir / s.name).is_file()]
    if len(todo) < len(shards):
        log(f"[graphs] {len(shards) - len(todo)} of {len(shards)} shards already built, resuming")
    if not todo:
        return []
    ds = ray.data.from_items([{"src": str(s), "dst": str(out_dir / s.name)} for s in todo],
                             override_num_blocks=len(todo))
    # Two shards in flight per actor: the queued one hides the driver's dispatch latency (on a
    # saturated machine the driver is slow to hand out the next shard), and no more than one
    # queued shard keeps the end even (the default of 4 could leave one actor with several shards
    # while the other sat idle).
    pool = ray.data.ActorPoolStrategy(size=min(num_workers, len(todo)), max_tasks_in_flight_per_actor=2)
    stats = ds.map_batches(
        ShardGraphWorker, batch_size=1, compute=pool,
        fn_constructor_kwargs={"graph_cfg": graph_cfg.model_dump(), "task": task}, num_cpus=cpus_per_worker,
    )
    done = []
    for row in stats.iter_rows():
        done.append(row)
        log(f"[graphs] shard {row['shard']}: {row['rows']} docs, "
            f"{row['words'] / max(row['seconds'], 1e-9):,.0f} words/s "
            f"({len(done) + len(shards) - len(todo)}/{len(shards)})")
    return done


def graph_sizes(out_dir: Path) -> dict[str, Any]:
    """Nodes and edges per document (median, max) and on-disk bytes per document."""
    files = sorted(out_dir.glob("part-*.parquet"))
    table = pa.concat_tables(pq.read_table(f, columns=["graph"]) for f in files)
    g = table.column("graph").combine_chunks()
    nodes = g.field("num_nodes").to_numpy()
    dep = pc.list_value_length(g.field("dep_src")).to_numpy()
    co = pc.list_value_length(g.field("co_src")).to_numpy()
    total_bytes = sum(f.stat().st_size for f in files)

    def summary(x):
        return {"median": float(np.median(x)), "max": int(x.max())} if len(x) else {}

    return {"nodes": summary(nodes), "dep_edges": summary(dep), "cooccurrence_edges": summary(co),
            "bytes_per_document": round(total_bytes / max(len(nodes), 1), 1), "total_bytes": total_bytes}


def build_vocab(out_dir: Path) -> pa.Table:
    """Lower-cased token counts over the training split only (both sides for pairs)."""
    counts: dict[str, int] = {}
    for f in sorted(out_dir.glob("part-*.parquet")):
        t = pq.read_table(f, columns=["split", "graph", "graph_b"], filters=[("split", "=", "train")])
        for col in ("graph", "graph_b"):
            words = pc.list_flatten(t.column(col).combine_chunks().field("lower"))
            if len(words):
                vc = pc.value_counts(words)
                for w, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                    counts[w] = counts.get(w, 0) + c
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return pa.table({"token": [w for w, _ in ordered], "count": [c for _, c in ordered]}, schema=VOCAB)


def run(cfg: RunConfig, out_dir: Path) -> dict[str, Any]:
    shards = sorted((stage_dir(cfg, "ingest") / "documents").glob("part-*.parquet"))
    t0 = time.time()
    built = build_graphs(shards, out_dir, cfg.graph, cfg.data.task, cfg.ray.num_workers, cfg.ray.cpus_per_worker)
    seconds = time.time() - t0
    output_rows = sum(pq.ParquetFile(out_dir / s.name).metadata.num_rows for s in shards)
    input_rows = read_manifest(cfg, "ingest")["accepted_rows"]
    if output_rows != input_rows:
        raise RuntimeError(f"graph stage wrote {output_rows} rows for {input_rows} accepted documents; "
                           f"delete {out_dir} and re-run")
    vocab = build_vocab(out_dir)
    write_table(vocab, out_dir / "vocab.parquet", VOCAB)
    words = sum(r["words"] for r in built)
    return {"input_rows": input_rows, "output_rows": output_rows, "shards": len(shards),
            "shards_built_this_run": len(built), "vocab_size": vocab.num_rows,
            "words_per_second": round(words / seconds, 1) if built else None,
            **graph_sizes(out_dir)}
