"""Teacher-output throughput and memory, measured side by side in one run (not a test).

Same documents, same windows, same micro-batch size:
(a) plain Hugging Face batched inference in one process with all the CPU threads the stage gets
    (a Ray task, so its peak RSS is measured the same way as the workers'); (a1) the same with the
    threads of ONE worker, the per-worker baseline of the scaling figure;
(b) the ``teacher-logits`` stage with ``teacher.parallel=replicate`` on 2 Ray Train workers (each
    holds the whole model and takes half the documents);
(c) the stage with ``teacher.parallel=zero3`` on 2 workers (each holds half of the parameters,
    every layer is all-gathered over gloo in every forward).
Prints documents/second end to end, inside the workers (without Ray Train start-up) and from each
worker's first forward on (steady state: without model load and Ray Data start-up), the ratios,
Parquet bytes per document, peak RSS per process and the parameter bytes each rank holds. The last
line is one JSON object with the ratios (``replicate_over_plain``, ``zero3_over_plain``, ...).

    .venv/bin/python bench/teacher_throughput.py                  # all 12,752 rt-sentiment documents
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
    from trainers.teacher.deepspeed_env import peak_memory_mb
    from trainers.teacher.inference import TeacherForward
    from trainers.teacher.model import load_model, load_tokenizer
    from trainers.teacher.windows import Windower

    torch.set_num_threads(threads)
    tcfg = TeacherConfig.model_validate(teacher)
    tok = load_tokenizer(Path(model_path))
    model = load_model(Path(model_path), "encoder", "sequence", labels).eval()
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
    ap.add_argument("--docs", type=int, default=None, help="documents to run through the teacher")
    ap.add_argument("--model", default="all-minilm-l6-v2",
                    help="teacher checkpoint directory (default: packaged MiniLM)")
    ap.add_argument("--cpus", type=int, default=2, help="total CPU threads given to each variant")
    args = ap.parse_args()

    import pyarrow.parquet as pq
    import ray

    from pipeline import graphs, ingest
    from tgd.config import RunConfig
    from trainers.teacher.model import resolve_model_path, teacher_id
    from trainers.teacher.outputs import run_workers

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

    task = ray.remote(num_cpus=args.cpus)(plain_inference)
    plain = ray.get(task.remote(str(model_path), labels, texts, teacher, args.cpus))
    plain1 = ray.get(task.remote(str(model_path), labels, texts, teacher, max(args.cpus // 2, 1)))
    for tag, p in (("(a) ", plain), ("(a1)", plain1)):
        threads = args.cpus if p is plain else max(args.cpus // 2, 1)
        print(f"{tag} plain HF, 1 process, {threads} thread{'s' if threads > 1 else ''}   "
              f"{p['docs_per_s']:8.1f} docs/s   "
              f"peak RSS {p['peak_rss_mb']:7.0f} MiB   parameters {p['param_mb']:.1f} MiB   ({p['windows']} windows)")
    rates, inner, steady = {}, {}, {}
    for tag, mode in (("(b) ", "replicate"), ("(c) ", "zero3")):
        out = work / f"teacher-{mode}"
        out.mkdir()
        c = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"num_workers": 2,
                                                                     "cpus_per_worker": args.cpus / 2}),
                                   "teacher": cfg.teacher.model_copy(update={"parallel": mode})})
        t0 = time.perf_counter()
        launched = run_workers(c, out, model_path, labels, teacher_id(cfg.teacher.model, model_path))
        rates[mode] = len(texts) / (time.perf_counter() - t0)
        inner[mode] = len(texts) / max(w["seconds"] for w in launched["workers"])
        steady[mode] = sum(w["rows"] / max(w["forward_seconds"], 1e-9) for w in launched["workers"])
        size = sum(f.stat().st_size for f in out.glob("part-*.parquet")) / len(texts)
        print(f"{tag} {mode} on Ray Train, 2 workers {rates[mode]:8.1f} docs/s   "
              f"(inside the workers, without Ray Train "
              f"start-up: {inner[mode]:.1f} docs/s; steady state {steady[mode]:.1f} docs/s)   "
              f"{size:,.0f} Parquet bytes/doc")
        for w in launched["workers"]:
            print(f"      rank {w['rank']}: {w['rows']} docs, peak RSS {w['peak_rss_mb']:.0f} MiB, "
                  f"parameters held {w['param_mb_held']:.1f} MiB")
    ray.shutdown()
    a, a1 = plain["docs_per_s"], plain1["docs_per_s"]
    ratios = {"replicate_over_plain": rates["replicate"] / a, "zero3_over_plain": rates["zero3"] / a,
              "replicate_inside_over_plain": inner["replicate"] / a, "zero3_inside_over_plain": inner["zero3"] / a,
              "replicate_over_plain_one_worker_threads": rates["replicate"] / a1,
              "replicate_over_zero3": rates["replicate"] / rates["zero3"],
              "replicate_steady_over_plain": steady["replicate"] / a, "zero3_steady_over_plain": steady["zero3"] / a,
              "replicate_steady_over_plain_one_worker_threads": steady["replicate"] / a1}
    print(f"ratio (b)/(a)  replicate 2 workers vs plain, same total threads:   {ratios['replicate_over_plain']:.2f} "
          f"(inside the workers {ratios['replicate_inside_over_plain']:.2f})")
    print(f"ratio (c)/(a)  zero3 2 workers vs plain, same total threads:       {ratios['zero3_over_plain']:.2f} "
          f"(inside the workers {ratios['zero3_inside_over_plain']:.2f})")
    print(f"ratio (b)/(a1) replicate 2 workers vs plain with one worker's threads: "
          f"{ratios['replicate_over_plain_one_worker_threads']:.2f} (steady state "
          f"{ratios['replicate_steady_over_plain_one_worker_threads']:.2f})")
    print(f"steady state (from each worker's first forward): "
          f"replicate / plain {ratios['replicate_steady_over_plain']:.2f}, "
          f"zero3 / plain {ratios['zero3_steady_over_plain']:.2f}")
    print(json.dumps({"docs": len(texts), "plain_docs_per_s": round(a, 1),
                      "plain_one_worker_threads_docs_per_s": round(a1, 1),
                      "replicate_docs_per_s": round(rates["replicate"], 1),
                      "zero3_docs_per_s": round(rates["zero3"], 1),
                      **{k: round(v, 3) for k, v in ratios.items()}}))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
