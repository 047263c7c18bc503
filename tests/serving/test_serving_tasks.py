"""Serving the token and pair tasks through the one predictor: `tgd predict` rows in and JSONL out
(one line per row, in order, ids carried, errors as lines), given tokens kept with exactly one tag
each, decomposed == whole-graph prediction for per-node tags, plain lines refused for pairs, and
the exported TorchScript / ONNX packages checked against the PyTorch student.

Students: real ``Student``s with a node head (token) and a pair head, trained for a few dozen
steps on graphs from the real spaCy builder (``tests.fixtures.serving_data.small_task_run``)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from serving.export import load_package
from serving.predictor import Predictor
from tests.fixtures.serving_data import (
    NODE_BUDGET,
    PAIR_LABELS,
    TAG_OF,
    TAGS,
    document,
    export_package,
    pair_corpus,
    small_task_run,
)
from tgd.cli import main
from trainers.student.checkpoint import load_student
from trainers.student.subgraph import decompose


@pytest.fixture(scope="module")
def token_config(tmp_path_factory, graph_builder):
    return small_task_run(tmp_path_factory.getbasetemp() / "serving-token", graph_builder, "token")


@pytest.fixture(scope="module")
def pair_config(tmp_path_factory, graph_builder):
    return small_task_run(tmp_path_factory.getbasetemp() / "serving-pair", graph_builder, "pair")


def student_of(config: Path):
    return load_student(config.parent / "run" / "distill" / "student.pt")


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def predict(pkg: Path, src: Path, out: Path, *extra: str) -> list[dict]:
    assert main(["predict", str(pkg), "--input", str(src), "--output", str(out), *extra]) == 0
    return lines(out)


def long_text(seed: int, punctuation: bool = True) -> str:
    rng = random.Random(seed)
    return document(rng, seed % 2, 14, punctuation)  # 14 sentences, ~150 nodes


# ------------------------------------------------------------------ token
GIVEN = ["New York", "was", "wonderful", ",", "the", "cast", "felt", "dull", "!"]


def test_token_rows_through_the_cli(token_config, tmp_path):
    pkg = export_package(token_config, "onnx")
    rows = [{"id": "a", "text": "The film was wonderful and the cast felt warm."},
            {"id": "b", "tokens": GIVEN},
            "not json",
            {"id": "c", "tokens": "The plot was dull"},
            {"id": "d", "tokens": ["The", "", "plot"]},
            {"id": "e", "tokens": []},
            {"id": "f", "text": "   "},
            {"id": "g", "text": 12},
            {"id": "h"},
            {"id": "i", "tokens": ["The", 3]},
            {"id": "j", "text": long_text(1)}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    got = predict(pkg, src, tmp_path / "out.jsonl")
    assert len(got) == len(rows)
    assert [g.get("id") for g in got] == ["a", "b", None, "c", "d", "e", "f", "g", "h", "i", "j"]
    assert [("error" in g) for g in got] == [False, False, True, True, True, True, True, True, True, True, False]
    assert "JSON" in got[2]["error"] and "list" in got[3]["error"] and "tokens[1]" in got[4]["error"]
    assert got[5]["error"] == "empty tokens list" and got[6]["error"] == "empty text"
    assert "string" in got[7]["error"] and "'text'" in got[8]["error"] and "tokens[1]" in got[9]["error"]
    for g in (got[0], got[1], got[10]):
        assert len(g["tags"]) == len(g["tokens"]) > 0 and set(g["tags"]) <= set(TAGS)
    assert got[1]["tokens"] == GIVEN  # given tokens kept as given, one tag each
    assert got[0]["tokens"] == ["The", "film", "was", "wonderful", "and", "the", "cast", "felt", "warm", "."]
    assert len(got[10]["tokens"]) > NODE_BUDGET  # predicted from parts (the package's node budget)
    # the student learned its tags: most spaCy tokens of the long text get the tag of their word
    gold = [TAG_OF.get(t.lower(), "O") for t in got[10]["tokens"]]
    assert sum(p == g for p, g in zip(got[10]["tags"], gold)) / len(gold) >= 0.8


def test_token_csv_parquet_and_plain_lines_agree(token_config, tmp_path):
    pkg = export_package(token_config, "torchscript")
    texts = ["The story was charming and the music felt lovely.", "The script was awful. The ending felt lazy."]
    csv_in = tmp_path / "in.csv"  # tokens as a JSON array, or whitespace-separated; else the text
    csv_in.write_text('id,text,tokens\n1,,"[""New York"", ""was"", ""wonderful""]"\n2,,The plot was dull\n'
                      f'3,{texts[0]},\n4,"{texts[1]}",\n')
    pq_in = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "text": [None, None, *texts],
                             "tokens": [["New York", "was", "wonderful"], "The plot was dull".split(), None, None]}), pq_in)
    txt_in = tmp_path / "in.txt"
    txt_in.write_text("\n".join(texts) + "\n\n")
    got_csv, got_pq = predict(pkg, csv_in, tmp_path / "c.jsonl"), predict(pkg, pq_in, tmp_path / "p.jsonl")
    got_txt = predict(pkg, txt_in, tmp_path / "t.jsonl")
    drop_id = lambda rs: [{k: v for k, v in r.items() if k != "id"} for r in rs]  # noqa: E731
    assert drop_id(got_csv) == drop_id(got_pq)  # ids: CSV strings, Parquet ints
    assert [r["tokens"] for r in got_csv[:2]] == [["New York", "was", "wonderful"], ["The", "plot", "was", "dull"]]
    assert [str(r["id"]) for r in got_csv] == ["1", "2", "3", "4"]
    assert got_txt[:2] == drop_id(got_csv[2:])
    assert got_txt[2] == {"error": "empty text"} and len(got_txt) == 3
    assert all(len(r["tags"]) == len(r["tokens"]) for r in got_csv + got_txt[:2])


def test_token_decomposed_equals_whole(token_config, tmp_path, graph_builder):
    """A long multi-sentence input (with and without sentence punctuation) predicted from parts
    with a small node budget gives the whole graph's per-node tags, in node order: through the
    PyTorch student and through the CLI on a package."""
    student, enc, _ = student_of(token_config)
    texts = [long_text(3), long_text(4, punctuation=False), "A short one."]
    g = graph_builder.build(texts[:1])[0]
    assert len(decompose(enc.encode(g), 12, 2)) > 5  # really cut into many parts
    whole = Predictor(student, enc, graph_builder, node_budget=None).predict_logits_rows(texts)
    parts = Predictor(student, enc, graph_builder, node_budget=12).predict_logits_rows(texts)
    assert [w.shape[0] for w in whole] == [graph_builder.build([t])[0]["num_nodes"] for t in texts]
    for w, p in zip(whole, parts):
        torch.testing.assert_close(p, w, atol=1e-5, rtol=1e-5)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    pkg = export_package(token_config, "torchscript")
    by_parts = predict(pkg, src, tmp_path / "parts.jsonl", "--node-budget", "12")
    by_whole = predict(pkg, src, tmp_path / "whole.jsonl", "--node-budget", "0")
    assert by_parts == by_whole and [r["id"] for r in by_parts] == [0, 1, 2]
    assert [len(r["tags"]) for r in by_parts] == [w.shape[0] for w in whole]
    assert [r["tags"] for r in by_parts] == [[enc.labels[i] for i in w.argmax(-1)] for w in whole]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_token_export_matches_pytorch(fmt, token_config, graph_builder):
    student, enc, _ = student_of(token_config)
    inputs = [long_text(5), {"tokens": GIVEN}, "The cast was brilliant.", long_text(6, punctuation=False)]
    reference = Predictor(student, enc, graph_builder, node_budget=NODE_BUDGET).predict_logits(inputs, batch_size=2)
    pkg = export_package(token_config, fmt)
    meta = json.loads((pkg / "package.json").read_text())
    assert meta["task"] == "token" and meta["head_inputs"] == ["h"] and meta["labels"] == TAGS
    exported = load_package(pkg)
    assert exported.node_budget == NODE_BUDGET
    got = exported.predict_logits(inputs, batch_size=2)  # per-node rows; the long inputs from parts
    assert got.shape == reference.shape and got.shape[0] > 2 * NODE_BUDGET
    torch.testing.assert_close(got, reference, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ pair
def test_pair_rows_through_the_cli(pair_config, tmp_path):
    pkg = export_package(pair_config, "onnx")
    pairs = pair_corpus(6, seed=7)
    rows = [{"id": i, "text": a, "text_b": b} for i, (a, b, _) in enumerate(pairs)]
    rows += [{"id": "x1", "text": "The film was great."}, {"id": "x2", "text": "The film was great.", "text_b": " "},
             {"id": "x3", "text": "", "text_b": "The plot was dull."}, {"id": "x4", "text": "Fine.", "text_b": ["a"]},
             {"id": "x5", "text": long_text(8), "text_b": long_text(9)}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = predict(pkg, src, tmp_path / "out.jsonl")
    assert [g.get("id") for g in got] == [r["id"] for r in rows]
    assert [("error" in g) for g in got] == [False] * 6 + [True] * 4 + [False]
    assert "text_b" in got[6]["error"] and got[7]["error"] == "empty text_b" and got[8]["error"] == "empty text"
    assert "text_b must be a string" in got[9]["error"]
    for g in got[:6] + got[10:]:
        assert set(g) == {"id", "similarity", "label", "probabilities"} and -1.0 <= g["similarity"] <= 1.0
        assert g["label"] in PAIR_LABELS and abs(sum(g["probabilities"].values()) - 1) < 1e-5
    right = sum(g["label"] == PAIR_LABELS[same] for g, (_, _, same) in zip(got, pairs))
    assert right >= 5  # the student learned same / different sentiment
    # CSV: the same rows, the same records
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("id,text,text_b\n" + "".join(f'{i},"{a}","{b}"\n' for i, (a, b, _) in enumerate(pairs)))
    got_csv = predict(pkg, csv_in, tmp_path / "csv.jsonl")
    assert [{k: v for k, v in r.items() if k != "id"} for r in got_csv] == \
        [{k: v for k, v in r.items() if k != "id"} for r in got[:6]]


def test_pair_plain_lines_refused(pair_config, tmp_path, capsys):
    pkg = export_package(pair_config, "onnx")
    src = tmp_path / "in.txt"
    src.write_text("The film was great.\n")
    assert main(["predict", str(pkg), "--input", str(src), "--output", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "'pair'" in err and "text_b" in err and "plain lines" in err
    assert not (tmp_path / "out.jsonl").exists()  # refused before the output file is created


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_pair_export_matches_pytorch_and_parts_match_whole(fmt, pair_config, graph_builder):
    student, enc, _ = student_of(pair_config)
    rows = [{"text": a, "text_b": b} for a, b, _ in pair_corpus(5, seed=9)]
    rows.append({"text": long_text(10), "text_b": long_text(11, punctuation=False)})  # over the budget: parts
    whole = Predictor(student, enc, graph_builder, node_budget=None).predict_logits(rows, batch_size=4)
    reference = Predictor(student, enc, graph_builder, node_budget=NODE_BUDGET).predict_logits(rows, batch_size=4)
    assert reference.shape == (6, 1 + len(PAIR_LABELS))
    torch.testing.assert_close(reference, whole, atol=1e-5, rtol=1e-5)
    pkg = export_package(pair_config, fmt)
    assert json.loads((pkg / "package.json").read_text())["head_inputs"] == ["h", "batch", "graphs", "side"]
    torch.testing.assert_close(load_package(pkg).predict_logits(rows, batch_size=4), reference, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ renamed columns and Ray Data
def renamed_rows(task: str) -> tuple[list[dict], dict[str, str], list[bool]]:
    """Rows of ``task`` in the canonical fields (``id``, ``text``, ``tokens`` / ``text_b``), the
    renamed column of each field (as a user's file might name them) and which rows are errors."""
    if task == "token":
        rows = [{"id": "t0", "text": "The film was wonderful and the cast felt warm.", "tokens": None},
                {"id": "t1", "text": None, "tokens": GIVEN},
                {"id": "t2", "text": None, "tokens": []},
                {"id": "t3", "text": None, "tokens": None},
                {"id": "t4", "text": long_text(12), "tokens": None},
                {"id": "t5", "text": "   ", "tokens": None},
                {"id": "t6", "text": None, "tokens": ["The", "plot", "was", "dull"]}]
        return rows, {"id": "key", "text": "body", "tokens": "words"}, [False, False, True, True, False, True, False]
    pairs = pair_corpus(4, seed=13)
    rows = [{"id": f"p{i}", "text": a, "text_b": b} for i, (a, b, _) in enumerate(pairs)]
    rows += [{"id": "p4", "text": "The film was great.", "text_b": ""}, {"id": "p5", "text": None, "text_b": "Dull."},
             {"id": "p6", "text": long_text(14), "text_b": "The cast was brilliant."}]
    return rows, {"id": "key", "text": "text_a", "text_b": "second"}, [False] * 4 + [True, True, False]


def column_flags(names: dict[str, str]) -> list[str]:
    flag = {"id": "--id-column", "text": "--text-column", "tokens": "--tokens-column", "text_b": "--text-b-column"}
    return [x for field, col in names.items() for x in (flag[field], col)]


def renamed_table(rows: list[dict], names: dict[str, str]) -> pa.Table:
    return pa.table({names[k]: [r[k] for r in rows] for k in names})


@pytest.mark.parametrize("task", ["token", "pair"])
def test_renamed_columns_through_the_cli(task, token_config, pair_config, tmp_path, capsys):
    """--text-column / --tokens-column / --text-b-column / --id-column read a file whose columns have
    other names exactly as the canonical names are read (JSONL and Parquet)."""
    pkg = export_package(token_config if task == "token" else pair_config, "onnx")
    rows, names, bad = renamed_rows(task)
    canonical = tmp_path / "canonical.jsonl"
    canonical.write_text("".join(json.dumps(r) + "\n" for r in rows))
    want = predict(pkg, canonical, tmp_path / "want.jsonl")
    assert [r["id"] for r in want] == [r["id"] for r in rows] and [("error" in r) for r in want] == bad
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text("".join(json.dumps({names[k]: v for k, v in r.items()}) + "\n" for r in rows))
    assert predict(pkg, renamed, tmp_path / "got.jsonl", *column_flags(names)) == want
    pq.write_table(renamed_table(rows, names), tmp_path / "renamed.parquet")
    assert predict(pkg, tmp_path / "renamed.parquet", tmp_path / "got-pq.jsonl", *column_flags(names)) == want
    # without the flags the renamed file has none of the task's columns: refused in one line, nothing written
    assert main(["predict", str(pkg), "--input", str(tmp_path / "renamed.parquet"), "--output",
                 str(tmp_path / "none.jsonl")]) == 2
    assert not (tmp_path / "none.jsonl").exists() and "--text-column" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["token", "pair"])
