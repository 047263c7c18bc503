"""Run `tgd` as a separate driver process and kill it for real (the fault tests' shared helpers)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_tgd(args: list[str], log: Path) -> subprocess.Popen:
    """`tgd ...` in a new process group (the local Ray it starts included), output appended to ``log``."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tgd.cli", *args], cwd=ROOT, env=env, start_new_session=True,
                            stdout=log.open("a"), stderr=subprocess.STDOUT)


def kill_driver(proc: subprocess.Popen) -> list:
    """SIGKILL the driver, its process group and every process below it (Ray's own daemons may start
    sessions of their own); returns them as psutil processes to check that none survived."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(family, timeout=30)
    return family


def run_to_end(args: list[str], log: Path, timeout: float = 480) -> str:
    """`tgd ...` to completion (exit code 0 asserted); returns the log."""
    proc = start_tgd(args, log)
    try:
        assert proc.wait(timeout=timeout) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            kill_driver(proc)
    return log.read_text()


def wait_for(cond, what: str, timeout: float = 420) -> None:
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
