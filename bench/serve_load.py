"""Load test of `tgd serve` on loopback: the student, the teacher served the same way, and (when the
package carries a teacher) the cascade, side by side in one run (not a test).

Servers (each its own process, Ray and Ray Serve application, the same ``serving.service`` deployment:
FastAPI ingress, ``@serve.batch`` over rows, ``--replicas`` replicas of ``--cpus-per-replica`` CPUs):
(s) student: `tgd serve PACKAGE` (the real console command);
(t) teacher: the teacher checkpoint behind the same deployment (``serving.teacher.TeacherSpec``:
    tokenise + windows + forward + mean over windows, evaluate's teacher row), started by this
    script re-running itself with ``--serve-teacher``;
(c) cascade: `tgd serve PACKAGE --defer-below P`, only for a package exported ``--with-teacher``;
    P: ``--defer-below``, else the threshold `tgd evaluate` chose (the package carries it).
All servers are up at once and the load levels interleave (s, t, c at concurrency 1, then at 8,
then at 32), so a change in the machine's load hits them alike.

Load: at each concurrency C, C clients on keep-alive connections (aiohttp, this process) send
``--requests`` POST /predict requests of ``--rows-per-request`` documents each, cycling through the
texts, stopping early after ``--max-seconds``; every response must be a 200 with one record per row.
Reported per server and level: rows/s, p50 / p99 latency of a request, and the ratios student /
teacher (target of issue 30: rows/s at concurrency 32 >= 5x the teacher's) and, for the cascade,
the fraction of rows the teacher answered. The last printed line is one JSON object.

Texts and teacher: with ``--set run_dir=RUN`` (a finished run, ``--config`` default
configs/default.yaml), the run's test-split documents and its fine-tuned teacher (with the run's
``teacher.*`` windows); the package is ``--package`` or an ONNX export of the run's student made
here (with its teacher, ``--with-teacher``, when the run has a fine-tuned one). With only
``--package`` (e.g. one a test fixture built), synthetic review sentences
(``tests.fixtures.serving_data.corpus``) and, unless ``--teacher DIR`` is given, the packaged
MiniLM base checkpoint with a fresh head over the package's labels (latency does not depend on
the weights).

    .venv/bin/python bench/serve_load.py --set run_dir=runs/main25                 # a run (+ its cascade)
    .venv/bin/python bench/serve_load.py --set run_dir=runs/main25 --package model/ --defer-below 0.8
    .venv/bin/python bench/serve_load.py --package /tmp/pytest-of-root/pytest-1/serving-run/pkg-torchscript \\
        --requests 200 --max-seconds 30                                             # a test fixture's package
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LEVELS = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A serving process on a free loopback port, waited for until /healthz answers."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path):
        self.name, self.port = name, free_port()
        self.log = log_dir / f"{name}.err"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), cwd=ROOT, env=env)
        self.t0 = time.time()

    def wait(self, timeout: float = 600) -> float:
        import urllib.request

        while time.time() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} server exited with {self.proc.returncode}:\n"
                                 f"{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                    if r.status == 200:
                        return time.time() - self.t0
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"{self.name} server not healthy after {timeout:.0f} s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


async def load(port: int, bodies: list[bytes], rows_per_request: int, concurrency: int, requests: int,
               max_seconds: float) -> dict:
    """``requests`` POSTs with ``concurrency`` clients (stopping after ``max_seconds``) -> rows/s and latency."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/predict"
    latencies: list[float] = []
    answered = {"rows": 0, "teacher": 0}
    counter = itertools.count()
    cycle = itertools.cycle(bodies)
    deadline = time.perf_counter() + max_seconds

    async def client(session):
        while next(counter) < requests and time.perf_counter() < deadline:
            body = next(cycle)
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                records = await r.json()
                if r.status != 200 or len(records) != rows_per_request:
                    raise SystemExit(f"bad answer {r.status}: {str(records)[:300]}")
            latencies.append(time.perf_counter() - t0)
            answered["rows"] += len(records)
            answered["teacher"] += sum(rec.get("answered_by") == "teacher" for rec in records)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies)

    def pct(q):
        return 1000 * lat[min(len(lat) - 1, int(q * len(lat)))]

    return {"requests": len(lat), "rows": answered["rows"], "seconds": round(wall, 2),
            "rows_per_s": round(answered["rows"] / wall, 1), "p50_ms": round(pct(0.50), 1),
            "p99_ms": round(pct(0.99), 1), "teacher_share": round(answered["teacher"] / max(answered["rows"], 1), 3)}


