"""Graph-stage throughput, measured side by side in one run (not a test).

(a) bare spaCy ``nlp.pipe`` with the graph's components, one process, one thread, over the SAME
    shards the stage gets, one ``nlp.pipe`` call per shard at ``graph.batch_size`` (what
    ``GraphBuilder.build`` does inside a worker), after a warm-up pass: parse only;
(b) the full graph stage through Ray Data (parse + graph construction + Parquet) with 1 worker;
(c) the same with 2 workers;
(d) the graph stage with ``graph.parser=fast`` (tokenizer + sentencizer, no tagger/parser), 1 worker;
(e) the machine's ceiling for (c)/(b): words/s of two bare-parse processes running at once over
    the first ``--ceiling-shards`` shards, against one (on a shared or throttled machine two
    CPU-bound processes do not get two cores' worth, and no scheduler can do better than that).
Prints words/second, (b)/(a) (target >= 0.85), (c)/(b) (target >= 1.8 on 2 cores), (d)/(b), and
as its last line one JSON object with the ratios.

Why an earlier run measured (b)/(a) = 1.20: the old bare loop streamed the whole corpus through
ONE ``nlp.pipe`` at batch_size 256 documents, cold. Brown documents have ~2,300 words, so a batch
held ~150-256 documents (~350-590 k tokens; with --docs 150 the whole corpus was a single batch),
while a stage worker parses one ~20 k-word shard (~9 documents) per call. spaCy's parser
precomputes its first hidden layer for every token of a batch (nF x nO x nP = 8 x 64 x 2 floats,
4 KiB per token: ~1.5 GB for 357 k tokens) and tok2vec's activations scale the same way, so a
batch that size runs out of cache and spends its time on memory; the stage's small batches did
not. ``--explain`` times that old loop next to (a) on the same documents (peak RSS included).

    .venv/bin/python bench/graph_throughput.py            # Brown corpus, ~1.16 M words (the default)
    .venv/bin/python bench/graph_throughput.py --docs 60  # quicker, less precise

Timings on a shared machine: the load average before and after is printed; a loaded machine
makes every wall-clock figure (and the 2-worker speedup most of all) lower than it should be.
Process CPU time per word is printed beside each wall-clock rate.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # (a) must be a one-core figure, like one Ray actor (Ray sets 1 per 1-CPU actor too)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def bare_parse(nlp, shard_texts, cfg) -> tuple[int, float, float]:
    """(a): per shard, the chunks ``GraphBuilder.build`` would parse, in one ``nlp.pipe`` call."""
    from pipeline.graph_builder import chunk_text

    words, t0, c0 = 0, time.perf_counter(), time.process_time()
    for texts in shard_texts:
        chunks = (c for t in texts for _, c in chunk_text(t, cfg.chunk_chars))
        for doc in nlp.pipe(chunks, batch_size=cfg.batch_size):
            words += sum(not t.is_space for t in doc)
    return words, time.perf_counter() - t0, time.process_time() - c0


def old_bare_loop(nlp, texts, cfg) -> tuple[int, float]:
    """The loop the bench used before: one stream over every document at batch_size 256, cold."""
    from pipeline.graph_builder import chunk_text

    words, t0 = 0, time.perf_counter()
    for doc in nlp.pipe((c for t in texts for _, c in chunk_text(t, cfg.chunk_chars)), batch_size=256):
        words += sum(not t.is_space for t in doc)
    return words, time.perf_counter() - t0


def _bare_process(args) -> tuple[int, float]:
    """Child process of the ceiling check: load spaCy, warm up, wait for the sibling, parse."""
    model, shard_texts, graph_cfg, barrier = args
    from pipeline.graph_builder import load_nlp
    from pipeline.pos_lookup import replace_attribute_ruler

    nlp = load_nlp(model)
    replace_attribute_ruler(nlp)  # the components the graph stage runs
    bare_parse(nlp, [shard_texts[0][:2]], graph_cfg)
    barrier.wait()
    words, seconds, _ = bare_parse(nlp, shard_texts, graph_cfg)
    return words, seconds


def machine_ceiling(shard_texts, graph_cfg) -> tuple[float, float]:
    """Words/s of 1 and of 2 bare-parse processes running at once on the same shards: what this
    machine gives two CPU-bound processes right now, the ceiling of (c)/(b)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    rates = []
    for n in (1, 2):
        barrier = ctx.Manager().Barrier(n)
        with ctx.Pool(n) as pool:
            out = pool.map(_bare_process, [(graph_cfg.spacy_model, shard_texts, graph_cfg, barrier)] * n)
        rates.append(sum(w for w, _ in out) / max(s for _, s in out))
    return rates[0], rates[1]


