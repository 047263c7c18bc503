"""cluster/: the launcher config is valid for Ray's own schema; a Ray Job runs a stage for real."""
import contextlib
import copy
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from cluster.submit import check_cluster_paths
from tests.fixtures import ROOT


@pytest.mark.parametrize("name", ["ray_config.yaml", "cluster/aws.yaml"])
def test_launcher_configs_validate_against_ray_schema(name):
    from ray.autoscaler._private.util import fillout_defaults, prepare_config, validate_config

    config = yaml.safe_load((ROOT / name).read_text())
    validate_config(fillout_defaults(copy.deepcopy(config)))
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does: defaults merged, node types filled
    validate_config(prepared)
    assert any("scripts/setup.sh" in c for c in config["setup_commands"])
    if name == "cluster/aws.yaml":
        types = prepared["available_node_types"]
        assert types[prepared["head_node_type"]]["resources"] == {"CPU": 0}
        assert any(t["resources"].get("GPU") for t in types.values())
        assert any(t["resources"].get("CPU") and not t["resources"].get("GPU") for t in types.values())


def test_kuberay_rayjob_manifest():
    """The RayJob parses and has what KubeRay needs: `tgd run` as entrypoint, this Ray version, a head,
    a CPU and a GPU worker group, and the shared volume (holding the absolute run_dir) in every pod."""
    import ray

    job = yaml.safe_load((ROOT / "cluster/k8s/rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    entry = spec["entrypoint"].split()
    assert entry[:2] == ["tgd", "run"] and (ROOT / "configs" / Path(entry[2]).name).is_file()
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    pods = [g["template"]["spec"] for g in groups]
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for p in pods for c in p["containers"]]
    assert gpus[0] is None and None in gpus[1:] and "1" in gpus[1:]
    mounts = {m["mountPath"] for p in pods for c in p["containers"] for m in c["volumeMounts"]}
    assert len(mounts) == 1
    run_dir = next(e.split("=", 1)[1] for e in entry if e.startswith("run_dir="))
    assert Path(run_dir).is_absolute() and run_dir.startswith(mounts.pop() + "/")
    claims = {v["persistentVolumeClaim"]["claimName"] for p in pods for v in p["volumes"]}
    assert len(claims) == 1
    assert "env_vars" in yaml.safe_load(spec["runtimeEnvYAML"])
    # its --set overrides are a valid config: parser actors sized apart from the GPU training workers
    from tgd.config import load_config

    overrides = [entry[i + 1] for i, tok in enumerate(entry) if tok == "--set"]
    cfg = load_config(ROOT / "configs" / Path(entry[2]).name, overrides)
    assert cfg.resources("graphs").gpus_per_worker == 0 and cfg.resources("graphs").workers > cfg.ray.num_workers
    assert cfg.resources("teacher-finetune").use_gpu and cfg.resources("distill").use_gpu


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def job_table(address: str, env: dict) -> dict[str, str]:
    """submission id -> status, asked through the Jobs SDK in a fresh process: the token loader is
    process-wide and cached, so this test's own process may already hold another cluster's token."""
    code = ("import json, sys; from ray.job_submission import JobSubmissionClient; c = JobSubmissionClient(sys.argv[1]); "
            "print(json.dumps({j.submission_id: c.get_job_status(j.submission_id).value for j in c.list_jobs()}))")
    done = subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.splitlines()[-1])


def stop_session(sid: int) -> None:
    """End every process of the session the head was started in (its own, by start_new_session),
    one pid at a time: `ray stop` would also stop any other Ray instance on this machine."""
    def members():
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # after "(comm)": state ppid pgrp session ...
                yield int(stat.parent.name)

    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 20)):  # gcs_server may outlive a SIGTERM
        for pid in members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + grace
        while any(True for _ in members()) and time.time() < deadline:
            time.sleep(0.5)


