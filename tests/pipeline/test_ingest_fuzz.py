"""Fuzzed ingest: random bytes, random truncation and wrong types never crash a reader, and every
input row lands exactly once in documents or rejects (a seeded generator, so failures replay)."""
import io
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import ingest
from pipeline.readers import InputError
from tests.conftest import make_config
from tgd.schema import DOCUMENTS, read_table

INPUTS_PER_FORMAT = 50
NASTY = b'\xff\xfe\x80\xc3\x28\xed\xa0\x80\xf0\x9f"\',\n\r\t\x00{}[]\\ '
WORDS = ["the", "film", "was", "fine", "dull", "caf\xe9", "na\xefve", "\u6f22\u5b57", "\U0001f600"]


def _bytes(rng: random.Random) -> bytes:
    return bytes(rng.choice(NASTY) if rng.random() < 0.6 else rng.randrange(256) for _ in range(rng.randrange(1, 12)))


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 8)))


def _wrong(rng: random.Random):
    """A JSON value of a type no column expects (or a JSON-escaped lone surrogate)."""
    return rng.choice([None, 7, -1.5, True, [], ["a", 1], {"x": "y"}, "", "   ", "\ud800 lone", "\udcff"])


def _mangle(rng: random.Random, line: bytes) -> bytes:
    """Insert random bytes into a line, cut it short, or leave it."""
    roll = rng.random()
    if roll < 0.15:
        at = rng.randrange(len(line) + 1)
        return line[:at] + _bytes(rng) + line[at:]
    if roll < 0.2:
        return line[:rng.randrange(len(line) + 1)]
    return line


def _truncate(rng: random.Random, data: bytes, keep: int = 0) -> bytes:
    return data[:rng.randrange(keep, len(data) + 1)] if rng.random() < 0.3 else data


def _record(rng: random.Random) -> dict:
    rec = {"text": _text(rng) if rng.random() < 0.8 else _wrong(rng),
           "label": rng.choice(["pos", "neg"]) if rng.random() < 0.8 else _wrong(rng)}
    if rng.random() < 0.3:
        rec["id"] = rng.choice([str(rng.randrange(1000)), _wrong(rng)])
    if rng.random() < 0.2:
        rec["split"] = rng.choice(["train", "dev", "holdout", _wrong(rng)])
    return rec


def make_jsonl(rng: random.Random) -> bytes:
    lines = [_bytes(rng) if rng.random() < 0.1 else _mangle(rng, json.dumps(_record(rng)).encode())
             for _ in range(rng.randrange(1, 40))]
    return _truncate(rng, b"\n".join(lines) + b"\n")


def make_csv(rng: random.Random) -> bytes:
    header = b"id,text,label,split\n"
    out = io.StringIO()
    for _ in range(rng.randrange(1, 40)):
        rec = _record(rng)
        fields = [rec.get(k, "") for k in ("id", "text", "label", "split")]
        out.write(",".join('"' + str(f).replace('"', '""') + '"' for f in fields[:rng.choice([2, 3, 4, 4, 4, 5])]))
        out.write("\n")
    body = b"".join(_mangle(rng, ln.encode("utf-8", "surrogatepass") + b"\n")
                    for ln in out.getvalue().splitlines())
    return _truncate(rng, header + body, keep=len(header))


def make_conll(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randrange(1, 15)):
        for _ in range(rng.randrange(1, 6)):
            word = rng.choice(WORDS).encode() if rng.random() < 0.9 else _bytes(rng)
            tag = rng.choice([b"O", b"B-PER", b"I-LOC"]) if rng.random() < 0.9 else b""
            lines.append(_mangle(rng, word + b" " + tag))
        lines.append(b"" if rng.random() < 0.9 else b"-DOCSTART- O")
    return _truncate(rng, b"\n".join(lines) + b"\n")


RIGHT_VALUES = {"text": _text, "label": lambda rng: rng.choice(["pos", "neg"]),
                "id": lambda rng: str(rng.randrange(1000)), "split": lambda rng: rng.choice(["train", "dev", "holdout"])}
