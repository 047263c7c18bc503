"""`tgd serve MODEL_DIR`: an exported student as an HTTP service on Ray Serve (FastAPI ingress).

Endpoints (JSON in, JSON out; every error is ``{"error": reason}``):

- ``POST /predict``: a JSON list of rows, each what one line of a JSONL file gives `tgd predict`
  (an object with the task's fields and optionally ``id``), answered by the list of their records in
  the same order: the records `tgd predict` writes for the same rows, error records included (a bad
  row gets its ``{"id": ..., "error": why}`` in place; the other rows are answered). A bad request
  gets a 4xx and no records: a body over ``max_body_bytes`` (413), more than ``max_rows`` rows
  (413), a body that is not JSON (400), JSON that is not a list (422).
- ``GET /healthz``: ``{"status": "ok", ...}`` once a replica has loaded (and verified) the package.
- ``GET /model``: the package's metadata (its package.json).

Each replica (``PredictService``) loads the package with ``serving.export.load_package``, which
verifies every checksum first, exactly as `tgd predict` does, and answers through the same
``Predictor``. Rows are batched across requests by ``@serve.batch``: every row of every request
goes into one queue, and up to ``max_batch_size`` rows (waiting at most ``batch_wait_timeout_s``
for more) are predicted in one batched call, in a worker thread so that the replica keeps reading
requests meanwhile. ``serve_forever`` runs the application in the foreground until SIGTERM or
SIGINT, then deletes it, shuts Serve down and disconnects from Ray.

What a replica serves is a ``spec`` with ``load(threads)`` -> an object with ``predict_records(rows,
batch_size)``, plus ``describe()`` and ``metadata()``: ``StudentSpec`` (a package; with
``defer_below`` the cascade of ``serving.cascade``, records carrying ``answered_by``) here; the
bench's teacher alone (``serving.teacher.TeacherSpec``) is served the same way with its own spec.
"""
# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations (``Request``)
# at run time, from the methods Serve re-wraps, and string annotations are not resolved there.
import asyncio
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.records import error_record
from serving.rows import EXTRA_COLUMNS, row_from_object
from tgd.errors import UserError

APP_NAME = "tgd"


class ServeError(UserError, RuntimeError):
    """The service cannot start: the port is taken, the package is refused, a replica failed."""


@dataclass(frozen=True)
class ServeOptions:
    """How the service runs (`tgd serve`'s flags). Batching and limits are per replica."""

    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    max_replicas: int | None = None  # > replicas: autoscale between the two on ongoing requests
    cpus_per_replica: float = 1.0
    max_batch_size: int = 64  # rows per batched prediction
    batch_wait_timeout_s: float = 0.005  # how long a batch waits for more rows once it has one
    max_rows: int = 1024  # rows per request
    max_body_bytes: int = 8 << 20
    max_ongoing_requests: int = 256  # per replica; Serve queues the rest at the proxy
    text_column: str = "text"
    id_column: str = "id"
    columns: dict[str, str] = field(default_factory=lambda: dict(EXTRA_COLUMNS))
    address: str | None = None  # a running Ray cluster; None: RAY_ADDRESS or a local Ray started here

    def check(self) -> None:
        for name in ("replicas", "max_batch_size", "max_rows", "max_body_bytes", "max_ongoing_requests"):
            if getattr(self, name) < 1:
                raise ServeError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ServeError(f"--max-replicas {self.max_replicas} is below --replicas {self.replicas}")
        if self.batch_wait_timeout_s < 0 or self.cpus_per_replica <= 0:
            raise ServeError("--batch-wait-timeout-s must be >= 0 and --cpus-per-replica > 0")
        if not 0 < self.port < 65536:
            raise ServeError(f"--port {self.port}: not a TCP port")