def serve_teacher(args) -> int:
    """``--serve-teacher DIR``: the teacher on the same Serve deployment as `tgd serve` (internal)."""
    from serving.service import ServeOptions, serve_forever
    from serving.teacher import TeacherSpec

    spec = TeacherSpec(args.serve_teacher, tuple(json.loads(args.labels)) if args.labels else None,
                       args.max_length, args.stride, args.max_windows)
    opts = ServeOptions(port=args.port, replicas=args.replicas, cpus_per_replica=args.cpus_per_replica,
                        max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_wait_timeout_s)
    return serve_forever(spec, opts, log=lambda m: print(m, file=sys.stderr, flush=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--package", help="student package (default: an ONNX export of the run's student)")
    ap.add_argument("--teacher", help="teacher checkpoint (default: the run's fine-tuned one, else the base MiniLM)")
    ap.add_argument("--defer-below", type=float, help="also load-test the cascade at this threshold "
                    "(a package exported --with-teacher)")
    ap.add_argument("--requests", type=int, default=300, help="requests per server and concurrency level")
    ap.add_argument("--max-seconds", type=float, default=60, help="cap per server and concurrency level")
    ap.add_argument("--rows-per-request", type=int, default=1)
    ap.add_argument("--texts", type=int, default=1000, help="distinct texts cycled through")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--cpus-per-replica", type=float, default=1.0)
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--batch-wait-timeout-s", type=float, default=0.005)
    # internal: this script as the teacher's server
    ap.add_argument("--serve-teacher", help=argparse.SUPPRESS)
    ap.add_argument("--labels", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--max-length", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--stride", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--max-windows", type=int, default=32, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_teacher:
        sys.exit(serve_teacher(args))

    from tgd.config import load_config

    cfg = load_config(args.config, args.overrides)
    run = Path(cfg.run_dir)
    has_run = (run / "ingest" / "manifest.json").is_file()
    work = Path(tempfile.mkdtemp(prefix="tgd-serve-bench-"))
    if args.package:
        pkg = Path(args.package)
    elif has_run:  # with the run's teacher where it has one, so the cascade runs at evaluate's threshold
        from serving.export import PackageError, export

        pkg = work / "pkg"
        try:
            export(cfg, "onnx", pkg, log=lambda m: None, with_teacher=True)
        except PackageError:
            export(cfg, "onnx", pkg, log=lambda m: None)
    else:
        raise SystemExit("give --package, or --set run_dir=RUN of a finished run")
    meta = json.loads((pkg / "package.json").read_text())
    if meta["task"] != "classification":
        raise SystemExit(f"the teacher comparison serves classification packages; this one is {meta['task']!r}")
    if has_run:
        from tgd.schema import DOCUMENTS, read_table, stage_dir

        docs = read_table(stage_dir(cfg, "ingest") / "documents", DOCUMENTS).select(["split", "text"]).to_pylist()
        texts = [r["text"] for r in docs if r["split"] == "test"][: args.texts]
        source = f"{len(texts):,} test documents of {run}"
    else:
        from tests.fixtures.serving_data import corpus

        texts = [t for t, _ in corpus(args.texts, seed=7)]
        source = f"{len(texts):,} synthetic review sentences"
    from trainers.teacher.model import finetuned_model_dir, resolve_model_path

    teacher = Path(args.teacher) if args.teacher else (finetuned_model_dir(cfg) if has_run else None)
    teacher = teacher or resolve_model_path(cfg.teacher.model)
    t = cfg.teacher
    common = ["--replicas", str(args.replicas), "--cpus-per-replica", str(args.cpus_per_replica),
              "--max-batch-size", str(args.max_batch_size), "--batch-wait-timeout-s", str(args.batch_wait_timeout_s)]
    tgd = [str(Path(sys.executable).parent / "tgd"), "serve", str(pkg)]
    carried = (meta.get("teacher_package") or {}).get("defer_below")  # evaluate's threshold, if any
    defer_below = args.defer_below if args.defer_below is not None else carried
    student_only = ["--defer-below", "0"] if meta.get("teacher_package") else []  # no deferral by default
    specs = {"student": tgd + common + student_only,
             "teacher": [sys.executable, __file__, "--serve-teacher", str(teacher),
                         "--labels", json.dumps(meta["labels"]), "--max-length", str(t.max_length),
                         "--stride", str(t.stride), "--max-windows", str(t.max_windows)] + common}
    if defer_below is not None:
        specs["cascade"] = tgd + common + ["--defer-below", str(defer_below)]
    rpr = args.rows_per_request
    bodies = [json.dumps([{"id": k * rpr + j, "text": texts[(k * rpr + j) % len(texts)]} for j in range(rpr)]).encode()
              for k in range(max(1, len(texts) // rpr))]
    load0 = os.getloadavg()[0]
    print(f"{source}; package {pkg} ({meta['format']}); teacher {teacher}; {args.replicas} replica(s) x "
          f"{args.cpus_per_replica:g} CPU, batches of up to {args.max_batch_size} rows, wait "
          f"{args.batch_wait_timeout_s:g} s; {args.requests} requests x {rpr} row(s) per level (cap "
          f"{args.max_seconds:g} s); load average {load0:.1f} on {os.cpu_count()} CPUs", flush=True)
    servers = {}
    try:
        for name, cmd in specs.items():  # one after the other: start-ups do not compete for the CPUs
            servers[name] = Server(name, cmd, work)
            print(f"{name}: ready in {servers[name].wait():.1f} s on port {servers[name].port}", flush=True)
        for s in servers.values():  # warm-up: first batches, lazy initialisation
            asyncio.run(load(s.port, bodies, rpr, 4, 40, 60))
        results: dict[str, dict[int, dict]] = {name: {} for name in servers}
        for c in LEVELS:
            for name, s in servers.items():
                r = asyncio.run(load(s.port, bodies, rpr, c, args.requests, args.max_seconds))
                results[name][c] = r
                extra = f"  teacher answered {r['teacher_share']:.1%}" if name == "cascade" else ""
                print(f"{name:<8} concurrency {c:>2}: {r['rows_per_s']:8.1f} rows/s   p50 {r['p50_ms']:7.1f} ms   "
                      f"p99 {r['p99_ms']:7.1f} ms   ({r['requests']} requests in {r['seconds']:.1f} s){extra}",
                      flush=True)
    finally:
        codes = {name: s.stop() for name, s in servers.items()}
    load1 = os.getloadavg()[0]
    out: dict = {"texts": len(texts), "rows_per_request": rpr, "replicas": args.replicas,
                 "cpus_per_replica": args.cpus_per_replica, "max_batch_size": args.max_batch_size,
                 "batch_wait_timeout_s": args.batch_wait_timeout_s, "format": meta["format"],
                 "exit_codes": codes, "load_average": [round(load0, 1), round(load1, 1)]}
    for name, levels in results.items():
        for c, r in levels.items():
            for k in ("rows_per_s", "p50_ms", "p99_ms"):
                out[f"{name}_c{c}_{k}"] = r[k]
            if name == "cascade":
                out[f"cascade_c{c}_teacher_share"] = r["teacher_share"]
    for c in LEVELS:
        ratio = results["student"][c]["rows_per_s"] / results["teacher"][c]["rows_per_s"]
        out[f"student_over_teacher_c{c}"] = round(ratio, 2)
        line = f"student / teacher rows/s at concurrency {c:>2}: {ratio:5.2f}x"
        if "cascade" in results:
            cr = results["cascade"][c]["rows_per_s"] / results["teacher"][c]["rows_per_s"]
            out[f"cascade_over_teacher_c{c}"] = round(cr, 2)
            line += f"   cascade / teacher {cr:5.2f}x"
        if c == 32:
            line += f"   (target student >= 5x: {'met' if ratio >= 5 else 'missed'})"
        print(line)
    if defer_below is not None:
        out["defer_below"] = defer_below
    print(f"load average {load0:.1f} before, {load1:.1f} after; server exit codes {codes}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
