"""`tgd submit` to an address where no Ray head answers: one `error:` line naming the address and
what to check, exit code 2, no urllib3 / Ray traceback."""
import os
import subprocess
import sys

from cluster.submit import HeadUnreachable
from tests.fixtures import ROOT
from tgd.errors import UserError

ADDRESS = "http://127.0.0.1:1"  # port 1: nothing listens there, the connection is refused at once


def test_head_unreachable_is_a_user_error():
    assert issubclass(HeadUnreachable, UserError)


def test_submit_to_unreachable_head_is_one_error_line(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("TGD_DEBUG", None)
    run_dir = (tmp_path / "run").resolve()  # check_cluster_paths refuses a relative run_dir before connecting
    done = subprocess.run([sys.executable, "-m", "tgd.cli", "submit", str(ROOT / "configs" / "default.yaml"),
                           "--address", ADDRESS, "--wait", "--set", f"run_dir={run_dir}"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out, out
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), out
    assert ADDRESS in lines[-1] and "8265" in lines[-1] and "ray status" in lines[-1], lines[-1]
    assert not run_dir.exists()  # nothing was submitted, nothing written
