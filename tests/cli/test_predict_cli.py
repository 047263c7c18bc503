"""`tgd predict` through the CLI: one JSONL line per input row in input order (errors as lines,
ids carried), the same predictions as the evaluate path, stdin through the console script, and
the Ray Data batch path (Parquet shards, resumable) on a local Ray."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures.serving_data import NODE_BUDGET, corpus, document, export_package, small_run
from tgd.cli import main


@pytest.fixture(scope="module")
def run_config(tmp_path_factory, graph_builder):
    return small_run(tmp_path_factory.getbasetemp() / "serving-run", graph_builder)


@pytest.fixture(scope="module")
def package(run_config):
    return export_package(run_config, "torchscript")


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_one_line_per_row_errors_in_place(package, tmp_path):
    rows = ['{"id": "a", "text": "The film was wonderful and the cast felt warm."}', "this is not json",
            '{"id": "b", "text": 17}', '{"id": "c"}', '{"id": "d", "text": "   "}',
            '{"id": "e", "text": "' + "dull " * 100 + '"}', '{"id": "f", "text": "The plot was dull and boring."}']
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(package), "--input", str(src), "--output", str(out), "--max-chars", "200"]) == 0
    got = lines(out)
    assert len(got) == len(rows)
    assert [g.get("id") for g in got] == ["a", None, "b", "c", "d", "e", "f"]
    assert [("error" in g) for g in got] == [False, True, True, True, True, True, False]
    assert "JSON" in got[1]["error"] and "string" in got[2]["error"] and "'text'" in got[3]["error"]
    assert got[4]["error"] == "empty text" and "too long" in got[5]["error"]
    assert got[0]["label"] == "pos" and got[6]["label"] == "neg"
    assert abs(sum(got[0]["probabilities"].values()) - 1) < 1e-5


def test_csv_and_parquet_inputs(package, tmp_path):
    texts = [t for t, _ in corpus(6, seed=4)]
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)))
    pq_in = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), pq_in)
    outs = []
    for src in (csv_in, pq_in):
        out = tmp_path / f"{src.suffix[1:]}.jsonl"
        assert main(["predict", str(package), "--input", str(src), "--output", str(out)]) == 0
        outs.append(lines(out))
    assert [r["label"] for r in outs[0]] == [r["label"] for r in outs[1]]
    assert [str(r["id"]) for r in outs[1]] == [str(i) for i in range(len(texts))]


def test_round_trip_matches_evaluate_path(package, run_config, tmp_path, graph_builder):
    """export -> load -> predict gives evaluate's predictions (trainers.student.predict.predict on the
    graph-builder graphs, with the same node budget) on short and long documents."""
    import random

    import torch

    from trainers.student.checkpoint import load_student
    from trainers.student.predict import predict

    rng = random.Random(11)
    texts = [t for t, _ in corpus(10, seed=12)] + [document(rng, k % 2, 20, k % 2 == 0) for k in range(4)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(package), "--input", str(src), "--output", str(out)]) == 0
    got = lines(out)
    model, enc, _ = load_student(run_config.parent / "run" / "distill" / "student.pt")
    datas = [enc.encode(g) for g in graph_builder.build(texts)]
    for d in datas:
        d.y = torch.tensor([-1]); d.t_logits = torch.zeros(1, 2)
    assert max(d.num_nodes for d in datas) > NODE_BUDGET
    pred, _, _ = predict(model, datas, node_budget=NODE_BUDGET)
    assert [r["label"] for r in got] == [enc.labels[p] for p in pred]


def test_stdin_lines_through_console_script(package):
    tgd = str(Path(sys.executable).parent / "tgd")
    text = "The story was charming and the music felt lovely.\n\nThe script was awful and the ending felt lazy.\n"
    done = subprocess.run([tgd, "predict", str(package), "--input", "-"], input=text, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = [json.loads(x) for x in done.stdout.splitlines()]
    assert [g.get("label", g.get("error")) for g in got] == ["pos", "empty text", "neg"]
    assert "3 rows, 1 errors" in done.stderr


def test_ray_data_batch_path_and_resume(package, tmp_path, ray_local):
    texts = [t for t, _ in corpus(30, seed=21)]
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(pa.table({"id": list(range(20)), "text": texts[:19] + [""]}), src / "a.parquet")
    pq.write_table(pa.table({"id": list(range(20, 30)), "text": texts[20:]}), src / "b.parquet")
    out = tmp_path / "out"
    args = ["predict", str(package), "--input", str(src), "--output", str(out), "--ray", "--workers", "2",
            "--cpus-per-worker", "0.5"]
    assert main(args) == 0
    shards = sorted(out.glob("part-*.parquet"))
    assert [s.name for s in shards] == ["part-00000.parquet", "part-00001.parquet"]
    table = pa.concat_tables([pq.read_table(s) for s in shards])
    assert table.column("id").to_pylist() == list(range(30))
    assert table.column("row").to_pylist() == list(range(20)) + list(range(10))
    errors = table.column("error").to_pylist()
    assert errors[19] == "empty text" and sum(e is not None for e in errors) == 1
    ref = tmp_path / "ref.jsonl"
    (tmp_path / "ref-in.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                                                    for i, t in enumerate(texts[:19] + [""] + texts[20:])))
    assert main(["predict", str(package), "--input", str(tmp_path / "ref-in.jsonl"), "--output", str(ref)]) == 0
    single = [{k: v for k, v in r.items() if k != "id"} for r in lines(ref)]
    batch = [json.loads(r) if r else {"error": e} for r, e in zip(table.column("record").to_pylist(), errors)]
    assert batch == single
    # resume: a missing shard is predicted again, an existing one is kept as it is
    kept = shards[0].stat().st_mtime_ns
    shards[1].unlink()
    assert main(args) == 0
    assert shards[1].is_file() and shards[0].stat().st_mtime_ns == kept