@dataclass(frozen=True)
class StudentSpec:
    """An exported student package (``tgd export``): what `tgd predict` loads, loaded the same way."""

    model_dir: str
    node_budget: int | None = -1  # -1: the package's value (the run's), None: always the whole graph
    max_chars: int | None = -1
    defer_below: float | None = None  # the cascade: the package's teacher answers rows less confident than this

    def verify(self) -> dict[str, Any]:
        from serving.export import verify

        if self.defer_below is not None and not 0.0 <= self.defer_below <= 1.0:
            raise ServeError(f"--defer-below {self.defer_below}: a confidence threshold between 0 and 1")
        meta = verify(Path(self.model_dir))
        if self.defer_below is not None and not meta.get("teacher_package"):
            raise ServeError(f"--defer-below: {self.model_dir} carries no teacher; export it with `tgd export "
                             "CONFIG ... --with-teacher`")
        return meta

    def load(self, threads: int):
        from serving.export import load_package

        return load_package(Path(self.model_dir), self.node_budget, self.max_chars, threads=threads,
                            defer_below=self.defer_below)

    def metadata(self) -> dict[str, Any]:
        return json.loads((Path(self.model_dir) / "package.json").read_text())

    def describe(self) -> str:
        carried = (self.metadata().get("teacher_package") or {}).get("defer_below")  # evaluate's threshold
        p = self.defer_below if self.defer_below is not None else carried
        if p is None:
            return f"student package {self.model_dir}"
        return f"cascade of package {self.model_dir} (teacher below student confidence {p:g})"


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


api = FastAPI(title="textgraph-distill", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:  # 404, 405: JSON too
    return _error(exc.status_code, str(exc.detail))


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error(422, str(exc))


async def read_rows(request: Request, opts: ServeOptions) -> list[dict[str, Any]] | JSONResponse:
    """The request's rows, or the 4xx response that refuses it (before any row is predicted)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > opts.max_body_bytes:
        return _error(413, f"request body of {int(declared):,} bytes is over the limit of {opts.max_body_bytes:,} "
                           "(--max-body-bytes): send fewer rows per request")
    body = bytearray()
    async for chunk in request.stream():  # a chunked body has no length: count what arrives
        body += chunk
        if len(body) > opts.max_body_bytes:
            return _error(413, f"request body over the limit of {opts.max_body_bytes:,} bytes (--max-body-bytes): "
                               "send fewer rows per request")
    try:
        rows = json.loads(bytes(body))
    except ValueError as e:
        return _error(400, f"request body is not JSON ({e}): send a JSON list of rows")
    if not isinstance(rows, list):
        return _error(422, f"request body is a JSON {type(rows).__name__}, not a list of rows: send e.g. "
                           '[{"id": 1, "text": "..."}]')
    if len(rows) > opts.max_rows:
        return _error(413, f"{len(rows):,} rows in one request, the limit is {opts.max_rows:,} (--max-rows): "
                           "split the request")
    return [row_from_object(r, opts.text_column, opts.id_column, opts.columns) for r in rows]


@serve.deployment(name="predict")
@serve.ingress(api)
class PredictService:
    """One replica: the spec's predictor (package verified and loaded once), rows batched across requests."""

    def __init__(self, spec, opts: ServeOptions):
        import torch

        threads = max(1, int(opts.cpus_per_replica))
        torch.set_num_threads(threads)
        self.spec, self.opts = spec, opts
        self.predictor = spec.load(threads)  # a student package: every checksum verified first
        self.meta = spec.metadata()
        self.started = time.time()
        self.batch_rows.set_max_batch_size(opts.max_batch_size)
        self.batch_rows.set_batch_wait_timeout_s(opts.batch_wait_timeout_s)

    def check_health(self) -> None:  # Serve's periodic health check: the replica is alive and loaded
        if self.predictor is None:
            raise RuntimeError("no predictor loaded")

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "task": getattr(self.predictor, "task", None), "serving": self.spec.describe(),
                "uptime_s": round(time.time() - self.started, 1)}

    @api.get("/model")
    async def model(self) -> dict[str, Any]:
        return self.meta

    @api.post("/predict")
    async def predict(self, request: Request):
        rows = await read_rows(request, self.opts)
        if isinstance(rows, JSONResponse):
            return rows
        records = await asyncio.gather(*(self.batch_rows(row) for row in rows))
        return JSONResponse(list(records))

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def batch_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows of any number of requests -> their records, one batched prediction off the event loop."""
        return await asyncio.to_thread(self._records, rows)

    def _records(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            records = self.predictor.predict_records(rows, batch_size=self.opts.max_batch_size)
            if len(records) != len(rows):
                raise RuntimeError(f"{len(records)} records for {len(rows)} rows")
            return records
        except Exception as e:  # noqa: BLE001 - a failing batch is retried row by row: only its row fails
            if len(rows) > 1:
                return [r for row in rows for r in self._records([row])]
            keep = {"id": rows[0]["id"]} if isinstance(rows[0], dict) and rows[0].get("id") is not None else {}
            return [keep | error_record(f"prediction failed: {type(e).__name__}: {e}")]


def deployment_options(opts: ServeOptions) -> dict[str, Any]:
    """``PredictService.options(...)``: fixed replicas, or autoscaling between replicas and max_replicas."""
    out: dict[str, Any] = {"ray_actor_options": {"num_cpus": opts.cpus_per_replica},
                           "max_ongoing_requests": opts.max_ongoing_requests}
    if opts.max_replicas and opts.max_replicas > opts.replicas:
        out["autoscaling_config"] = {"min_replicas": opts.replicas, "max_replicas": opts.max_replicas,
                                     "initial_replicas": opts.replicas,
                                     "target_ongoing_requests": max(2, opts.max_batch_size // 2)}
    else:
        out["num_replicas"] = opts.replicas
    return out


def _check_port(host: str, port: int) -> None:
    """Refuse a taken port before Ray starts (Serve's proxy would otherwise retry it at length)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e}): choose another --port or "
                             "--host") from None


