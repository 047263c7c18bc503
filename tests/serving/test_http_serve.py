"""`tgd serve` through the CLI: a real Ray Serve application on a loopback port, real HTTP, no mocks.

A served package answers rows of every task with the records `tgd predict` writes for the same rows
(same order, ids carried, bad rows as error records in place, the other rows answered); rows of
concurrent requests batched together still come back to their own request; a bad request (not
JSON, not a list, too many rows, a body over the limit, an unknown path) gets its 4xx with a JSON
reason and the service keeps serving; /model is the package's package.json; a tampered package
refuses to start (exit 2, one `error:` line, before Ray starts); SIGINT and SIGTERM shut it down
with exit 0 and free the port.

`tgd serve --defer-below P` on a package with its teacher answers like `tgd predict --defer-below P`.

One server at a time (``servers``: starting the next stops the previous one with SIGINT, which must
exit 0 and free the port), one per package: the module starts four servers in all.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures import ROOT
from tests.fixtures.cli_process import one_error_line, tgd
from tests.fixtures.serving_data import (
    cascade_run,
    corpus,
    export_package,
    export_with_teacher,
    mixed_texts,
    pair_corpus,
    small_run,
    small_task_run,
)
from tgd.cli import main

MAX_ROWS, MAX_BODY = 50, 20_000
GIVEN_TOKENS = ["New York", "was", "wonderful", ",", "the", "cast", "felt", "dull", "!"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, wait: float = 15) -> bool:
    """Nothing listens on ``port`` (SO_REUSEADDR: the closed connections' TIME_WAIT do not count; the
    exited server's Ray workers get ``wait`` seconds to go)."""
    deadline = time.time() + wait
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.time() > deadline:
                    return False
        time.sleep(0.5)


def request(port: int, path: str, body: bytes | None = None, timeout: float = 60) -> tuple[int, object]:
    """(status, decoded JSON body) of one HTTP request; a 4xx / 5xx is returned, not raised."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(port: int, rows) -> tuple[int, object]:
    return request(port, "/predict", json.dumps(rows).encode())


class Server:
    """`tgd serve PACKAGE` as a user runs it: a fresh interpreter, the real CLI, a free loopback port."""

    def __init__(self, package: Path, log_dir: Path, *extra: str):
        self.package, self.port = package, free_port()
        self.err_path = log_dir / f"serve-{package.name}-{self.port}.err"
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        env.pop("TGD_DEBUG", None)
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "tgd.cli", "serve", str(package), "--port", str(self.port),
                                      "--max-rows", str(MAX_ROWS), "--max-body-bytes", str(MAX_BODY), *extra],
                                     stdout=subprocess.DEVNULL, stderr=self.err, cwd=ROOT, env=env)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tgd serve exited with {self.proc.returncode}: {self.stderr()[-3000:]}")
            try:
                if request(self.port, "/healthz", timeout=5)[0] == 200:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        self.proc.kill()
        raise AssertionError(f"tgd serve not healthy after 300 s: {self.stderr()[-3000:]}")

    def stderr(self) -> str:
        if not self.err.closed:
            self.err.flush()
        return self.err_path.read_text()

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


class Servers:
    """One running server at a time: asking for another package stops the current one (SIGINT,
    which must exit 0 with the port freed)."""

    def __init__(self, packages: dict[str, Path], log_dir: Path):
        self.packages, self.log_dir, self.current, self.task = packages, log_dir, None, None

    def get(self, task: str, *extra: str) -> Server:
        if self.task != (task, *extra):
            self.close(signal.SIGINT, check=True)
            self.current, self.task = Server(self.packages[task], self.log_dir, *extra), (task, *extra)
        return self.current

    def close(self, sig=signal.SIGTERM, check: bool = False) -> None:
        if self.current is not None:
            rc, port = self.current.stop(sig), self.current.port
            err = self.current.stderr()
            self.current = self.task = None
            if check:
                assert rc == 0, err[-3000:]
                assert port_is_free(port), f"port {port} still taken after the shutdown"


@pytest.fixture(scope="module")
def packages(tmp_path_factory, graph_builder) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp()
    return {"classification": export_package(small_run(base / "serving-run", graph_builder), "torchscript"),
            "token": export_package(small_task_run(base / "serving-token", graph_builder, "token"), "onnx"),
            "pair": export_package(small_task_run(base / "serving-pair", graph_builder, "pair"), "torchscript"),
            "cascade": export_with_teacher(cascade_run(base / "serving-cascade", graph_builder))}


@pytest.fixture(scope="module")
def servers(packages, tmp_path_factory):
    s = Servers(packages, tmp_path_factory.mktemp("serve-logs"))
    yield s
    s.close()


def same_records(got, want) -> bool:
    """Equal records: ids, labels, tags and errors exactly, numbers to float32 rounding (a row's numbers
    depend slightly on which rows share its batched forward and on the thread count)."""
    if isinstance(want, float) and isinstance(got, (int, float)):
        return got == pytest.approx(want, rel=1e-4, abs=1e-6)
    if isinstance(want, dict):
        return isinstance(got, dict) and list(got) == list(want) and all(same_records(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same_records, got, want))
    return got == want


def threshold_between(confidences: list[float | None]) -> float:
    """A threshold in the widest gap between two neighbouring confidences near the median, so that no
    row sits on it (a row's confidence moves by float rounding between batchings)."""
    c = sorted(x for x in confidences if x is not None)
    k = max(range(len(c) // 4, 3 * len(c) // 4), key=lambda i: c[i + 1] - c[i])
    assert c[k + 1] - c[k] > 1e-5, c
    return (c[k] + c[k + 1]) / 2


def predicted(package: Path, rows: list, tmp_path: Path, *extra: str) -> list[dict]:
    """What `tgd predict` writes for ``rows`` given as the lines of a JSONL file."""
    src, out = tmp_path / "rows.jsonl", tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["predict", str(package), "--input", str(src), "--output", str(out), *extra]) == 0
    return [json.loads(x) for x in out.read_text().splitlines()]


def task_rows(task: str) -> list:
    """Good rows of the task with bad ones among them (each gets an error record in place)."""
    texts = [t for t, _ in corpus(6, seed=31)]
    if task == "classification":
        good = [{"id": i, "text": t} for i, t in enumerate(texts)]
    elif task == "token":
        good = [{"id": i, "text": t} for i, t in enumerate(texts[:4])] + [{"id": "given", "tokens": GIVEN_TOKENS}]
    else:
        good = [{"id": i, "text": a, "text_b": b} for i, (a, b, _) in enumerate(pair_corpus(6, seed=32))]
    bad = [{"id": "empty", "text": "   "}, {"id": "number", "text": 17}, {"id": "nothing"}, "a bare string", 5]
    if task == "token":
        bad.append({"id": "blank-token", "tokens": ["The", "", "plot"]})
    if task == "pair":
        bad.append({"id": "one-side", "text": "Only side A."})
    rows = []
    for k, row in enumerate(good):  # bad rows spread between the good ones
        rows.append(row)
        if k < len(bad):
            rows.append(bad[k])
    return rows + bad[len(good):]


# ------------------------------------------------------------------ every task: the records of `tgd predict`
@pytest.mark.parametrize("task", ["pair", "token", "classification"])  # classification last: the next tests use it
def test_served_records_are_tgd_predicts(servers, packages, task, tmp_path):
    server = servers.get(task)
    rows = task_rows(task)
    status, got = post(server.port, rows)
    assert status == 200, got
    want = predicted(packages[task], rows, tmp_path)
    assert same_records(got, want), (got, want)
    assert len(got) == len(rows)
    errors = [("error" in r) for r in got]
    assert 0 < sum(errors) < len(rows)  # bad rows are error records, the others are answered
    assert [r.get("id") for r in got] == [r.get("id") if isinstance(r, dict) else None for r in rows]
    status, health = request(server.port, "/healthz")
    assert status == 200 and health["status"] == "ok" and health["task"] == task
    status, meta = request(server.port, "/model")
    assert status == 200 and meta == json.loads((packages[task] / "package.json").read_text())


# ------------------------------------------------------------------ classification: batching and bad requests
def test_concurrent_requests_get_their_own_records(servers, packages, tmp_path):
    """Rows of 12 requests sent at once share batches (@serve.batch) and still come back in place."""
    server = servers.get("classification")
    texts = [t for t, _ in corpus(36, seed=41)]
    batches = [[{"id": f"{k}-{i}", "text": t} for i, t in enumerate(texts[k::12])] for k in range(12)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda rows: post(server.port, rows), batches))
    want = predicted(packages["classification"], [r for b in batches for r in b], tmp_path)
    got = []
    for status, records in answers:
        assert status == 200
        got += records
    assert same_records(got, want), (got, want)


def test_bad_requests_get_4xx_and_the_service_keeps_serving(servers):
    server = servers.get("classification")
    port = server.port
    good = [{"id": 1, "text": "The film was wonderful and the cast felt warm."}]
    status, first = post(port, good)
    assert status == 200 and first[0]["label"] == "pos"
    cases = {
        "not JSON": (request(port, "/predict", b"{this is not json"), 400, "not JSON"),
        "not a list": (request(port, "/predict", json.dumps({"text": "a row, not a list"}).encode()), 422, "not a list"),
        "a bare number": (request(port, "/predict", b"42"), 422, "not a list"),
        "too many rows": (post(port, [{"text": "Fine."}] * (MAX_ROWS + 1)), 413, f"limit is {MAX_ROWS}"),
        "oversize body": (post(port, [{"text": "word " * (MAX_BODY // 5)}]), 413, "over the limit"),
        "unknown path": (request(port, "/nowhere"), 404, "Not Found"),
        "wrong method": (request(port, "/healthz", b"[]"), 405, "Method Not Allowed"),
    }
    for name, ((status, body), want_status, reason) in cases.items():
        assert status == want_status, (name, status, body)
        assert isinstance(body, dict) and list(body) == ["error"] and reason in body["error"], (name, body)
    assert post(port, []) == (200, [])
    assert post(port, [{"text": "Fine."}] * MAX_ROWS)[0] == 200  # exactly the limit is served
    status, again = post(port, good)
    assert status == 200 and same_records(again, first)  # still serving, same answer
    assert server.proc.poll() is None


# ------------------------------------------------------------------ the cascade
def test_served_cascade_defers_exactly_the_rows_below_the_threshold(servers, packages, tmp_path):
    """`tgd serve --defer-below P`: the records of `tgd predict --defer-below P`; the teacher answers
    exactly the rows whose student confidence is below P (test_cascade.py checks the teacher's answers)."""
    package = packages["cascade"]
    rows = [{"id": i, "text": t} for i, t in enumerate(mixed_texts(20, seed=61))] + [{"id": "e", "text": ""}]
    student = predicted(package, rows, tmp_path)
    conf = [max(r["probabilities"].values()) if "error" not in r else None for r in student]
    p = threshold_between(conf)
    server = servers.get("cascade", "--defer-below", str(p))
    status, got = post(server.port, rows)
    assert status == 200
    assert same_records(got, predicted(package, rows, tmp_path, "--defer-below", str(p)))
    assert [r.get("answered_by") for r in got] == [None if c is None else "teacher" if c < p else "student"
                                                   for c in conf]
    assert {"student", "teacher"} <= {r.get("answered_by") for r in got}
    assert request(server.port, "/healthz")[1]["serving"].startswith("cascade")


# ------------------------------------------------------------------ refusals and shutdown
def test_tampered_package_refuses_to_start(packages, tmp_path):
    bad = tmp_path / "tampered"
    shutil.copytree(packages["classification"], bad)
    enc = json.loads((bad / "encoding.json").read_text())
    enc["labels"] = enc["labels"][::-1]  # same size, other content
    (bad / "encoding.json").write_text(json.dumps(enc))
    t0 = time.time()
    done = tgd("serve", str(bad), "--port", str(free_port()), cwd=ROOT)
    assert done.returncode == 2, done.stderr[-3000:]
    line = one_error_line(done.stderr)
    assert "encoding.json" in line and "sha256" in line
    assert time.time() - t0 < 120
    missing = tgd("serve", str(tmp_path / "no-such-package"), "--port", str(free_port()), cwd=ROOT)
    assert missing.returncode == 2 and "no manifest.json" in one_error_line(missing.stderr)


def test_a_taken_port_is_refused(servers, packages):
    server = servers.current or servers.get("classification")
    done = tgd("serve", str(packages["classification"]), "--port", str(server.port), cwd=ROOT)
    assert done.returncode == 2 and "cannot listen" in one_error_line(done.stderr)
    assert request(server.port, "/healthz")[0] == 200  # the running one is untouched


def test_sigterm_shuts_down_cleanly(servers):
    server = servers.current or servers.get("classification")
    port = server.port
    assert server.stop(signal.SIGTERM) == 0, server.stderr()[-3000:]
    err = server.stderr()
    assert "Traceback" not in err and "[serve] stopped" in err
    assert port_is_free(port)
    servers.current = servers.task = None
