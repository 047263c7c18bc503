import json

import pytest
from pydantic import ValidationError

from tgd.cli import main
from tgd.config import ConfigError, load_config


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "data:\n  source: brown-genre\n"), ["graph.window=5", "ray.address=null"])
    assert cfg.data.source == "brown-genre"
    assert cfg.graph.window == 5 and cfg.graph.min_cooccurrence == 1
    assert cfg.ray.address is None and cfg.ray.num_workers == 2


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "graph:\n  windw: 3\n"))
    assert "graph.windw" in str(e.value) and "unknown key" in str(e.value)


def test_bad_values_are_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "graph:\n  window: 1\ndata:\n  task: regression\n"))
    msg = str(e.value)
    assert "graph.window" in msg and "data.task" in msg


def test_bad_split_fractions(tmp_path):
    with pytest.raises(ConfigError, match="data.split_fractions"):
        load_config(None, ["data.split_fractions=[0.5, 0.1, 0.1]"])


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["graph.window"])


def test_section_hash_tracks_only_its_section():
    a, b = load_config(None), load_config(None, ["ray.num_workers=7"])
    assert a.section_hash("graph") == b.section_hash("graph")
    c = load_config(None, ["graph.window=4"])
    assert a.section_hash("graph") != c.section_hash("graph")


def test_with_changes_validates_like_any_config():
    cfg = load_config(None)
    changed = cfg.with_changes({"distill.lr": 0.5, "ray.stages.distill.workers": 3, "evaluate.ablations": []})
    assert (changed.distill.lr, changed.resources("distill").workers, changed.evaluate.ablations) == (0.5, 3, [])
    assert cfg.distill.lr != 0.5  # a copy
    with pytest.raises(ValidationError):
        cfg.with_changes({"distill.lr": -1})


def test_cli_reports_config_errors(tmp_path, capsys):
    rc = main(["ingest", str(write(tmp_path, "dta: {}\n"))])
    assert rc == 2
    assert "dta: unknown key" in capsys.readouterr().err


