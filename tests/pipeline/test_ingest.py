"""Ingest: every input row is accepted or rejected with its reason; malformed inputs fail clearly."""
import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import ingest
from pipeline.readers import InputError
from tests.conftest import make_config
from tgd.schema import DOCUMENTS, REJECTS, read_table


def run_ingest(tmp_path, **data):
    cfg = make_config(tmp_path, data=data)
    out = tmp_path / "run" / "ingest"
    out.mkdir(parents=True, exist_ok=True)
    result = ingest.run(cfg, out)
    return result, read_table(out / "documents", DOCUMENTS), pq.read_table(out / "rejects.parquet")


def test_each_bad_row_kind_is_rejected_with_reason(tmp_path):
    good = [{"text": f"good review number {i}", "label": "pos" if i % 2 else "neg"} for i in range(6)]
    lines = [json.dumps(r).encode() for r in good]
    bad = [
        (b'{"text": "", "label": "pos"}', "empty text"),
        (b'{"text": "   \\t ", "label": "pos"}', "empty text"),
        (b'{"text": 42, "label": "pos"}', "text is not text"),
        (b'{"label": "pos"}', "missing text"),
        (b'{"text": "no label here"}', "missing label"),
        (b'{"text": "odd label", "label": "meh"}', "unknown label"),
        (b'{"text": "' + b"x" * 300 + b'", "label": "pos"}', "text too long"),
        (b'{"text": "bad \xff\xfe bytes", "label": "pos"}', "undecodable bytes"),
        (b'{"text": "broken json", "label": ', "invalid JSON"),
        (b'["a", "list"]', "not a JSON object"),
        (b'{"id": "u1", "text": "first", "label": "pos"}', None),
        (b'{"id": "u1", "text": "second with same id", "label": "neg"}', "duplicate id"),
        (lines[0], "duplicate document"),
        (b'{"text": "weird split", "label": "pos", "split": "holdout"}', "unknown split"),
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines + [b for b, _ in bad]) + b"\n")
    result, docs, rejects = run_ingest(tmp_path, source=str(src), labels=["pos", "neg"], max_chars=200)

    expected_rejects = [(len(lines) + i, reason) for i, (_, reason) in enumerate(bad) if reason]
    got = sorted(zip(rejects.column("row").to_pylist(), rejects.column("reason").to_pylist()))
    assert [r for r, _ in got] == [r for r, _ in expected_rejects]
    for (_, reason), (_, want) in zip(got, expected_rejects):
        assert reason.startswith(want), (reason, want)
    assert rejects.schema.equals(REJECTS, check_metadata=False)
    assert result["input_rows"] == len(lines) + len(bad) == result["accepted_rows"] + result["rejected_rows"]
    assert docs.num_rows == result["accepted_rows"] == 7
    # reject ids: user id when given, else the row number; values keep the offending text
    by_row = {r["row"]: r for r in rejects.to_pylist()}
    dup = by_row[len(lines) + 11]
    assert dup["id"] == "u1" and "second with same id" in dup["values"]
    assert by_row[len(lines)]["id"] == str(len(lines))
    assert "bad" in by_row[len(lines) + 7]["values"]


def test_ids_and_splits_are_stable(tmp_path):
    rows = [{"text": f"document {i}", "label": "a", **({"split": "test"} if i == 0 else {})} for i in range(200)]
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    _, docs1, _ = run_ingest(tmp_path / "a", source=str(src))
    _, docs2, _ = run_ingest(tmp_path / "b", source=str(src))
    assert docs1.equals(docs2)
    splits = docs1.column("split").to_pylist()
    assert splits[0] == "test"  # user split respected
    assert {"train", "validation", "test"} == set(splits) and 120 < splits.count("train") < 190
    assert len(set(docs1.column("id").to_pylist())) == 200


