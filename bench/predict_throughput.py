"""Prediction throughput on raw text, teacher vs the exported student, measured side by side (not a test).

On the same raw test documents of a finished run (``--set run_dir=...``; the test split of its
ingest stage, repeated ``--rounds`` times so that fixed costs weigh little), in one run:
(a) the teacher's batch inference: its fine-tuned checkpoint, tokenise + windows + forward, batches
    of ``--batch-size`` texts, this process's torch threads;
(b) `tgd predict PACKAGE --input docs.jsonl` in one process (a subprocess of the real console
    script): docs/s inside it (as it reports) and wall clock with start-up; start-up alone is
    timed on empty input;
(c) the Ray Data path (`--ray`) with 1 and with 2 workers on the same documents as Parquet files
    (one local Ray, started here, sized workers + 1 CPU);
and how (b)'s time splits into graph construction (spaCy + graph assembly) and the rest (encoding,
student, records), measured in this process with the same package.

Targets (issue "Ship the student"): (b)/(a) >= 3, (c2)/(c1) >= 1.7. Prints a table and, last, one
JSON line.

    .venv/bin/python bench/predict_throughput.py --set run_dir=runs/main16
    .venv/bin/python bench/predict_throughput.py --set run_dir=runs/main16 --format torchscript --rounds 1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def test_texts(cfg) -> list[str]:
    from tgd.schema import DOCUMENTS, read_table, stage_dir

    rows = read_table(stage_dir(cfg, "ingest") / "documents", DOCUMENTS).select(["split", "text"]).to_pylist()
    return [r["text"] for r in rows if r["split"] == "test"]


def teacher_docs_per_s(cfg, texts: list[str], batch_size: int) -> float:
    """(a): tokenise + windows + forward + mean over windows, as evaluate's teacher row does."""
    import torch

    from trainers.teacher.inference import pad_batch
    from trainers.teacher.model import load_model, load_tokenizer, teacher_model_dir
    from trainers.teacher.windows import Windower

    t = cfg.teacher
    path = teacher_model_dir(cfg)
    labels = json.loads((Path(cfg.run_dir) / "ingest" / "manifest.json").read_text()).get("labels") or ["0", "1"]
    tok, model = load_tokenizer(path), load_model(path, t.kind, "sequence", labels).eval()
    win = Windower(tok, t.max_length, t.stride, t.max_windows)

    @torch.no_grad()
    def predict(chunk):
        rows = [win.wrap(e.ids[a:b]) for e in win.encode(chunk) for a, b in e.windows]
        ids, mask = pad_batch(rows, tok.pad_token_id)
        return model(input_ids=ids, attention_mask=mask).logits

    predict(texts[:batch_size])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        predict(texts[i:i + batch_size])
    return len(texts) / (time.perf_counter() - t0)


