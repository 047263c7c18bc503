"""Teacher-output throughput and memory, measured side by side in one run (not a test).

Same documents, same windows, same micro-batch size, same total CPU threads:
(a) plain Hugging Face batched inference in one process (a Ray task, so its peak RSS is measured the
    same way as the workers');
(b) the ``teacher-logits`` stage: DeepSpeed ZeRO-3 on Ray Train with 1 worker;
(c) the same with 2 workers (each holds half of the parameters).
Prints documents/second, the ratios (b)/(a) and (c)/(a), Parquet bytes per document, peak RSS per
process and the parameter bytes each ZeRO-3 rank holds. On CPU the sharded path is expected to be
slower (every layer's parameters are all-gathered over gloo at every forward); sharding is there
for memory, so a teacher larger than one device fits.

    .venv/bin/python bench/teacher_throughput.py                  # 512 rt-sentiment documents
    .venv/bin/python bench/teacher_throughput.py --corpus brown-genre --docs 40
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def plain_inference(model_path: str, labels: list[str], texts: list[str], teacher: dict, threads: int) -> dict:
    """Plain HF model, one process: the same windows and micro-batches as the stage."""
    import torch

    from tgd.config import TeacherConfig
    from trainers.deepspeed_env import peak_memory_mb
    from trainers.teacher_model import TeacherForward, Windower, load_model, load_tokenizer

    torch.set_num_threads(threads)
    tcfg = TeacherConfig.model_validate(teacher)
    tok = load_tokenizer(Path(model_path))
    model = load_model(Path(model_path), "encoder", "classification", labels).eval()
    win = Windower(tok, tcfg.max_length, tcfg.stride, tcfg.max_windows)
    fwd = TeacherForward(model, "encoder", "classification", tok.pad_token_id, "cpu")
    t0 = time.perf_counter()
    encs = win.encode(texts)
    jobs = sorted(((d, a, b) for d, e in enumerate(encs) for a, b in e.windows), key=lambda j: j[2] - j[1])
    for i in range(0, len(jobs), tcfg.eval_batch_size):
        fwd([win.wrap(encs[d].ids[a:b]) for d, a, b in jobs[i:i + tcfg.eval_batch_size]])
    seconds = time.perf_counter() - t0
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"docs_per_s": len(texts) / seconds, "windows": len(jobs), "peak_rss_mb": peak_memory_mb(),
            "param_mb": params / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="rt-sentiment")
    ap.add_argument("--docs", type=int, default=512, help="documents to run through the teacher")
    ap.add_argument("--model", default="all-minilm-l6-v2", help="teacher checkpoint directory (default: packaged MiniLM)")
    ap.add_argument("--cpus", type=int, default=2, help="total CPU threads given to each variant")
    args = ap.parse_args()

    import pyarrow.parquet as pq
    import ray

    from pipeline import graphs, ingest
    from tgd.config import RunConfig
    from trainers.teacher_logits import run_sharded
    from trainers.teacher_model import resolve_model_path, teacher_id

    work = Path(tempfile.mkdtemp(prefix="tgd-bench-teacher-"))
    cfg = RunConfig.model_validate({"run_dir": str(work), "data": {"source": args.corpus, "limit": args.docs},
                                    "teacher": {"model": args.model}, "ray": {"num_workers": 1}})
    model_path = resolve_model_path(cfg.teacher.model)
    # +1 logical CPU for the Ray Data read tasks that feed the workers (see cluster/ray_session.py)
    ray.init(num_cpus=args.cpus + 1, include_dashboard=True, log_to_driver=False)
    for name, mod in (("ingest", ingest), ("graphs", graphs)):
        (work / name).mkdir(parents=True)
        m = mod.run(cfg, work / name)
        (work / name / "manifest.json").write_text(json.dumps(m))
    labels = json.loads((work / "ingest" / "manifest.json").read_text())["labels"]
    texts = [t for f in sorted((work / "ingest" / "documents").glob("part-*.parquet"))
             for t in pq.read_table(f, columns=["text"]).column("text").to_pylist()]
    teacher = cfg.teacher.model_dump(mode="json")
    print(f"{len(texts)} {args.corpus} documents, teacher {model_path.name}, max_length {cfg.teacher.max_length}, "
          f"micro-batch {cfg.teacher.eval_batch_size}, {args.cpus} CPU threads per variant")

    plain = ray.get(ray.remote(num_cpus=args.cpus)(plain_inference).remote(str(model_path), labels, texts, teacher, args.cpus))
    print(f"(a) plain HF, 1 process             {plain['docs_per_s']:8.1f} docs/s   peak RSS {plain['peak_rss_mb']:7.0f} MiB"
          f"   parameters {plain['param_mb']:.1f} MiB   ({plain['windows']} windows)")
    rates = {}
    for workers in (1, 2):
        out = work / f"teacher-{workers}"
        out.mkdir()
        c = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"num_workers": workers,
                                                                      "cpus_per_worker": args.cpus / workers})})
        t0 = time.perf_counter()
        stats = run_sharded(c, out, model_path, labels, teacher_id(cfg.teacher.model, model_path))
        rates[workers] = len(texts) / (time.perf_counter() - t0)
        inner = len(texts) / max(w["seconds"] for w in stats)
        size = sum(f.stat().st_size for f in out.glob("part-*.parquet")) / len(texts)
        label = f"({'b' if workers == 1 else 'c'}) ZeRO-3 Ray Train, {workers} worker{'s' if workers > 1 else ''}"
        print(f"{label:<35} {rates[workers]:8.1f} docs/s   (inside the workers, without Ray Train start-up: "
              f"{inner:.1f} docs/s)   {size:,.0f} Parquet bytes/doc")
        for w in stats:
            print(f"      rank {w['rank']}: {w['rows']} docs, peak RSS {w['peak_rss_mb']:.0f} MiB, "
                  f"parameters held {w['param_mb_held']:.1f} MiB")
    ray.shutdown()
    print(f"ratio (b)/(a) ZeRO-3 1 worker vs plain:   {rates[1] / plain['docs_per_s']:.2f}")
    print(f"ratio (c)/(a) ZeRO-3 2 workers vs plain:  {rates[2] / plain['docs_per_s']:.2f}")
    print(f"speedup (c)/(b) 2 workers vs 1:           {rates[2] / rates[1]:.2f}x")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
