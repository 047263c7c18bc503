"""Expected failures print one `error:` line (exit code 2), bugs keep their traceback, `--debug` shows
it for everything; teacher.model and run_dir are checked before any stage runs."""
import errno
import json
import os
from pathlib import Path

import pytest

from tests.fixtures.cli_process import one_error_line, tgd
from tgd.cli import _expected, main
from tgd.config import ConfigError, check_run_dir, check_teacher, load_config
from tgd.errors import StageError, UserError


def write_cfg(tmp_path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def fake_checkpoint(path: Path, *, config=True, model_type=True, tokenizer=True, weights=True) -> Path:
    """The files a Hugging Face checkpoint directory holds (contents are never loaded by the checks)."""
    path.mkdir(parents=True, exist_ok=True)
    if config:
        (path / "config.json").write_text(json.dumps({"model_type": "bert"} if model_type else {"hidden_size": 8}))
    if tokenizer:
        (path / "vocab.txt").write_text("[PAD]\n[UNK]\nword\n")
    if weights:
        (path / "model.safetensors").write_bytes(b"\0" * 16)
    return path


# ------------------------------------------------------------------ through the CLI, as the README runs it
@pytest.mark.parametrize("command", ["run", "status"])
def test_bad_teacher_path_is_one_error_line_before_any_stage(tmp_path, command):
    run_dir = tmp_path / "run"
    cfg = write_cfg(tmp_path, f"run_dir: {run_dir}\ndata:\n  source: rt-sentiment\n"
                              f"teacher:\n  model: {tmp_path / 'no-such-teacher'}\n")
    done = tgd(command, str(cfg), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    assert "teacher.model=" in line and "no such directory" in line and "set teacher.model" in line
    assert not run_dir.exists()  # nothing ran: ingest did not even start
    assert done.stdout == ""


def test_debug_flag_shows_the_traceback(tmp_path):
    cfg = write_cfg(tmp_path, f"run_dir: {tmp_path / 'run'}\nteacher:\n  model: {tmp_path / 'nope'}\n")
    for args in (["--debug", "status", str(cfg)], ["status", str(cfg), "--debug"]):
        done = tgd(*args, cwd=tmp_path)
        assert done.returncode == 1
        assert "Traceback (most recent call last)" in done.stderr and "ConfigError: teacher.model=" in done.stderr


def test_unwritable_run_dir_is_refused_before_ingest(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cfg = write_cfg(tmp_path, f"run_dir: {blocker / 'run'}\n")
    done = tgd("ingest", str(cfg), cwd=tmp_path)
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert "run_dir=" in line and "a file, not a directory" in line and "set run_dir" in line
    assert blocker.read_text() == "not a directory"


# ------------------------------------------------------------------ the checks themselves (no subprocess)
def test_run_dir_checks(tmp_path):
    check_run_dir(load_config(None, [f"run_dir={tmp_path / 'new' / 'deeper'}"]))  # creatable: fine
    assert not (tmp_path / "new").exists()  # the check creates nothing
    assert list(tmp_path.iterdir()) == []  # and leaves no probe file behind
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="run_dir='.*/f' is a file, not a directory"):
        check_run_dir(load_config(None, [f"run_dir={tmp_path / 'f'}"]))
    with pytest.raises(ConfigError, match="cannot be created: /proc is not writable"):
        check_run_dir(load_config(None, ["run_dir=/proc/tgd-run"]))  # not writable even for root


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_read_only_run_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            check_run_dir(load_config(None, [f"run_dir={ro}"]))
        with pytest.raises(ConfigError, match="cannot be created"):
            check_run_dir(load_config(None, [f"run_dir={ro / 'run'}"]))
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("broken, expect", [
    (dict(config=False), "no config.json in it"),
    (dict(model_type=False), "has no model_type"),
    (dict(tokenizer=False), "no tokenizer files"),
    (dict(weights=False), "no weights"),
])
def test_incomplete_teacher_checkpoint_is_named(tmp_path, broken, expect):
    path = fake_checkpoint(tmp_path / "teacher", **broken)
    with pytest.raises(ConfigError) as e:
        check_teacher(load_config(None, [f"teacher.model={path}"]))
    assert "teacher.model=" in str(e.value) and expect in str(e.value)


def test_teacher_checkpoint_shapes_that_pass(tmp_path):
    check_teacher(load_config(None))  # the packaged default
    check_teacher(load_config(None, [f"teacher.model={fake_checkpoint(tmp_path / 'plain')}"]))
    sharded = fake_checkpoint(tmp_path / "sharded", weights=False)
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    (sharded / "model-00001-of-00002.safetensors").write_bytes(b"\0")
    with pytest.raises(ConfigError, match="names 1 weight file.*model-00002-of-00002.safetensors"):
        check_teacher(load_config(None, [f"teacher.model={sharded}", "teacher.kind=causal-lm"]))
    (sharded / "model-00002-of-00002.safetensors").write_bytes(b"\0")
    check_teacher(load_config(None, [f"teacher.model={sharded}", "teacher.kind=causal-lm"]))
    with pytest.raises(ConfigError, match="a file, not a directory"):
        check_teacher(load_config(None, [f"teacher.model={sharded / 'config.json'}"]))


def test_stages_that_never_load_the_teacher_do_not_check_it(tmp_path):
    from tgd.stages import preflight

    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", f"teacher.model={tmp_path / 'nope'}"])
    preflight(cfg, ("ingest",))
    preflight(cfg, ("graphs", "transfer"))
    for targets in (("teacher-finetune",), ("distill",), ("tune",)):
        with pytest.raises(ConfigError, match="teacher.model="):
            preflight(cfg, targets)


# ------------------------------------------------------------------ what counts as expected
def test_project_errors_are_user_errors():
    from cluster.submit import JobFailed
    from pipeline.corpora import CorpusError
    from pipeline.graph_builder import SpacyModelError
    from pipeline.readers import InputError

    for cls in (ConfigError, InputError, CorpusError, SpacyModelError, JobFailed, StageError):
        assert issubclass(cls, UserError)
    assert issubclass(ConfigError, ValueError) and issubclass(StageError, RuntimeError)  # old excepts still match


def test_expected_failures_are_found_inside_ray_wrappers():
    from ray.train import WorkerGroupError

    assert _expected(StageError("run `tgd ingest` first")) == "run `tgd ingest` first"
    assert _expected(WorkerGroupError("rank 1 failed", {1: StageError("install pyg-lib")})) == "install pyg-lib"
    try:
        try:
            raise StageError("inner")
        except StageError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as e:
        assert _expected(e) == "inner"
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/shard.parquet")
    assert _expected(full).startswith("No space left on device: /runs/x/shard.parquet; free disk space")
    assert _expected(RuntimeError("a bug")) is None and _expected(KeyError("k")) is None
    try:
        try:
            raise StageError("handled")
        except StageError:
            {}["missing"]  # a bug while handling an expected failure is still a bug
    except KeyError as e:
        assert _expected(e) is None
    assert _expected(FileNotFoundError(errno.ENOENT, "missing", "/x")) is None  # a path the code got wrong: a bug


def test_cli_one_line_for_a_stage_error_traceback_for_a_bug(monkeypatch, tmp_path, capsys):
    import tgd.cli as cli

    cfg = write_cfg(tmp_path, f"run_dir: {tmp_path / 'run'}\n")

    def stage_error(*a, **k):
        raise StageError("the test split has no documents: raise data.limit")

    monkeypatch.setattr(cli, "ensure", stage_error)
    assert main(["ingest", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err == "error: the test split has no documents: raise data.limit\n"
    with pytest.raises(StageError):
        main(["ingest", str(cfg), "--debug"])
    monkeypatch.setenv("TGD_DEBUG", "1")
    with pytest.raises(StageError):
        main(["ingest", str(cfg)])
    monkeypatch.delenv("TGD_DEBUG")

    def bug(*a, **k):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "ensure", bug)
    with pytest.raises(KeyError):  # not expected: the traceback reaches the user
        main(["ingest", str(cfg)])
