"""Input rows for `tgd predict` (one process): JSONL, CSV, Parquet or plain lines, streamed.

Every physical input row yields exactly one row dict, in input order: ``{"text": ..., "id": ...}``
(``id`` only when the input has the id column), or ``{"error": why}`` when the row itself cannot
be read (a line that is not JSON, a row without the text column), so the output has one line per
input row even for malformed input.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterator

FORMATS = ("jsonl", "csv", "parquet", "lines")


def guess_format(path: str) -> str:
    """From the file name; stdin (``-``) is plain lines of text."""
    if path == "-":
        return "lines"
    name = path.lower()
    for ext, fmt in ((".jsonl", "jsonl"), (".json", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"),
                     (".parquet", "parquet"), (".txt", "lines")):
        if name.endswith(ext):
            return fmt
    raise ValueError(f"cannot tell the format of {path!r} from its name: pass --format ({', '.join(FORMATS)})")


def _row(obj: Any, text_column: str, id_column: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {"error": f"row is not an object with a {text_column!r} field"}
    row: dict[str, Any] = {"id": obj.get(id_column)}
    if text_column not in obj:
        row["error"] = f"row has no {text_column!r} field (--text-column)"
    else:
        row["text"] = obj[text_column]
    return row


def read_rows(path: str, fmt: str | None = None, text_column: str = "text", id_column: str = "id",
              batch_rows: int = 1024) -> Iterator[dict[str, Any]]:
    """Stream the rows of ``path`` (``-``: stdin) as row dicts (see the module docstring)."""
    fmt = fmt or guess_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if path == "-":
            raise ValueError("Parquet cannot be read from stdin: pass a file")
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        if text_column not in names:
            raise ValueError(f"{path}: no column {text_column!r} (columns: {', '.join(names)}; --text-column)")
        cols = [c for c in (text_column, id_column) if c in names]
        for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
            yield from (_row(r, text_column, id_column) for r in batch.to_pylist())
        return
    stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace") if path == "-" else \
        open(Path(path), encoding="utf-8", errors="replace", newline="" if fmt == "csv" else None)
    with stream:
        if fmt == "lines":
            for line in stream:
                yield {"text": line.rstrip("\r\n")}
        elif fmt == "jsonl":
            for n, line in enumerate(stream, 1):
                if not line.strip():
                    yield {"error": f"line {n} is blank"}
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    yield {"error": f"line {n} is not valid JSON ({e})"}
                    continue
                yield _row(obj, text_column, id_column)
        else:
            reader = csv.DictReader(stream)
            if reader.fieldnames is None or text_column not in reader.fieldnames:
                raise ValueError(f"{path}: no column {text_column!r} in the CSV header {reader.fieldnames} (--text-column)")
            for obj in reader:
                yield _row(obj, text_column, id_column)


def predict_stream(predictor, rows: Iterator[dict[str, Any]], out, batch_size: int) -> dict[str, Any]:
    """Predict ``rows`` chunk by chunk and write one JSON line per row to ``out`` (flushed per
    chunk, so a pipe sees results as they come); returns counts and the time split between graph
    construction (spaCy + graph assembly) and the rest (encoding + model + records)."""
    import time

    n = errors = 0
    t0 = time.perf_counter()
    chunk: list[dict[str, Any]] = []

    def flush():
        nonlocal n, errors
        for rec in predictor.predict_records(chunk, batch_size=batch_size):
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            errors += "error" in rec
        n += len(chunk)
        chunk.clear()
        out.flush()

    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch_size:
            flush()
    if chunk:
        flush()
    seconds = time.perf_counter() - t0
    return {"rows": n, "errors": errors, "seconds": seconds, "docs_per_s": n / seconds if seconds else 0.0}