def test_tgd_submit_runs_ingest_as_ray_job_through_the_cli(tmp_path):
    """`tgd submit CONFIG --address ... --command ingest --wait` as a user types it, against a real Ray
    head on loopback with its own ports, temp dir and auth token: the job is listed SUCCEEDED, the
    output is in the absolute run_dir, and nothing ran in the submitting process."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="tgdray", dir="/tmp"))  # short: Ray's socket paths must fit 107 chars
    token = ray_tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}  # Ray >= 2.60: token auth by default
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_ADDRESS", None)
    gcs, dash, client, agent, agent_grpc, runtime_env, metrics = free_ports(7)
    address = f"http://127.0.0.1:{dash}"
    head = subprocess.Popen(
        [str(bin_dir / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
         f"--metrics-export-port={metrics}", f"--temp-dir={ray_tmp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                assert job_table(address, env) == {}
                break
            except RuntimeError:  # dashboard not up yet
                if time.time() > deadline or head.poll() is not None:
                    raise
                time.sleep(2)
        src = tmp_path / "tiny.jsonl"
        src.write_text('{"text": "a fine film", "label": "fresh"}\n{"text": "", "label": "fresh"}\n'
                       '{"text": "a dull film", "label": "rotten"}\n')
        run_dir = tmp_path / "run"
        config = tmp_path / "job.yaml"
        config.write_text(f"run_dir: {run_dir}\ndata:\n  source: {src}\n")
        done = subprocess.run([str(bin_dir / "tgd"), "submit", str(config), "--address", address, "--command", "ingest",
                               "--wait"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        first = done.stdout.splitlines()[0]
        print(first)
        # run locally, the CLI would print the ingest summary and no "submitted" line
        assert first.startswith("submitted ") and f" to {address};" in first, done.stdout
        job_id = first.split()[1]
        assert job_table(address, env) == {job_id: "SUCCEEDED"}
        assert done.stdout.splitlines()[-1] == f"job {job_id}: SUCCEEDED"
        manifest = json.loads((run_dir / "ingest" / "manifest.json").read_text())
        assert (manifest["input_rows"], manifest["accepted_rows"], manifest["rejected_rows"]) == (3, 2, 1)
        assert (run_dir / "ingest" / "rejects.parquet").is_file()
    finally:
        stop_session(head.pid)
        head.wait(timeout=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_submit_parses_its_own_command_flag():
    from tgd.cli import build_parser

    args = build_parser().parse_args(["submit", "c.yaml", "--address", "http://h:8265", "--command", "ingest"])
    assert (args.command, args.job_command) == ("submit", "ingest")


@pytest.mark.parametrize("yaml_text, message", [
    ("run_dir: runs/x\n", "run_dir 'runs/x' is relative"),
    ("run_dir: /abs/run\ndata:\n  source: data/in.jsonl\n", "data.source 'data/in.jsonl' is a relative path"),
    ("run_dir: /abs/run\nteacher:\n  model: models/teacher\n", "teacher.model 'models/teacher' is a relative path"),
])
def test_submit_refuses_paths_the_cluster_resolves_elsewhere(tmp_path, capsys, yaml_text, message):
    from tgd.cli import main
    from tgd.config import RunConfig

    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    assert main(["submit", str(config), "--address", "http://127.0.0.1:1"]) == 2  # refused before connecting
    assert message in capsys.readouterr().err
    for source in ("s3://bucket/in.jsonl", "rt-sentiment", str(tmp_path / "in.jsonl")):
        check_cluster_paths(RunConfig.model_validate({"run_dir": str(tmp_path / "run"), "data": {"source": source}}))


def test_make_trainer_takes_each_stage_resources(tmp_path):
    """The TorchTrainer a stage builds asks for that stage's ray.stages entry (built, not fitted: no Ray)."""
    from tgd.config import load_config
    from trainers.raytrain import make_trainer

    cfg = load_config(None, ["ray.num_workers=3", "ray.cpus_per_worker=2",
                             "ray.stages.teacher_finetune.workers=4", "ray.stages.teacher_finetune.gpus_per_worker=1",
                             "ray.stages.teacher_finetune.cpus_per_worker=6", "ray.stages.teacher_logits.gpus_per_worker=0.5",
                             "ray.stages.distill.workers=1"])

    def scaling(**kw):
        t = make_trainer(cfg, lambda c: None, {}, name="t", storage=tmp_path, datasets={}, dataset_config=None, **kw)
        s = t.scaling_config
        return s.num_workers, s.use_gpu, s.resources_per_worker

    assert scaling(stage="teacher-finetune") == (4, True, {"CPU": 6.0, "GPU": 1.0})
    assert scaling(stage="teacher-logits") == (3, True, {"CPU": 2.0, "GPU": 0.5})
    assert scaling(stage="distill") == (1, False, {"CPU": 2.0})
    assert scaling() == (3, False, {"CPU": 2.0})  # the old call, without stage=: the ray.* defaults
    # a stage's resolved config (what ensure() hands the stage) gives the same trainer
    assert make_trainer(cfg.for_stage("distill"), lambda c: None, {}, name="t", storage=tmp_path, datasets={},
                        dataset_config=None, stage="distill").scaling_config.num_workers == 1


def test_local_ray_fits_the_largest_stage():
    from cluster.ray_session import local_num_cpus
    from tgd.config import load_config

    cfg = load_config(None, ["ray.num_workers=1", "ray.stages.graphs.workers=40", "ray.stages.graphs.cpus_per_worker=2"])
    assert cfg.ray.local_cpus() == 81 and local_num_cpus(cfg.ray) == 81
    assert load_config(None).ray.local_cpus() == 3  # 2 workers x 1 CPU + 1, as before ray.stages