def cli_predict(pkg: Path, src: Path, batch_size: int) -> tuple[float, float]:
    """(b): (docs/s reported by `tgd predict`, wall-clock seconds of the whole command)."""
    tgd = str(Path(sys.executable).parent / "tgd")
    t0 = time.perf_counter()
    done = subprocess.run([tgd, "predict", str(pkg), "--input", str(src), "--output", os.devnull,
                           "--batch-size", str(batch_size)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    line = [x for x in done.stderr.splitlines() if x.startswith("[predict]")][-1]
    return float(line.split(",")[-1].split()[0].replace(",", "")), wall


def startup_seconds(pkg: Path) -> float:
    tgd = str(Path(sys.executable).parent / "tgd")
    t0 = time.perf_counter()
    subprocess.run([tgd, "predict", str(pkg), "--input", "-"], input="", capture_output=True, text=True, check=True)
    return time.perf_counter() - t0


def split_graph_vs_model(pkg: Path, texts: list[str], batch_size: int) -> tuple[float, float]:
    """Seconds of graph construction and of everything else over ``texts`` (same package)."""
    from serving.export import load_package

    predictor = load_package(pkg)
    predictor.predict_records([{"text": t} for t in texts[:batch_size]])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        predictor.builder.build(texts[i:i + batch_size])
    graph = time.perf_counter() - t0
    t0 = time.perf_counter()
    predictor.predict_records([{"text": t} for t in texts], batch_size=batch_size)
    total = time.perf_counter() - t0
    return graph, max(total - graph, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--format", default="onnx", choices=("onnx", "torchscript"))
    ap.add_argument("--rounds", type=int, default=2, help="times the test split is repeated (fixed costs weigh less)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--files", type=int, default=8, help="Parquet input files for the Ray path")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from serving.batch import predict_ray
    from serving.export import export
    from tgd.config import load_config

    cfg = load_config(args.config, args.overrides)
    texts = test_texts(cfg) * args.rounds
    work = Path(tempfile.mkdtemp(prefix="tgd-predict-bench-"))
    pkg = work / "pkg"
    meta = export(cfg, args.format, pkg, log=lambda m: None)
    src = work / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    pin = work / "parquet"
    pin.mkdir()
    per = -(-len(texts) // args.files)
    for k in range(args.files):
        pq.write_table(pa.table({"id": list(range(k * per, min((k + 1) * per, len(texts)))),
                                 "text": texts[k * per:(k + 1) * per]}), pin / f"part-{k:03d}.parquet")
    print(f"{len(texts):,} documents ({args.rounds} x the test split of {cfg.run_dir}), {args.format} package "
          f"{sum(meta['bytes'].values()) / 2**20:.2f} MiB", flush=True)

    a = teacher_docs_per_s(cfg, texts, args.batch_size)
    print(f"(a)  teacher batch inference                {a:9.1f} docs/s", flush=True)
    start = startup_seconds(pkg)
    b, b_wall = cli_predict(pkg, src, args.batch_size)
    print(f"(b)  tgd predict, one process               {b:9.1f} docs/s  (wall with start-up "
          f"{len(texts) / b_wall:.1f} docs/s; start-up alone {start:.2f} s)", flush=True)
    graph_s, model_s = split_graph_vs_model(pkg, texts, args.batch_size)
    share = graph_s / (graph_s + model_s)
    print(f"     of which graph construction {100 * share:.0f}% ({1000 * graph_s / len(texts):.2f} ms/doc), "
          f"encoding + student + records {100 * (1 - share):.0f}% ({1000 * model_s / len(texts):.2f} ms/doc)",
          flush=True)
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    c = {}
    for workers in (1, 2):
        r = predict_ray(pkg, str(pin), str(work / f"out-{workers}"), workers, args.batch_size, log=lambda m: None)
        c[workers] = r["docs_per_s"]
        print(f"(c{workers}) Ray Data, {workers} worker{'s' if workers > 1 else ' '}                "
              f"{c[workers]:9.1f} docs/s "
              f"({r['seconds']:.1f} s including actor start-up; first output at {r['first_output_s'] or 0:.1f} s)",
              flush=True)
    ray.shutdown()
    result = {"docs": len(texts), "format": args.format, "teacher_docs_per_s": round(a, 1),
              "predict_docs_per_s": round(b, 1), "predict_wall_docs_per_s": round(len(texts) / b_wall, 1),
              "startup_s": round(start, 2), "graph_share": round(share, 3), "ray_1_docs_per_s": c[1],
              "ray_2_docs_per_s": c[2], "b_over_a": round(b / a, 2), "c2_over_c1": round(c[2] / c[1], 2),
              "package_bytes": sum(meta["bytes"].values())}
    print(f"(b)/(a) {b / a:.2f} (target >= 3: {'met' if b / a >= 3 else 'missed'})   "
          f"(c2)/(c1) {c[2] / c[1]:.2f} (target >= 1.7: {'met' if c[2] / c[1] >= 1.7 else 'missed'})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
