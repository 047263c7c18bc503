"""Graph-stage throughput, measured side by side in one run (not a test).

(a) bare spaCy ``nlp.pipe`` with the same components, one process, one thread;
(b) the full graph stage through Ray Data (parse + graph construction + Parquet) with 1 worker;
(c) the same with 2 workers.
Prints words/second, (b)/(a) (target >= 0.85) and (c)/(b) (target >= 1.7 on 2 cores).

    .venv/bin/python bench/graph_throughput.py            # Brown corpus, ~1.16 M words
    .venv/bin/python bench/graph_throughput.py --docs 100 # quicker, less precise
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # (a) must be a one-core figure, like one Ray actor
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="brown-genre")
    ap.add_argument("--docs", type=int, default=None, help="use only the first N documents")
    ap.add_argument("--shard-words", type=int, default=20_000)
    args = ap.parse_args()

    import pyarrow.parquet as pq
    import ray

    from pipeline import ingest
    from pipeline.graph_builder import chunk_text, load_nlp
    from pipeline.graphs import build_graphs
    from tgd.config import RunConfig

    work = Path(tempfile.mkdtemp(prefix="tgd-bench-"))
    cfg = RunConfig.model_validate({"run_dir": str(work), "data": {"source": args.corpus, "limit": args.docs,
                                                                   "shard_words": args.shard_words}})
    (work / "ingest").mkdir(parents=True)
    ingest.run(cfg, work / "ingest")
    shards = sorted((work / "ingest" / "documents").glob("part-*.parquet"))
    texts = [t for s in shards for t in pq.read_table(s, columns=["text"]).column("text").to_pylist()]

    nlp = load_nlp(cfg.graph.spacy_model)
    t0 = time.perf_counter()
    words = 0
    chunks = (c for t in texts for _, c in chunk_text(t, cfg.graph.chunk_chars))
    for doc in nlp.pipe(chunks, batch_size=cfg.graph.batch_size):
        words += sum(not t.is_space for t in doc)
    bare = words / (time.perf_counter() - t0)
    print(f"documents: {len(texts)}, words: {words:,}, shards: {len(shards)}, components: {nlp.pipe_names}")
    print(f"(a) bare spaCy nlp.pipe, 1 process     {bare:10,.0f} words/s")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rates = {}
    for workers in (1, 2):
        out = work / f"graphs-{workers}"
        out.mkdir()
        t0 = time.perf_counter()
        build_graphs(shards, out, cfg.graph, cfg.data.task, workers, log=lambda _: None)
        rates[workers] = words / (time.perf_counter() - t0)
        label = f"({'b' if workers == 1 else 'c'}) graph stage via Ray Data, {workers} worker{'s' if workers > 1 else ''}"
        print(f"{label:<38} {rates[workers]:10,.0f} words/s")
    ray.shutdown()
    print(f"ratio (b)/(a) graph stage vs bare parse, 1 worker: {rates[1] / bare:.2f}  (target >= 0.85)")
    print(f"speedup (c)/(b) 2 workers vs 1:                    {rates[2] / rates[1]:.2f}x (target >= 1.7x)")
    print(f"on disk: {sum(f.stat().st_size for f in (work / 'graphs-1').glob('part-*.parquet')) / len(texts):,.0f} bytes/document")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
