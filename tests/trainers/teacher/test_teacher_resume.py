"""teacher-logits resumes after an interruption without redoing finished document batches.

The driver of `tgd teacher-logits` is SIGKILLed for real (its process group: the local Ray it
started, the Ray Train workers) once the first part file is written and before the stage finishes;
the same command is then re-run. Afterwards every accepted document is in the output exactly once,
the part files written before the kill are untouched, and every value equals a clean uninterrupted
run's. A part file cut short (and a ``*.tmp`` leftover) is deleted and its documents redone.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import make_config
from tests.fixtures.driver_process import kill_driver, run_to_end, start_tgd, wait_for
from tests.fixtures.teacher_fixtures import review_corpus, tiny_bert, tiny_tokenizer
from tgd.schema import DOCUMENTS, TEACHER, read_table

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]
LABELS = ["fresh", "rotten"]
RESUMED = re.compile(r"\[teacher-logits\] (\d+) documents already done \((\d+) part files of earlier attempts kept\), "
                     r"(\d+) to run")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _slow_bert(path: Path) -> Path:
    """A random 4-layer 384-wide BERT: slow enough on one CPU thread (~100-200 documents/s) that the
    driver can be killed between the first part file (256 documents of a worker) and the end of the stage."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tok = tiny_tokenizer(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=384, num_hidden_layers=4, num_attention_heads=6,
                     intermediate_size=1536, max_position_embeddings=64, num_labels=len(LABELS),
                     id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    BertForSequenceClassification(cfg).save_pretrained(str(path))
    return path


def _alive(family: list) -> list:
    import psutil

    alive = []
    for p in family:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def _rows_by_id(out_dir: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_table(out_dir, TEACHER).to_pylist()}


def _same_outputs(got: dict, ref: dict) -> None:
    assert got["num_windows"] == ref["num_windows"] and got["truncated"] == ref["truncated"]
    assert got["split"] == ref["split"] and got["node_aligned"] == ref["node_aligned"]
    assert np.abs(np.asarray(got["logits"]) - np.asarray(ref["logits"])).max() < 1e-4
    assert np.abs(np.asarray(got["node_states"], np.float32) - np.asarray(ref["node_states"], np.float32)).max() < 2e-3


def _input_ids(run: Path) -> list[str]:
    dirs = [run / "ingest" / "documents", run / "transfer" / "documents"]
    return [i for d in dirs if d.is_dir() for i in read_table(d, DOCUMENTS).column("id").to_pylist()]


# ---------------------------------------------------------------- a killed driver, re-run
def test_killed_driver_resumes_teacher_logits_without_redoing_finished_parts(ray_local, tmp_path):
    from tgd.config import load_config
    from tgd.stages import ensure

    run, out = tmp_path / "run", tmp_path / "run" / "teacher-logits"
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "run_dir": str(run),
        "data": {"source": str(review_corpus(tmp_path / "reviews.jsonl", n=800)), "labels": LABELS,
                 "split_fractions": [0.6, 0.2, 0.2]},
        "ray": {"num_workers": 2},
        "transfer": {"copies": 0},
        "teacher": {"model": str(_slow_bert(tmp_path / "teacher")), "finetune": False, "parallel": "replicate",
                    "max_length": 48, "stride": 8, "max_windows": 4, "eval_batch_size": 16, "state_dim": 8},
    }))
    logs = [tmp_path / f"tgd-{i}.log" for i in range(2)]

    # 1. Kill the driver (and the Ray it started) once a part file exists, before the stage ends.
    proc = start_tgd(["teacher-logits", str(config)], logs[0])
    try:
        wait_for(lambda: any(out.glob("part-*.parquet")) or proc.poll() is not None, "the first part file")
    finally:
        family = kill_driver(proc)
    assert not _alive(family)  # nothing of the first run is left
    assert not (out / "manifest.json").exists(), "the stage finished before the kill:\n" + logs[0].read_text()[-3000:]
    before = {f.name: _sha(f) for f in out.glob("part-*.parquet")}
    done_before = {i for name in before for i in pq.read_table(out / name, columns=["id"]).column("id").to_pylist()}
    accepted = json.loads((run / "ingest" / "manifest.json").read_text())["accepted_rows"]
    assert accepted == 800 and 0 < len(done_before) < accepted

    # 2. The same command again: it resumes, runs only the rest and writes them as a new attempt.
    t0 = time.time()
    text = run_to_end(["teacher-logits", str(config)], logs[1])
    rerun_s = time.time() - t0
    assert "[teacher-logits] running (resuming)" in text, text[-3000:]
    found = RESUMED.search(text)
    assert found, text[-3000:]
    resumed, kept, todo = map(int, found.groups())
    assert (resumed, kept, todo) == (len(done_before), len(before), accepted - len(done_before))
    m = json.loads((out / "manifest.json").read_text())
    assert m["input_rows"] == m["output_rows"] == accepted and m["resumed_rows"] == resumed and m["attempt"] == 1
    assert sum(w["rows"] for w in m["workers"]) == todo  # the workers ran only what was missing
    table = read_table(out, TEACHER)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == accepted and set(ids) == set(_input_ids(run))  # every document exactly once
    assert {f.name: _sha(f) for f in out.glob("part-a000-*.parquet")} == before  # finished parts untouched
    new = sorted(f.name for f in out.glob("part-*.parquet") if f.name not in before)
    assert new and all(n.startswith("part-a001-") for n in new)
    assert sum(pq.read_metadata(out / n).num_rows for n in new) == todo
    assert not list(out.glob("*.tmp")) and not (out / "_ray").exists()

    # 3. A clean uninterrupted run of the same stage (forced, in this process): the same values.
    resumed_rows = _rows_by_id(out)
    t0 = time.time()
    clean_m = ensure(load_config(config), "teacher-logits", force=True, log=lambda _: None)
    clean_s = time.time() - t0
    assert clean_m["resumed_rows"] == 0 and clean_m["output_rows"] == accepted
    clean = _rows_by_id(out)
    assert set(clean) == set(resumed_rows)
    for i in clean:
        _same_outputs(resumed_rows[i], clean[i])
    print(f"killed after {len(done_before)} of {accepted} documents ({len(before)} part files); re-run ran {todo} "
          f"in {rerun_s:.1f}s; a clean run took {clean_s:.1f}s")