def test_token_task_from_conll(tmp_path):
    src = tmp_path / "ner.conll"
    src.write_text("-DOCSTART- O\n\nJohn B-PER\nlives O\nin O\nParis B-LOC\n\nbroken\n\nHi O\n")
    result, docs, rejects = run_ingest(tmp_path, source=str(src), task="token")
    assert docs.column("tokens").to_pylist() == [["John", "lives", "in", "Paris"], ["Hi"]]
    assert docs.column("tags").to_pylist()[0] == ["B-PER", "O", "O", "B-LOC"]
    assert docs.column("text").to_pylist()[0] == "John lives in Paris"
    assert rejects.column("reason").to_pylist() == ["malformed CoNLL line 'broken' (need a word and a tag)"]
    assert result["labels"] == ["B-LOC", "B-PER", "O"]


def test_pair_task(tmp_path):
    src = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"text_a": ["a cat", "a dog", "x"], "text_b": ["a kitten", "", "y"],
                             "score": [0.9, 0.1, None]}), src)
    result, docs, rejects = run_ingest(tmp_path, source=str(src), task="pair")
    assert docs.column("text_b").to_pylist() == ["a kitten"] and docs.column("score").to_pylist() == [0.9]
    assert sorted(rejects.column("reason").to_pylist()) == ["empty text_b", "missing score and label"]


@pytest.mark.parametrize("name,content,message", [
    ("wrong.csv", "body,category\nhello,pos\n", "missing column(s) ['text', 'label']"),
    ("bad.parquet", "this is not parquet", "not a readable Parquet file"),
    ("data.xyz", "whatever", "set data.format"),
])
def test_malformed_input_gives_one_clear_error(tmp_path, name, content, message):
    src = tmp_path / name
    src.write_text(content)
    with pytest.raises(InputError) as e:
        run_ingest(tmp_path, source=str(src))
    assert str(src) in str(e.value) and message in str(e.value)


def test_missing_source_and_all_rows_rejected(tmp_path):
    with pytest.raises(InputError, match="not found"):
        run_ingest(tmp_path, source=str(tmp_path / "nope.jsonl"))
    src = tmp_path / "empty.jsonl"
    src.write_text('{"text": ""}\n{"text": " "}\n')
    with pytest.raises(InputError, match="all rejected: empty text"):
        run_ingest(tmp_path, source=str(src))
    assert pq.read_table(tmp_path / "run" / "ingest" / "rejects.parquet").num_rows == 2


def test_builtin_corpus_task_mismatch(tmp_path):
    with pytest.raises(InputError, match="set data.task: token"):
        run_ingest(tmp_path, source="brown-pos", task="classification")


