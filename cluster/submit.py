"""Submit a `tgd` stage to a Ray cluster as a Ray Job (the cluster's nodes run scripts/setup.sh,
see ray_config.yaml). The project folder plus the validated config (overrides applied) are shipped
as the job's working_dir, so the driver runs exactly the code and config you have here against
the packages installed on the cluster. Paths in the config resolve on the cluster: use shared
storage or URIs for data.source and run_dir; relative ones are refused (check_cluster_paths)."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from tgd.config import ConfigError, RunConfig, dump_yaml
from tgd.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXCLUDES = (".venv", ".git", "runs", "__pycache__", "*.egg-info", ".pytest_cache")


JOB_CONFIG = "job_config.yaml"


class JobFailed(UserError, RuntimeError):
    """The submitted job ended FAILED or STOPPED (its logs were printed)."""


class HeadUnreachable(UserError, ConnectionError):
    """Nothing answers at ``--address``: the Ray head is down, the dashboard port is not reachable
    from here, or the address is not the dashboard's. The message names the address and what to check."""


def _connection_errors() -> tuple[type[BaseException], ...]:
    """What Ray's job client raises when the dashboard does not answer: the built-in ConnectionError
    (its constructor's version check) or requests' (any later request; not a built-in subclass)."""
    import requests

    return ConnectionError, requests.exceptions.ConnectionError


def _unreachable(address: str, doing: str) -> HeadUnreachable:
    return HeadUnreachable(f"no Ray head answers at --address {address} ({doing}): check that the head is running "
                           f"(`ray status` on the head node), that its dashboard port (8265 by default) is reachable "
                           f"from this machine (firewall, security group, port forward), and that the address has "
                           f"the form http://HEAD:8265")


def check_cluster_paths(cfg: RunConfig) -> None:
    """Refuse paths the job would resolve against Ray's temporary working directory on the cluster:
    a relative run_dir would be written there and deleted with it, a relative data.source would not
    be found (or silently be another file); the same for a teacher checkpoint. Built-in corpus names,
    the packaged teacher and URIs are fine."""
    from pipeline.corpora import RECIPES

    if not cfg.run_dir.is_absolute():
        raise ConfigError(f"run_dir {str(cfg.run_dir)!r} is relative: a submitted job runs in Ray's temporary working "
                          f"directory and would write there; set run_dir to an absolute path on storage the cluster "
                          f"shares (e.g. --set run_dir=/mnt/shared/runs/NAME)")
    source = cfg.data.source
    if source not in RECIPES and "://" not in source and not Path(source).is_absolute():
        raise ConfigError(f"data.source {source!r} is a relative path, which the cluster resolves inside Ray's "
                          f"temporary working directory: use an absolute path on storage every node sees, or a URI "
                          f"(s3://, gs://)")
    from trainers.teacher.model import PACKAGED

    model = cfg.teacher.model
    if model not in PACKAGED and not Path(model).expanduser().is_absolute():
        raise ConfigError(f"teacher.model {model!r} is a relative path, which the cluster resolves inside Ray's "
                          f"temporary working directory: use an absolute path on storage every node sees, or the "
                          f"packaged 'all-minilm-l6-v2'")


def submit(cfg: RunConfig, address: str, command: str = "run", wait: bool = False, log=print) -> str:
    from ray.job_submission import JobStatus, JobSubmissionClient

    check_cluster_paths(cfg)
    unreachable = _connection_errors()
    try:
        client = JobSubmissionClient(address)
    except unreachable:
        raise _unreachable(address, "connecting to its job API") from None
    with tempfile.TemporaryDirectory(prefix="tgd-job-") as staging:
        work = Path(staging) / "textgraph-distill"
        shutil.copytree(PROJECT_ROOT, work, ignore=shutil.ignore_patterns(*EXCLUDES))
        (work / JOB_CONFIG).write_text(dump_yaml(cfg))
        job = dict(entrypoint=f"python -m tgd.cli {command} {JOB_CONFIG}",
                   runtime_env={"working_dir": str(work),
                                "env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}},
                   metadata={"tool": "textgraph-distill", "command": command, "run_dir": str(cfg.run_dir)})
        for attempt in range(30):  # a cluster that has just started may not have its job agent yet
            try:
                job_id = client.submit_job(**job)
                break
            except unreachable:
                raise _unreachable(address, "submitting the job") from None
            except RuntimeError as e:
                if "No available agent" not in str(e) or attempt == 29:
                    raise
                time.sleep(2)
    log(f"submitted {job_id} to {address}; follow with: ray job logs --address {address} -f {job_id}")
    if wait:
        try:
            status = client.get_job_status(job_id)
            while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
                time.sleep(2)
                status = client.get_job_status(job_id)
            logs = client.get_job_logs(job_id)
        except unreachable:
            raise _unreachable(address, f"waiting for job {job_id}, which may still be running; follow it with "
                               f"`ray job logs --address {address} -f {job_id}` once the head answers") from None
        log(logs)
        log(f"job {job_id}: {status.value}")
        if status != JobStatus.SUCCEEDED:
            raise JobFailed(f"job {job_id} ended {status.value}; its logs are above")
    return job_id
