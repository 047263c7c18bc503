"""The graph stage on a real local Ray with the real spaCy model: schema, counts, skip, resume."""
import json

import pyarrow.parquet as pq
import pytest

from tests.conftest import make_config
from tgd.schema import DOCUMENTS, GRAPHS, VOCAB, read_table
from tgd.stages import ensure, is_up_to_date


@pytest.fixture
def small_corpus(tmp_path):
    src = tmp_path / "reviews.jsonl"
    rows = [{"text": f"Review {i}: the film was {'great' if i % 2 else 'dull'} and the actors were fine.",
             "label": "fresh" if i % 2 else "rotten"} for i in range(60)]
    rows.append({"text": "   ", "label": "fresh"})
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src


def _cfg(tmp_path, src, **graph):
    return make_config(tmp_path, data={"source": str(src), "shard_words": 120}, graph=graph)


def test_graph_stage_schema_counts_vocab(tmp_path, small_corpus, ray_local):
    cfg = _cfg(tmp_path, small_corpus)
    m = ensure(cfg, "graphs", log=lambda _: None)
    ingest_m = json.loads((tmp_path / "run/ingest/manifest.json").read_text())
    assert ingest_m["input_rows"] == 61 and ingest_m["accepted_rows"] == 60 and ingest_m["rejected_rows"] == 1
    assert m["input_rows"] == m["output_rows"] == 60 and m["shards"] == ingest_m["shards"] > 2
    graphs = read_table(tmp_path / "run/graphs", GRAPHS)
    assert graphs.schema.equals(GRAPHS, check_metadata=False)
    docs = read_table(tmp_path / "run/ingest/documents", DOCUMENTS)
    assert sorted(graphs.column("id").to_pylist()) == sorted(docs.column("id").to_pylist())
    g = graphs.column("graph").to_pylist()[0]
    assert g["num_nodes"] == len(g["token"]) > 10 and len(g["dep_src"]) == g["num_nodes"] - 1
    # vocabulary counts come from the training split only
    vocab = pq.read_table(tmp_path / "run/graphs/vocab.parquet")
    assert vocab.schema.equals(VOCAB, check_metadata=False)
    train = [x for x in graphs.to_pylist() if x["split"] == "train"]
    assert dict(zip(vocab.column("token").to_pylist(), vocab.column("count").to_pylist()))["the"] == 2 * len(train)
    assert m["nodes"]["max"] >= m["nodes"]["median"] > 0 and m["bytes_per_document"] > 0


def test_rerun_skips_and_config_change_rebuilds(tmp_path, small_corpus, ray_local):
    cfg = _cfg(tmp_path, small_corpus)
    ensure(cfg, "graphs", log=lambda _: None)
    shard = tmp_path / "run/graphs/part-00000.parquet"
    before = shard.stat().st_mtime_ns
    logs = []
    ensure(cfg, "graphs", log=logs.append)
    assert shard.stat().st_mtime_ns == before
    assert any("ingest] up to date" in x for x in logs) and any("graphs] up to date" in x for x in logs)
    cfg2 = _cfg(tmp_path, small_corpus, window=4)
    assert is_up_to_date(cfg2, "ingest") and not is_up_to_date(cfg2, "graphs")
    ensure(cfg2, "graphs", log=lambda _: None)
    assert shard.stat().st_mtime_ns != before


def test_resume_after_interruption_gives_identical_output(tmp_path, small_corpus, ray_local):
    cfg = _cfg(tmp_path, small_corpus)
    ensure(cfg, "graphs", log=lambda _: None)
    out = tmp_path / "run/graphs"
    full = read_table(out, GRAPHS)
    # What a run killed midway leaves: an attempt record, some finished shards, a half-written
    # temporary file, no manifest.
    attempt = json.loads((out / "manifest.json").read_text())
    attempt = {k: attempt[k] for k in ("schema_version", "config_hash", "inputs")}
    (out / "manifest.json").unlink()
    (out / "_attempt.json").write_text(json.dumps(attempt))
    shards = sorted(out.glob("part-*.parquet"))
    kept = {s.name: s.stat().st_mtime_ns for s in shards[: len(shards) // 2]}
    for s in shards[len(shards) // 2:]:
        s.unlink()
    (out / (shards[-1].name + ".tmp")).write_bytes(b"partial")
    logs = []
    m = ensure(cfg, "graphs", log=logs.append)
    assert any("resuming" in x for x in logs)
    assert m["shards_built_this_run"] == len(shards) - len(kept)
    assert {s: (out / s).stat().st_mtime_ns for s in kept} == kept  # finished shards not redone
    assert read_table(out, GRAPHS).equals(full)
