"""cluster/: the launcher config is valid for Ray's own schema; a Ray Job runs a stage for real."""
import json
import os
import signal
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from cluster.submit import submit
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[1]


def test_ray_config_validates_against_ray_schema():
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = yaml.safe_load((ROOT / "ray_config.yaml").read_text())
    validate_config(fillout_defaults(config))
    assert any("scripts/setup.sh" in c for c in config["setup_commands"])


@pytest.mark.slow
def test_submit_ingest_as_ray_job(tmp_path, monkeypatch):
    """Start a separate Ray head with a dashboard, submit `tgd ingest` as a Ray Job, wait for it."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # Ray >= 2.59 protects local clusters with a token
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    ray_tmp = tempfile.mkdtemp(prefix="tgdray", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port=6391", "--num-cpus=1",
         "--dashboard-port=8271", "--include-dashboard=true", f"--temp-dir={ray_tmp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.time() + 120
        while True:
            try:
                JobSubmissionClient("http://127.0.0.1:8271").list_jobs()
                break
            except Exception:  # noqa: BLE001 - dashboard not up yet
                if time.time() > deadline:
                    raise
                time.sleep(2)
        src = tmp_path / "tiny.jsonl"
        src.write_text('{"text": "a fine film", "label": "fresh"}\n{"text": "", "label": "fresh"}\n')
        cfg = make_config(tmp_path, data={"source": str(src)})
        logs = []
        submit(cfg, "http://127.0.0.1:8271", command="ingest", wait=True, log=logs.append)
        manifest = json.loads((tmp_path / "run/ingest/manifest.json").read_text())
        assert manifest["accepted_rows"] == 1 and manifest["rejected_rows"] == 1
        assert any("SUCCEEDED" in x for x in logs)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(ray_tmp, ignore_errors=True)
