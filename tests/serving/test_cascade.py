"""The cascade through the CLI: `tgd export --with-teacher` packages the run's fine-tuned teacher
beside the student (every file checksummed), and `tgd predict --defer-below P` answers exactly the
rows whose student confidence (largest class probability) is below P with the teacher, the others
with the student, each record saying which (``answered_by``); error rows stay error records.
Refusals: a tampered teacher file, --defer-below on a package without a teacher or outside [0, 1],
--with-teacher on a run without a fine-tuned teacher or of another task.

The teacher is a tiny random BERT with the student's labels (``tests.fixtures.serving_data.cascade_run``):
what is checked is which rows are deferred and that a deferred row gets the packaged teacher's own
answer, not the teacher's accuracy. (`tgd serve --defer-below` is checked in test_http_serve.py.)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serving.teacher import TeacherPredictor
from tests.fixtures.serving_data import LABELS, cascade_run, export_with_teacher, mixed_texts, small_run, small_task_run
from tgd.cli import main


@pytest.fixture(scope="module")
def package(tmp_path_factory, graph_builder) -> Path:
    return export_with_teacher(cascade_run(tmp_path_factory.getbasetemp() / "serving-cascade", graph_builder))


def cascade_rows() -> list[dict]:
    rows = [{"id": i, "text": t} for i, t in enumerate(mixed_texts(24, seed=51))]
    return rows[:5] + [{"id": "empty", "text": " "}] + rows[5:]


def predict(package: Path, rows: list, tmp_path: Path, *extra: str) -> list[dict]:
    src, out = tmp_path / "rows.jsonl", tmp_path / f"out{'-'.join(extra)}.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["predict", str(package), "--input", str(src), "--output", str(out), *extra]) == 0
    return [json.loads(x) for x in out.read_text().splitlines()]


def error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_export_packages_the_teacher_with_checksums(package):
    manifest = json.loads((package / "manifest.json").read_text())["files"]
    teacher_files = sorted(n for n in manifest if n.startswith("teacher/"))
    assert "teacher/config.json" in teacher_files and "teacher/model.safetensors" in teacher_files
    assert sorted(f"teacher/{p.name}" for p in (package / "teacher").iterdir()) == teacher_files
    meta = json.loads((package / "package.json").read_text())
    assert meta["teacher_package"]["labels"] == LABELS and meta["teacher_package"]["dir"] == "teacher"


def test_defers_exactly_the_rows_below_the_threshold(package, tmp_path):
    rows = cascade_rows()
    student = predict(package, rows, tmp_path)
    conf = [max(r["probabilities"].values()) if "error" not in r else None for r in student]
    c = sorted(x for x in conf if x is not None)
    k = max(range(len(c) // 4, 3 * len(c) // 4), key=lambda i: c[i + 1] - c[i])  # the widest gap near the median
    p = (c[k] + c[k + 1]) / 2
    cascade = predict(package, rows, tmp_path, "--defer-below", str(p))
    assert len(cascade) == len(rows) and [r.get("id") for r in cascade] == [r["id"] for r in rows]
    teacher = TeacherPredictor(package / "teacher", LABELS)
    deferred = [i for i, c in enumerate(conf) if c is not None and c < p]
    assert 0 < len(deferred) < len(rows) - 1  # both sides of the threshold are exercised
    want_teacher = dict(zip(deferred, teacher.predict_records([rows[i] for i in deferred])))
    for i, (rec, c) in enumerate(zip(cascade, conf)):
        if c is None:  # the bad row: the same error record, no answer
            assert rec == student[i] and "answered_by" not in rec
        elif c < p:
            assert rec == want_teacher[i] | {"answered_by": "teacher"}
        else:
            assert rec == student[i] | {"answered_by": "student"}
    # the teacher's answers are its own, not the student's copied
    assert any(cascade[i]["probabilities"] != student[i]["probabilities"] for i in deferred)
    # P = 0 never defers: the student's records, marked
    never = predict(package, rows, tmp_path, "--defer-below", "0")
    assert never == [r if "error" in r else r | {"answered_by": "student"} for r in student]


def test_tampered_teacher_is_refused(package, tmp_path, capsys):
    bad = tmp_path / "tampered"
    shutil.copytree(package, bad)
    weights = bad / "teacher" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "The film was warm."}) + "\n")
    assert main(["predict", str(bad), "--input", str(src), "--defer-below", "0.9"]) == 2
    line = error_line(capsys)
    assert "teacher/model.safetensors" in line and "sha256" in line


def test_defer_below_needs_a_teacher_and_a_threshold_in_range(package, tmp_path_factory, graph_builder, tmp_path,
                                                             capsys):
    from tests.fixtures.serving_data import export_package

    plain = export_package(small_run(tmp_path_factory.getbasetemp() / "serving-run", graph_builder), "torchscript")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "The film was warm."}) + "\n")
    assert main(["predict", str(plain), "--input", str(src), "--defer-below", "0.9"]) == 2
    assert "carries no teacher" in error_line(capsys)
    assert main(["predict", str(package), "--input", str(src), "--defer-below", "1.5"]) == 2
    assert "between 0 and 1" in error_line(capsys)


def test_with_teacher_refused_without_a_finetuned_teacher_or_for_other_tasks(tmp_path_factory, graph_builder,
                                                                             tmp_path, capsys):
    base = tmp_path_factory.getbasetemp()
    for config, reason in ((small_run(base / "serving-run", graph_builder), "no fine-tuned teacher"),
                           (small_task_run(base / "serving-token", graph_builder, "token"), "classification")):
        out = tmp_path / f"pkg-{config.parent.name}"
        assert main(["export", str(config), "--format", "torchscript", "--out", str(out), "--with-teacher"]) == 2
        assert reason in error_line(capsys)
        assert not out.exists()


def test_package_carries_evaluates_threshold_as_the_default(package, tmp_path_factory, graph_builder, tmp_path):
    """`tgd export --with-teacher` after `tgd evaluate`: package.json carries the threshold evaluate chose
    (its cascade.json), and `tgd predict` without --defer-below cascades at it."""
    rows = cascade_rows()
    conf = sorted(max(r["probabilities"].values()) for r in predict(package, rows, tmp_path, "--defer-below", "0")
                  if "error" not in r)
    p = (conf[len(conf) // 2 - 1] + conf[len(conf) // 2]) / 2
    config = cascade_run(tmp_path_factory.getbasetemp() / "serving-cascade", graph_builder)
    run = tmp_path / "run"  # a copy of the run, so the session's shared package keeps no threshold
    shutil.copytree(config.parent / "run", run)
    (run / "evaluate").mkdir(exist_ok=True)
    chosen = {"threshold": p, "why": "test", "goal": {"within_points": 0.5, "max_deferred": 0.3},
              "validation": {"deferred": 0.5}, "test": {"deferred": 0.5}}
    (run / "evaluate" / "cascade.json").write_text(json.dumps(chosen))
    out = tmp_path / "pkg"
    assert main(["export", str(config), "--set", f"run_dir={run}", "--format", "torchscript", "--out", str(out),
                 "--with-teacher"]) == 0
    meta = json.loads((out / "package.json").read_text())["teacher_package"]
    assert meta["defer_below"] == p and meta["cascade"]["why"] == "test"
    default = predict(out, rows, tmp_path)
    assert default == predict(out, rows, tmp_path, "--defer-below", str(p))
    assert {r.get("answered_by") for r in default} == {"student", "teacher", None}  # None: the bad row


def test_ray_batch_path_cascades_like_the_single_machine_path(package, tmp_path, ray_local):
    """`tgd predict --ray --defer-below P`: every actor defers like `tgd predict --defer-below P`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [r for r in cascade_rows() if r["text"].strip()]
    conf = sorted(max(r["probabilities"].values()) for r in predict(package, rows, tmp_path, "--defer-below", "0"))
    p = (conf[len(conf) // 2 - 1] + conf[len(conf) // 2]) / 2
    single = predict(package, rows, tmp_path, "--defer-below", str(p))
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [str(r["id"]) for r in rows], "text": [r["text"] for r in rows]}), src)
    out = tmp_path / "out"
    assert main(["predict", str(package), "--input", str(src), "--output", str(out), "--ray", "--workers", "2",
                 "--cpus-per-worker", "0.5", "--defer-below", str(p)]) == 0
    table = pa.concat_tables([pq.read_table(s) for s in sorted(out.glob("part-*.parquet"))])
    batch = [json.loads(r) for r in table.column("record").to_pylist()]
    assert [b["answered_by"] for b in batch] == [r["answered_by"] for r in single]
    assert {b["answered_by"] for b in batch} == {"student", "teacher"}
    assert [b["label"] for b in batch] == [r["label"] for r in single]