def test_cli_missing_config(tmp_path, capsys):
    assert main(["graphs", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_fast_graph_parser_refuses_dependency_only_student():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["graph.parser=fast", "student.edges=dependency"])
    assert "graph.parser" in str(e.value) and "student.edges" in str(e.value)
    assert load_config(None, ["graph.parser=fast"]).graph.parser == "fast"
    assert load_config(None, ["graph.parser=fast", "student.edges=cooccurrence"]).student.edges == "cooccurrence"


def test_fast_graph_row_needs_cooccurrence_edges():
    with pytest.raises(ConfigError, match="evaluate.ablations has fast_graph"):
        load_config(None, ["student.edges=dependency"])
    cfg = load_config(None, ["student.edges=dependency", "evaluate.ablations=[no_bridge]"])
    assert cfg.student.edges == "dependency"


def test_schema_data_and_status_through_the_installed_cli(tmp_path):
    """The README's `tgd schema`, `tgd data` and `tgd status` as a user runs them: the console script."""
    import subprocess
    import sys
    from pathlib import Path

    from tgd.schema import ALL, SCHEMA_VERSION
    from tgd.stages import STAGE_NAMES

    tgd = str(Path(sys.executable).parent / "tgd")

    def run(*args):
        done = subprocess.run([tgd, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = run("schema")
    assert out.startswith(f"schema version {SCHEMA_VERSION}") and all(f"## {name}" in out for name in ALL)
    out = run("data")
    assert "rt-sentiment" in out and "brown-genre" in out and "brown-pos" in out
    cfg = write(tmp_path, f"run_dir: {tmp_path / 'run'}\n")
    lines = run("status", str(cfg)).splitlines()
    assert [l.split()[0] for l in lines] == list(STAGE_NAMES) and all(l.endswith("missing") for l in lines)


def test_transfer_set_default_and_refusals():
    from tgd.config import RunConfig

    assert RunConfig().transfer_copies() == 1
    assert RunConfig.model_validate({"data": {"task": "token"}}).transfer_copies() == 0  # default: none for tokens
    assert RunConfig.model_validate({"graph": {"merge_repeated": True}}).transfer_copies() == 0
    with pytest.raises(ValueError, match="transfer.copies=2: the transfer set is built for data.task=classification"):
        RunConfig.model_validate({"data": {"task": "pair"}, "transfer": {"copies": 2}})
    with pytest.raises(ValueError, match="mask_prob \\+ transfer.replace_prob"):
        RunConfig.model_validate({"transfer": {"mask_prob": 0.6, "replace_prob": 0.6}})


def test_tune_space_keys_and_values_are_validated():
    from tgd.config import RunConfig

    with pytest.raises(ValueError, match="tune.space key 'distill.nope'"):
        RunConfig.model_validate({"tune": {"space": {"distill.nope": [1]}}})
    with pytest.raises(ValueError, match="greater than 0"):
        RunConfig.model_validate({"tune": {"space": {"distill.lr": [0.01, -1]}}})


def test_tune_space_defaults_to_the_tasks_own_and_each_validates():
    """Without tune.space each task searches its own space (pairs: a bridge weight two decades above
    classification's); every task's space passes the same validation as a user's, and a given space wins."""
    from tgd.config import RunConfig, TuneConfig
    from tgd.tasks import SPECS

    for name, spec in SPECS.items():
        TuneConfig(space=spec.tune_space)  # raises if a key or value is not valid
        assert RunConfig.model_validate({"data": {"task": name}}).tune_space() == spec.tune_space
    pair = RunConfig.model_validate({"data": {"task": "pair"}}).tune_space()
    assert min(pair["distill.beta_bridge"]) > max(RunConfig().tune_space()["distill.beta_bridge"])
    assert "distill.temperature" not in pair  # pair KD regresses the similarity: no temperature to search
    given = {"distill.alpha_kl": [0.2]}
    assert RunConfig.model_validate({"data": {"task": "pair"}, "tune": {"space": given}}).tune_space() == given


def test_task_defaults_fill_every_null_setting_and_a_given_value_wins(tmp_path):
    """Each task names a value for every task-defaulted key; the loaded config (and so every stage and
    its hash) carries the task's value, and a config's own value overrides it."""
    from tgd.config import TASK_DEFAULTED
    from tgd.tasks import SPECS

    for name, spec in SPECS.items():
        assert set(spec.task_defaults) == set(TASK_DEFAULTED), name
        cfg = load_config(write(tmp_path, f"data:\n  task: {name}\n"))
        for key in TASK_DEFAULTED:
            section, field = key.split(".")
            assert getattr(getattr(cfg, section), field) == spec.task_defaults[key], (name, key)
    token = load_config(write(tmp_path, "data:\n  task: token\n"))
    classification = load_config(write(tmp_path, "data:\n  task: classification\n"))
    assert token.distill.alpha_kl < classification.distill.alpha_kl and not token.distill.curriculum
    explicit = {k: v for k, v in SPECS["classification"].task_defaults.items() if k.startswith("distill.")}
    same = load_config(write(tmp_path, "distill:\n" + "".join(f"  {k.split('.')[1]}: {v}\n" for k, v in explicit.items())))
    assert same.section_hash("distill") == classification.section_hash("distill")  # runs that set them stay cached
    assert load_config(None, ["data.task=token", "distill.alpha_kl=0.9"]).distill.alpha_kl == 0.9


# ------------------------------------------------------------------ per-stage resources (ray.stages)
TRAINING = ("teacher-finetune", "teacher-logits", "distill", "evaluate", "tune")


def test_stage_resources_default_to_ray_keys():
    cfg = load_config(None, ["ray.num_workers=3", "ray.cpus_per_worker=2", "ray.use_gpu=true"])
    for stage in TRAINING:
        r = cfg.resources(stage)
        assert (r.workers, r.cpus_per_worker, r.gpus_per_worker, r.use_gpu) == (3, 2.0, 1.0, True)
    g = cfg.resources("graphs")
    assert (g.workers, g.cpus_per_worker, g.gpus_per_worker) == (3, 2.0, 0.0)  # parser actors never hold a GPU
    r = load_config(None).resources("distill")
    assert (r.workers, r.cpus_per_worker, r.gpus_per_worker, r.use_gpu) == (2, 1.0, 0.0, False)
    assert load_config(None).for_stage("distill").ray == load_config(None).ray  # no ray.stages: nothing changes


def test_stage_resources_override_per_stage(tmp_path):
    cfg = load_config(write(tmp_path, """
ray:
  num_workers: 2
  stages:
    graphs: {workers: 6, cpus_per_worker: 1}
    teacher_finetune: {workers: 4, cpus_per_worker: 8, gpus_per_worker: 1}
    teacher_logits: {gpus_per_worker: 0.5}
    distill: {workers: 1}
"""))
    assert cfg.resources("graphs").workers == 6
    ft = cfg.resources("teacher-finetune")
    assert (ft.workers, ft.cpus_per_worker, ft.gpus_per_worker) == (4, 8.0, 1.0)
    tl = cfg.resources("teacher_logits")  # the ray.stages key works as well as the stage name
    assert (tl.workers, tl.cpus_per_worker, tl.gpus_per_worker, tl.use_gpu) == (2, 1.0, 0.5, True)
    assert cfg.resources("distill").workers == cfg.resources("evaluate").workers == cfg.resources("tune").workers == 1
    assert cfg.resources().workers == 2  # no stage: the ray.* defaults
    # what a stage sees as cfg.ray: its own resources (graphs sizes its actor pool from it)
    assert (cfg.for_stage("graphs").ray.num_workers, cfg.for_stage("teacher-finetune").ray.cpus_per_worker) == (6, 8.0)
    assert cfg.for_stage("teacher-logits").ray.use_gpu and not cfg.for_stage("distill").ray.use_gpu
    assert cfg.for_stage("ingest") is cfg
    resolved = cfg.for_stage("teacher-logits")
    assert resolved.resources("teacher-logits") == cfg.resources("teacher-logits")  # resolving twice changes nothing


@pytest.mark.parametrize("override, key", [
    ("ray.stages.distill.workers=0", "ray.stages.distill.workers"),
    ("ray.stages.graphs.cpus_per_worker=-1", "ray.stages.graphs.cpus_per_worker"),
    ("ray.stages.teacher_finetune.gpus_per_worker=1.5", "ray.stages.teacher_finetune.gpus_per_worker"),
    ("ray.stages.graphs.gpus_per_worker=1", "ray.stages.graphs.gpus_per_worker: unknown key"),
    ("ray.stages.distil.workers=2", "ray.stages.distil: unknown key"),
])
def test_stage_resources_are_validated(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert key in str(e.value)


def test_resource_keys_never_make_a_stage_stale(tmp_path):
    """Stage fingerprints leave resources out: another worker count or GPU setting re-uses finished work."""
    from tgd.stages import COMMANDS, _wanted, get_stage

    base = load_config(None, [f"run_dir={tmp_path}"])
    changed = load_config(None, [f"run_dir={tmp_path}", "ray.num_workers=5", "ray.cpus_per_worker=3",
                                 "ray.use_gpu=true", "ray.address=auto", "ray.stages.distill.workers=8",
                                 "ray.stages.graphs.workers=16", "ray.stages.teacher_finetune.gpus_per_worker=1"])
    for name in COMMANDS:
        if name != "ingest":  # ingest's fingerprint also reads the source files
            stage = get_stage(name)
            assert _wanted(base, stage) == _wanted(changed, stage), name


def test_manifest_of_another_schema_version_or_config_is_stale(tmp_path):
    """A stage is up to date only for a manifest of this schema version and this config's hash: a run
    directory made by an older version is rebuilt, never misread."""
    from tgd.schema import SCHEMA_VERSION
    from tgd.stages import get_stage, is_up_to_date

    cfg = load_config(None, [f"run_dir={tmp_path}"])
    stage = get_stage("evaluate")
    m = {"inputs": {"distill": None}, "fingerprint": "x"}
    out = tmp_path / "evaluate"
    out.mkdir()
    for version, config_hash, current in (
            (SCHEMA_VERSION, cfg.section_hash(*stage.sections), True),
            (SCHEMA_VERSION - 1, cfg.section_hash(*stage.sections), False),
            (SCHEMA_VERSION, load_config(None, ["distill.lr=0.5"]).section_hash(*stage.sections), False)):
        (out / "manifest.json").write_text(json.dumps({**m, "schema_version": version, "config_hash": config_hash}))
        assert is_up_to_date(cfg, "evaluate") is current


def test_each_stage_runs_with_its_own_resources(tmp_path, monkeypatch):
    """ensure() hands a stage cfg.for_stage(name): code reading cfg.ray inside it (the graph stage's actor
    pool, the trainers' thread counts) sees that stage's workers."""
    import tgd.stages as stages

    seen = {}

    def fake(name, deps=()):
        return stages.Stage(name, "", deps, ("graph",), lambda c, out: seen.setdefault(name, c.ray) and {})

    registry = {"ingest": fake("ingest"), "graphs": fake("graphs", ("ingest",))}
    monkeypatch.setattr(stages, "_registry", lambda: registry)
    cfg = load_config(None, [f"run_dir={tmp_path}", "ray.stages.graphs.workers=5", "ray.stages.graphs.cpus_per_worker=2"])
    stages.ensure(cfg, "graphs", log=lambda _: None)
    assert (seen["graphs"].num_workers, seen["graphs"].cpus_per_worker) == (5, 2.0)
    assert seen["ingest"].num_workers == 2


def test_partial_teacher_finetune_resumes_only_on_the_same_resources(tmp_path, monkeypatch):
    """DeepSpeed's per-rank checkpoint is cut for its world size: an interrupted teacher-finetune resumes
    on the same workers, and starts over (its partial output wiped) on others; graphs always resumes."""
    import tgd.stages as stages

    calls = []

    def interrupted(c, out):
        calls.append((out.name, (out / "partial").exists()))
        (out / "partial").write_text("x")
        raise KeyboardInterrupt

    registry = {n: stages.Stage(n, "", (), ("graph",), interrupted, resume_needs_same_resources=n == "teacher-finetune")
                for n in ("graphs", "teacher-finetune")}
    monkeypatch.setattr(stages, "_registry", lambda: registry)
    for workers in (2, 2, 4):
        cfg = load_config(None, [f"run_dir={tmp_path}", f"ray.num_workers={workers}"])
        for name in registry:
            with pytest.raises(KeyboardInterrupt):
                stages.ensure(cfg, name, log=lambda _: None)
    assert calls == [("graphs", False), ("teacher-finetune", False),  # first attempt
                     ("graphs", True), ("teacher-finetune", True),  # same resources: both resume
                     ("graphs", True), ("teacher-finetune", False)]  # 4 workers: teacher-finetune starts over


def test_keys_marked_not_to_decide_the_output_leave_the_fingerprint_alone(tmp_path):
    from tests.conftest import make_config

    base = make_config(tmp_path)
    assert make_config(tmp_path, teacher={"max_failures": 3}).section_hash("teacher") == base.section_hash("teacher")
    assert make_config(tmp_path, teacher={"lr": 1e-3}).section_hash("teacher") != base.section_hash("teacher")