# ---------------------------------------------------------------- a damaged part file
def test_unreadable_part_file_is_deleted_and_its_documents_redone(ray_local, tmp_path, capsys):
    from tgd.stages import _wanted, ensure, get_stage

    model = tiny_bert(tmp_path / "teacher", labels=LABELS)
    cfg = make_config(tmp_path, data={"source": str(review_corpus(tmp_path / "reviews.jsonl")), "labels": LABELS,
                                      "split_fractions": [0.6, 0.2, 0.2], "shard_words": 150},
                      teacher={"model": str(model), "finetune": False, "max_length": 24, "stride": 4,
                               "max_windows": 8, "eval_batch_size": 5, "state_dim": 8},
                      transfer={"copies": 1}, ray={"num_workers": 2})
    out = tmp_path / "run" / "teacher-logits"
    first = ensure(cfg, "teacher-logits", log=lambda _: None)
    copies = json.loads((tmp_path / "run" / "transfer" / "manifest.json").read_text())["output_rows"]
    assert copies > 0 and first["input_rows"] == first["output_rows"] == 47 + copies
    ref = _rows_by_id(out)
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 2  # one per worker (fewer than 256 documents each)

    # An interrupted attempt, as the stage runner leaves it: no manifest, the attempt marker, one
    # part file cut short on disk and a write that never got renamed.
    (out / "manifest.json").unlink()
    (out / "_attempt.json").write_text(json.dumps(_wanted(cfg, get_stage("teacher-logits"))))
    cut, intact = parts
    lost = pq.read_metadata(cut).num_rows
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    (out / "part-a000-r000-00001.parquet.tmp").write_bytes(b"PAR1 half a file")
    intact_sha = _sha(intact)
    capsys.readouterr()

    logs: list[str] = []
    m = ensure(cfg, "teacher-logits", log=logs.append)
    text = capsys.readouterr().out
    assert any("running (resuming)" in line for line in logs), logs
    assert f"[teacher-logits] {cut.name} cannot be read" in text, text
    found = RESUMED.search(text)
    assert found and tuple(map(int, found.groups())) == (first["output_rows"] - lost, 1, lost), text
    assert m["input_rows"] == m["output_rows"] == 47 + copies and m["resumed_rows"] == first["output_rows"] - lost
    ids = read_table(out, TEACHER).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == m["input_rows"] and set(ids) == set(_input_ids(tmp_path / "run"))
    assert not cut.exists() and _sha(intact) == intact_sha and not list(out.glob("*.tmp"))
    assert all(f.name.startswith("part-a001-") for f in out.glob("part-*.parquet") if f != intact)
    got = _rows_by_id(out)
    for i in ref:
        _same_outputs(got[i], ref[i])

    # Killed after the last part file but before the manifest: nothing left to run, no workers started.
    (out / "manifest.json").unlink()
    (out / "_attempt.json").write_text(json.dumps(_wanted(cfg, get_stage("teacher-logits"))))
    capsys.readouterr()
    m2 = ensure(cfg, "teacher-logits", log=lambda _: None)
    found = RESUMED.search(capsys.readouterr().out)
    assert found and int(found.group(1)) == m["output_rows"] and int(found.group(3)) == 0
    assert m2["output_rows"] == m["output_rows"] and m2["workers"] == [] and m2["parallel"] == "none"