def test_ray_data_batch_path(task, token_config, pair_config, tmp_path, ray_local):
    """`tgd predict --ray` on a token and a pair package (renamed columns, two Parquet files): one
    output row per input row in input order with its id, errors as rows, records equal to the
    single-machine path's."""
    pkg = export_package(token_config if task == "token" else pair_config, "torchscript")
    rows, names, bad = renamed_rows(task)
    flags = column_flags(names)
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(renamed_table(rows[:4], names), src / "a.parquet")
    pq.write_table(renamed_table(rows[4:], names), src / "b.parquet")
    pq.write_table(renamed_table(rows, names), tmp_path / "all.parquet")
    single = predict(pkg, tmp_path / "all.parquet", tmp_path / "single.jsonl", *flags)
    out = tmp_path / "out"
    assert main(["predict", str(pkg), "--input", str(src), "--output", str(out), "--ray", "--workers", "2",
                 "--cpus-per-worker", "0.5", *flags]) == 0
    shards = sorted(out.glob("part-*.parquet"))
    assert [s.name for s in shards] == ["part-00000.parquet", "part-00001.parquet"]
    table = pa.concat_tables([pq.read_table(s) for s in shards])
    assert table.column("id").to_pylist() == [r["id"] for r in rows]
    assert table.column("row").to_pylist() == [0, 1, 2, 3, 0, 1, 2]
    errors = table.column("error").to_pylist()
    assert [e is not None for e in errors] == bad
    batch = [json.loads(r) if r else {"error": e} for r, e in zip(table.column("record").to_pylist(), errors)]
    assert batch == [{k: v for k, v in r.items() if k != "id"} for r in single]
    key = "tags" if task == "token" else "similarity"
    assert sum(key in r for r in batch) == bad.count(False)