def _start_ray(opts: ServeOptions) -> bool:
    """Connect to ``opts.address`` / RAY_ADDRESS, or start a local Ray sized to the replicas (plus one
    CPU, as the other commands size theirs); -> whether this process started it."""
    import ray

    if ray.is_initialized():
        return False
    address = opts.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return False
    cpus = max(int(opts.cpus_per_replica * (opts.max_replicas or opts.replicas)) + 1, os.cpu_count() or 1)
    try:
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=True)
    except Exception as e:  # noqa: BLE001 - e.g. the raylet's 30 s registration timeout on an overloaded machine
        if ray.is_initialized():
            ray.shutdown()
        raise ServeError(f"a local Ray did not start ({str(e).splitlines()[0] if str(e) else type(e).__name__}): "
                         "re-run when the machine is less loaded, or give --address of a running cluster") from e
    return True


def _deploy_failure(e: Exception) -> str:
    """The one-line reason of a failed deployment: the replica's UserError message when it has one."""
    text = str(e)
    for marker in ("PackageError: ", "TeacherError: ", "UserError: "):
        if marker in text:
            return text.rsplit(marker, 1)[1].strip().splitlines()[0]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


def serve_forever(spec, opts: ServeOptions, log: Callable[[str], None] = print,
                  ready: Callable[[], None] | None = None) -> int:
    """Run ``spec`` on Ray Serve at ``opts.host:opts.port`` until SIGTERM / SIGINT; -> 0 after a clean
    shutdown. The spec is verified here before Ray starts (a tampered package is refused with one
    message, no Ray started) and again by every replica as it loads it."""
    opts.check()
    if hasattr(spec, "verify"):
        spec.verify()
    _check_port(opts.host, opts.port)
    import ray

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():  # a second signal while shutting down: stop waiting
            raise KeyboardInterrupt
        stop.set()

    local = _start_ray(opts)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}  # after ray.init's own
    try:
        t0 = time.time()
        serve.start(http_options={"host": opts.host, "port": opts.port},
                    logging_config={"log_level": "WARNING", "enable_access_log": False})
        app = PredictService.options(**deployment_options(opts)).bind(spec, opts)
        try:
            serve.run(app, name=APP_NAME, route_prefix="/", logging_config={"log_level": "WARNING",
                                                                          "enable_access_log": False})
        except RuntimeError as e:
            raise ServeError(f"the service did not start: {_deploy_failure(e)}") from None
        scaling = (f"{opts.replicas}-{opts.max_replicas} replicas (autoscaling)"
                   if opts.max_replicas and opts.max_replicas > opts.replicas else f"{opts.replicas} replica(s)")
        log(f"[serve] {spec.describe()} on http://{opts.host}:{opts.port} ({scaling}, batches of up to "
            f"{opts.max_batch_size} rows, ready in {time.time() - t0:.1f}s): POST /predict, GET /healthz, GET /model; "
            "SIGTERM or Ctrl-C stops it")
        if ready:
            ready()
        while not stop.wait(0.5):
            pass
        log("[serve] stopping")
    finally:
        try:
            if local:
                serve.shutdown()
            else:
                serve.delete(APP_NAME)
        finally:
            ray.shutdown()
            for s, h in previous.items():
                signal.signal(s, h)
    log("[serve] stopped")
    return 0
