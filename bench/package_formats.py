"""Accuracy, latency and size of the exported package formats against the PyTorch student (not a test).

On the test split of a finished run (``--set run_dir=...``): the distill stage's student in
PyTorch, and `tgd export` packages in TorchScript and ONNX, each in float32 and dynamic int8.
Per row: test accuracy, agreement with the PyTorch student's labels, largest |logit| difference,
student milliseconds per document at batch 64 on graphs built beforehand (encoding + model, one
thread, best of ``--repeat``), and package size on disk. Graphs are built once (spaCy is the same
for every row). Prints a Markdown table and, last, one JSON line.

    .venv/bin/python bench/package_formats.py --set run_dir=runs/main16
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    import torch

    from serving.export import export, load_package
    from serving.predictor import Predictor
    from tgd.config import load_config
    from tgd.schema import DOCUMENTS, read_table, stage_dir
    from trainers.student.checkpoint import load_student

    torch.set_num_threads(1)
    cfg = load_config(args.config, args.overrides)
    docs = [r for r in read_table(stage_dir(cfg, "ingest") / "documents", DOCUMENTS).to_pylist()
            if r["split"] == "test"]
    texts = [r["text"] for r in docs]
    student, enc, _ = load_student(stage_dir(cfg, "distill") / "student.pt")
    gold = torch.tensor([enc.label_index(r["label"]) for r in docs])
    work = Path(tempfile.mkdtemp(prefix="tgd-formats-"))
    rows = [("pytorch", None, None)]
    for fmt in ("torchscript", "onnx"):
        for q in (None, "int8"):
            pkg = work / f"{fmt}-{q or 'fp32'}"
            meta = export(cfg, fmt, pkg, q, log=lambda m: None)
            rows.append((f"{fmt} {q or 'fp32'}", pkg, sum(meta["bytes"].values())))
    first = load_package(rows[1][1], threads=1)
    graphs = [g for i in range(0, len(texts), args.batch_size)
              for g in first.builder.build(texts[i:i + args.batch_size])]
    results, ref = [], None
    for name, pkg, size in rows:
        p = Predictor(student, enc, first.builder, node_budget=cfg.distill.node_budget) if pkg is None else \
            load_package(pkg, threads=1)
        run = lambda: torch.stack([x for i in range(0, len(graphs), args.batch_size)  # noqa: E731
                                   for x in p._graph_logits(graphs[i:i + args.batch_size])])
        logits = run()
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter(); run(); best = min(best, time.perf_counter() - t0)
        ref = logits if ref is None else ref
        pred = logits.argmax(-1)
        results.append({"format": name, "accuracy": round(float((pred == gold).float().mean()), 4),
                         "agreement_with_pytorch": round(float((pred == ref.argmax(-1)).float().mean()), 4),
                         "max_abs_logit_diff": round(float((logits - ref).abs().max()), 6),
                         "ms_per_doc_b64": round(1000 * best / len(graphs), 3), "package_bytes": size})
    print(f"{len(texts):,} test documents of {cfg.run_dir}; student ms/doc at batch {args.batch_size}, one thread, "
          "graphs built beforehand\n")
    print("| format | accuracy | agreement with PyTorch | max abs logit diff | ms/doc b64 | package size |")
    print("|---|---|---|---|---|---|")
    for r in results:
        size = f"{r['package_bytes'] / 2**20:.2f} MiB" if r["package_bytes"] else "(checkpoint)"
        print(f"| {r['format']} | {r['accuracy']:.4f} | {r['agreement_with_pytorch']:.4f} "
              f"| {r['max_abs_logit_diff']:.2g} "
              f"| {r['ms_per_doc_b64']:.3f} | {size} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
