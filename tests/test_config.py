import pytest

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