WRONG_VALUES = [lambda rng: _bytes(rng) + _text(rng).encode(), lambda rng: rng.randrange(-3, 3),
                lambda rng: rng.choice([0.5, float("nan"), float("inf")]), lambda rng: [_text(rng)],
                lambda rng: {"a": _text(rng)}]


def make_parquet(rng: random.Random) -> bytes:
    """Columns of a random Arrow type (mostly the right one) with nulls sprinkled in; some files then
    have bytes overwritten or are cut short (whole-file damage: one clear InputError, or bad rows)."""
    n = rng.randrange(1, 40)
    columns = {}
    for name, right in RIGHT_VALUES.items():
        if name in ("id", "split") and rng.random() < 0.5:
            continue
        make = rng.choice(WRONG_VALUES) if rng.random() < 0.25 else right
        columns[name] = [make(rng) if rng.random() < 0.9 else None for _ in range(n)]
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, compression=rng.choice(["none", "snappy"]))
    data = bytearray(sink.getvalue())
    roll = rng.random()
    if roll < 0.2:  # overwrite bytes in the data pages, keep the footer: mostly invalid UTF-8 in strings
        pages_end = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(4, pages_end)] = rng.randrange(256)
    elif roll < 0.3:
        data = data[:rng.randrange(len(data))]
    return bytes(data)


LABELS = ["pos", "neg"]
MAKERS = {"jsonl": (make_jsonl, "classification", LABELS), "csv": (make_csv, "classification", LABELS),
          "parquet": (make_parquet, "classification", LABELS), "conll": (make_conll, "token", ["O", "B-PER"])}


@pytest.mark.parametrize("fmt", list(MAKERS))
def test_fuzzed_inputs_never_crash_ingest_and_lose_no_row(tmp_path, fmt):
    make, task, allowed = MAKERS[fmt]
    rng = random.Random(f"tgd-fuzz-{fmt}")
    figures = {"inputs": 0, "rows": 0, "accepted": 0, "rejected": 0, "all_rejected": 0, "unreadable": 0}
    for i in range(INPUTS_PER_FORMAT):
        case = tmp_path / str(i)
        src = case / f"in.{fmt}"
        src.parent.mkdir()
        src.write_bytes(make(rng))
        out = case / "run" / "ingest"
        out.mkdir(parents=True)
        labels = allowed if i % 2 else None  # odd cases: a fixed label set, so unknown labels are rejected
        cfg = make_config(case, data={"source": str(src), "task": task, "labels": labels, "max_chars": 60})
        figures["inputs"] += 1
        try:
            result = ingest.run(cfg, out)
        except InputError as e:  # the documented whole-input refusals: one message, no traceback
            if "no usable rows" not in str(e):  # only a Parquet file that Arrow cannot read either
                assert fmt == "parquet", f"case {i}: {e}"
                with pytest.raises((OSError, pa.ArrowException)):
                    pq.read_table(src)
                figures["unreadable"] += 1
                continue
            figures["all_rejected"] += 1
            result = {"input_rows": int(str(e).split(": ")[1].split()[0]), "accepted_rows": 0}
            result["rejected_rows"] = result["input_rows"]
        rejects = pq.read_table(out / "rejects.parquet").to_pylist()
        docs = read_table(out / "documents", DOCUMENTS) if result["accepted_rows"] else pa.table({"row": [], "text": []})
        assert result["input_rows"] == result["accepted_rows"] + result["rejected_rows"]
        assert (docs.num_rows, len(rejects)) == (result["accepted_rows"], result["rejected_rows"])
        rows = docs.column("row").to_pylist() + [r["row"] for r in rejects]
        assert sorted(rows) == list(range(result["input_rows"])), f"case {i}: a row lost or duplicated"
        for text in docs.column("text").to_pylist():
            text.encode("utf-8")  # no lone surrogates in accepted text
        figures["rows"] += result["input_rows"]
        figures["accepted"] += result["accepted_rows"]
        figures["rejected"] += result["rejected_rows"]
    print(f"fuzz {fmt}: {json.dumps(figures)}")
    assert figures["accepted"] > 0 and figures["rejected"] > 0