def test_shards_cut_by_words(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": "w " * 50 + str(i), "label": "a"}) + "\n" for i in range(40)))
    result, docs, _ = run_ingest(tmp_path, source=str(src), shard_words=500)
    assert result["shards"] == 4 and docs.num_rows == 40
    assert docs.column("row").to_pylist() == list(range(40))


def test_undecodable_bytes_are_rejected_with_escaped_values(tmp_path):
    """Bytes that are not UTF-8 (latin-1 here), in any column, and JSON-escaped lone surrogates reach
    the rejects file as readable escapes; before, writing them crashed ingest (surrogates not allowed)."""
    src = tmp_path / "in.csv"
    src.write_bytes(b"id,text,label\n1,a good film,pos\n2,caf\xe9 society,pos\n\xff3,fine text,neg\n4,ok,\xfeneg\n")
    result, docs, rejects = run_ingest(tmp_path, source=str(src))
    assert docs.column("id").to_pylist() == ["1"] and result["rejected_rows"] == 3
    by_row = {r["row"]: r for r in rejects.to_pylist()}
    assert by_row[1]["reason"] == "undecodable bytes (not UTF-8)" and "caf\\xe9 society" in by_row[1]["values"]
    assert by_row[2]["reason"] == "undecodable bytes (not UTF-8) in id" and by_row[2]["id"] == "\\xff3"
    assert "\\xfeneg" in by_row[3]["values"]
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine", "label": "pos"}\n{"text": "lone \\ud800 half", "label": "pos"}\n')
    result, _, rejects = run_ingest(tmp_path / "j", source=str(src))
    assert rejects.column("reason").to_pylist() == ["undecodable bytes (not UTF-8)"]
    assert "lone \\ud800 half" in rejects.column("values")[0].as_py()


def test_unlabelled_source_rows_join_the_transfer_split_or_are_rejected(tmp_path):
    """`tgd ingest` with data.unlabelled_source (a CSV beside a JSONL corpus): good texts become
    label-less ``transfer`` documents after the labelled ones; a text that is also a labelled document
    (it could be a test document) and the usual bad rows go to the rejects file, nothing is lost."""
    from tests.fixtures.cli_process import tgd

    labelled = [{"text": f"labelled review {i}", "label": "pos" if i % 2 else "neg"} for i in range(6)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in labelled))
    unl = tmp_path / "more.csv"
    with unl.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["text", "label"], ["an unlabelled review", ""], ["labelled review 3", ""], ["  ", ""],
                     ["another one", "pos"], ["an unlabelled review", ""]])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\ndata:\n  source: {src}\n  unlabelled_source: {unl}\n"
                   "  labels: [pos, neg]\n")
    done = tgd("ingest", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    m = json.loads((tmp_path / "run/ingest/manifest.json").read_text())
    assert m["unlabelled"] == {"source": str(unl), "input_rows": 5, "accepted_rows": 2, "rejected_rows": 3}
    assert m["input_rows"] == 11 == m["accepted_rows"] + m["rejected_rows"] and sum(m["splits"].values()) == 6
    docs = read_table(tmp_path / "run/ingest/documents", DOCUMENTS).to_pylist()
    assert [d["split"] for d in docs[6:]] == ["transfer", "transfer"] and "transfer" not in {d["split"] for d in docs[:6]}
    assert [(d["text"], d["label"], d["row"]) for d in docs[6:]] == [("an unlabelled review", None, 0), ("another one", None, 3)]
    rejects = {r["row"]: r for r in pq.read_table(tmp_path / "run/ingest/rejects.parquet").to_pylist()}
    assert rejects[1]["reason"] == "unlabelled text duplicates the labelled document at row 3"
    assert rejects[2]["reason"] == "empty text"
    assert rejects[4]["reason"].startswith("duplicate document (same content) in data.unlabelled_source")
    assert {r["source"] for r in rejects.values()} == {str(unl)} and rejects[1]["id"] == "unlabelled:1"
    # the unlabelled file is an input of ingest: touching it makes the stage stale
    status = lambda: tgd("status", str(cfg), cwd=tmp_path).stdout.splitlines()[0].split()  # noqa: E731
    assert status() == ["ingest", "up", "to", "date"]
    unl.write_text(unl.read_text() + "a new text,\n")
    assert status() == ["ingest", "stale"]


def test_unlabelled_source_is_refused_where_there_is_no_transfer_set(tmp_path):
    from tgd.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="data.unlabelled_source.*classification only"):
        load_config(None, ["data.task=token", "data.source=brown-pos", f"data.unlabelled_source={tmp_path}"])


def test_missing_or_useless_unlabelled_source_is_one_error_naming_the_key(tmp_path):
    from tests.fixtures.cli_process import one_error_line, tgd

    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a review", "label": "pos"}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\ndata:\n  source: {src}\n  unlabelled_source: {tmp_path / 'nope.csv'}\n")
    done = tgd("ingest", str(cfg), cwd=tmp_path)
    assert done.returncode != 0
    assert one_error_line(done.stderr).endswith(f"data.unlabelled_source {str(tmp_path / 'nope.csv')!r} not found "
                                                "(a file, a folder or a URI)")
    assert not (tmp_path / "run/ingest/manifest.json").exists()
    # every unlabelled row refused (here: all copies of the labelled document): an error, the rejects kept
    (tmp_path / "dup.jsonl").write_text('{"text": "a review"}\n' * 2)
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\ndata:\n  source: {src}\n  unlabelled_source: {tmp_path / 'dup.jsonl'}\n")
    done = tgd("ingest", str(cfg), cwd=tmp_path)
    assert done.returncode != 0 and "all 2 rows rejected" in one_error_line(done.stderr)
    reasons = pq.read_table(tmp_path / "run/ingest/rejects.parquet").column("reason").to_pylist()
    assert reasons == ["unlabelled text duplicates the labelled document at row 0"] * 2