def stage(shards, out: Path, graph_cfg, task: str, workers: int) -> tuple[float, list[dict]]:
    from pipeline.graphs import build_graphs

    out.mkdir()
    t0 = time.perf_counter()
    rows = build_graphs(shards, out, graph_cfg, task, workers, log=lambda _: None)
    return time.perf_counter() - t0, rows


def cpu_per_word(rows: list[dict]) -> float:
    """Process CPU microseconds per word inside the workers (steadier than wall time on a shared machine)."""
    return 1e6 * sum(r["cpu_seconds"] for r in rows) / max(sum(r["words"] for r in rows), 1)


def describe(rows: list[dict], seconds: float) -> str:
    """CPU per word inside the workers, and how evenly the workers finished (the straggler tail)."""
    busy: dict[int, float] = {}
    last: dict[int, float] = {}
    for r in rows:
        busy[r["pid"]] = busy.get(r["pid"], 0.0) + r["seconds"]
        last[r["pid"]] = max(last.get(r["pid"], 0.0), r["finished"])
    tail = max(last.values()) - min(last.values()) if len(last) > 1 else 0.0
    shares = "/".join(f"{b / seconds:.0%}" for b in busy.values())
    return (f"{cpu_per_word(rows):6.0f} CPU-us/word in workers, "
            f"busy {shares} of the wall time, last-shard tail {tail:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="brown-genre")
    ap.add_argument("--docs", type=int, default=None, help="use only the first N documents (default: all, ~1 M words)")
    ap.add_argument("--shard-words", type=int, default=20_000)
    ap.add_argument("--explain", action="store_true", help="also time the old bare loop (one stream, batch 256, cold)")
    ap.add_argument("--ceiling-shards", type=int, default=6,
                    help="shards parsed by the machine-ceiling check (1 vs 2 bare processes at once); 0 skips it")
    args = ap.parse_args()

    import pyarrow.parquet as pq
    import ray

    from pipeline import ingest
    from pipeline.graph_builder import load_nlp
    from pipeline.pos_lookup import replace_attribute_ruler
    from tgd.config import RunConfig

    work = Path(tempfile.mkdtemp(prefix="tgd-bench-"))
    cfg = RunConfig.model_validate({"run_dir": str(work), "data": {"source": args.corpus, "limit": args.docs,
                                                                   "shard_words": args.shard_words}})
    fast_cfg = cfg.graph.model_copy(update={"parser": "fast"})
    (work / "ingest").mkdir(parents=True)
    ingest.run(cfg, work / "ingest")
    shards = sorted((work / "ingest" / "documents").glob("part-*.parquet"))
    shard_texts = [pq.read_table(s, columns=["text"]).column("text").to_pylist() for s in shards]
    texts = [t for ts in shard_texts for t in ts]
    load0 = os.getloadavg()[0]

    nlp = load_nlp(cfg.graph.spacy_model)
    replace_attribute_ruler(nlp)  # the components the graph stage runs
    bare_parse(nlp, [texts[:2]], cfg.graph)  # warm-up: first-call allocations and lazy init, not timed
    if args.explain:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        w_old, s_old = old_bare_loop(nlp, texts, cfg.graph)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    words, s_bare, c_bare = bare_parse(nlp, shard_texts, cfg.graph)
    rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bare = words / s_bare
    print(f"documents: {len(texts)}, words: {words:,}, shards: {len(shards)}, components: {nlp.pipe_names}, "
          f"batch_size {cfg.graph.batch_size}, load average {load0:.1f} on {os.cpu_count()} CPUs")
    if args.explain:
        print(f"(a0) old bare loop: one nlp.pipe, batch 256, cold {w_old / s_old:10,.0f} words/s  "
              f"(peak RSS {rss1 / 1024:,.0f} MiB "
              f"after it, from {rss0 / 1024:,.0f})")
    print(f"(a) bare spaCy nlp.pipe per shard, 1 process {bare:10,.0f} words/s  "
          f"{1e6 * c_bare / words:6.0f} CPU-us/word (peak RSS {rss2 / 1024:,.0f} MiB)")
    del nlp

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rates, cpu = {}, {}
    for key, workers, gcfg, label in (("b", 1, cfg.graph, "graph stage via Ray Data, 1 worker"),
                                      ("c", 2, cfg.graph, "graph stage via Ray Data, 2 workers"),
                                      ("d", 1, fast_cfg, "fast graph stage (parser=fast), 1 worker")):
        seconds, rows = stage(shards, work / f"graphs-{key}", gcfg, cfg.data.task, workers)
        rates[key], cpu[key] = words / seconds, cpu_per_word(rows)
        print(f"({key}) {label:<40} {rates[key]:10,.0f} words/s  {describe(rows, seconds)}")
    ray.shutdown()
    ceiling = machine_ceiling(shard_texts[: args.ceiling_shards], cfg.graph) if args.ceiling_shards else None
    if ceiling:
        print(f"(e) ceiling: 1 vs 2 bare spaCy processes at once {ceiling[0]:10,.0f} vs {ceiling[1]:,.0f} words/s "
              f"= {ceiling[1] / ceiling[0]:.2f}x on this machine now ({args.ceiling_shards} shards)")
    load1 = os.getloadavg()[0]
    result = {"stage_over_bare": round(rates["b"] / bare, 3), "two_over_one_worker": round(rates["c"] / rates["b"], 3),
              "fast_over_spacy": round(rates["d"] / rates["b"], 3), "words": words, "documents": len(texts),
              "bare_words_per_s": round(bare), "stage_1_words_per_s": round(rates["b"]),
              "stage_2_words_per_s": round(rates["c"]), "fast_1_words_per_s": round(rates["d"]),
              "cpu_stage_over_bare": round(1e6 * c_bare / words / cpu["b"], 3),
              "cpu_fast_over_spacy": round(cpu["b"] / cpu["d"], 3),
              "machine_two_over_one": round(ceiling[1] / ceiling[0], 3) if ceiling else None,
              "load_average": [round(load0, 1), round(load1, 1)]}
    print(f"ratio (b)/(a) graph stage vs bare parse, 1 worker: {result['stage_over_bare']:.2f}  (target >= 0.85)")
    print(f"speedup (c)/(b) 2 workers vs 1:                    {result['two_over_one_worker']:.2f}x (target >= 1.8x)")
    print(f"speedup (d)/(b) fast graphs vs spaCy graphs:       {result['fast_over_spacy']:.2f}x")
    print(f"on disk: {sum(f.stat().st_size for f in (work / 'graphs-b').glob('part-*.parquet')) / len(texts):,.0f} "
          f"bytes/document "
          f"(fast: {sum(f.stat().st_size for f in (work / 'graphs-d').glob('part-*.parquet')) / len(texts):,.0f}); "
          f"load average {load0:.1f} before, {load1:.1f} after")
    shutil.rmtree(work)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
