"""Input rows for `tgd predict` (one process): JSONL, CSV, Parquet or plain lines, streamed.

Every physical input row yields exactly one row dict, in input order: ``{"text": ..., "id": ...}``
(``id`` only when the input has the id column) plus the other task fields the row has (``tokens``:
a list, for the token task; ``text_b`` for pairs; which ones a task reads is the task adapter's
``inputs``; ``extra`` maps them to other column names, as `tgd predict`'s ``--tokens-column`` and
``--text-b-column`` do), or ``{"error": why}`` when the row itself cannot be read (a line that is
not JSON, a row with neither the text nor the tokens column), so the output has one line per input
row even for malformed input. Plain lines are ``text`` only, so a task that needs more per row
(pairs) is refused for them (``Predictor.check_format``).
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


# Row fields besides the text column that a task may read (``Task.inputs``), by their column name.
EXTRA_COLUMNS = {"tokens": "tokens", "text_b": "text_b"}


def _tokens_cell(value: Any) -> Any:
    """A CSV cell of the tokens column -> a list: a JSON array (``["New York", "is"]``) or, if the
    cell does not start with ``[``, whitespace-separated tokens; an empty cell is no tokens."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return value  # left as a string: the task says why that is not a token list
    return value.split()


def _row(obj: Any, text_column: str, id_column: str, extra: dict[str, str] | None = None,
         csv_cells: bool = False) -> dict[str, Any]:
    """One input object -> a row dict: ``text`` from the text column, the task fields of ``extra``
    (``tokens``, ``text_b``) when present, ``id``; or an error when it has none of text / tokens."""
    if not isinstance(obj, dict):
        return {"error": f"row is not an object with a {text_column!r} field"}
    row: dict[str, Any] = {"id": obj.get(id_column)}
    for key, col in (extra if extra is not None else EXTRA_COLUMNS).items():
        if col in obj:
            row[key] = _tokens_cell(obj[col]) if csv_cells and key == "tokens" else obj[col]
    if text_column in obj:
        row["text"] = obj[text_column]
    elif row.get("tokens") is None:
        row["error"] = f"row has no {text_column!r} field (--text-column)"
    return row


def row_from_object(obj: Any, text_column: str = "text", id_column: str = "id",
                    extra: dict[str, str] | None = None) -> dict[str, Any]:
    """One parsed JSON value -> the row dict a JSONL line with that value gives (`tgd serve`'s
    ``POST /predict`` reads its list this way, so a served row is answered like the same line in a
    JSONL file): an object's task fields and ``id``, or ``{"error": why}`` for anything else."""
    return _row(obj, text_column, id_column, EXTRA_COLUMNS if extra is None else extra)


class Rows:
    """The rows of one input, iterated once; ``format`` tells the predictor what kind of input it
    is (plain ``lines`` cannot carry a pair's two texts)."""

    def __init__(self, path: str, fmt: str | None, text_column: str, id_column: str, batch_rows: int,
                 extra: dict[str, str]):
        self.format = fmt or guess_format(path)
        if self.format not in FORMATS:
            raise ValueError(f"--format {self.format!r}: choose one of {', '.join(FORMATS)}")
        self.path, self.text_column, self.id_column, self.batch_rows, self.extra = \
            path, text_column, id_column, batch_rows, extra

    def _header_check(self, names: list[str], where: str) -> None:
        if self.text_column not in names and self.extra.get("tokens", "tokens") not in names:
            raise ValueError(f"{self.path}: no column {self.text_column!r} {where} "
                             f"(columns: {', '.join(map(str, names))}; "
                             "--text-column)")

    def check(self) -> None:
        """Refuse a Parquet or CSV file without the text (or tokens) column before any output is
        written, from its schema or header (JSONL rows and stdin are checked row by row)."""
        if self.path == "-" or self.format not in ("parquet", "csv"):
            return
        if self.format == "parquet":
            import pyarrow.parquet as pq

            self._header_check(pq.ParquetFile(self.path).schema_arrow.names, "in the Parquet schema")
        else:
            with open(Path(self.path), encoding="utf-8", errors="replace", newline="") as f:
                self._header_check(next(csv.reader(f), []), "in the CSV header")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        path, fmt, text_column, id_column, extra = self.path, self.format, self.text_column, self.id_column, self.extra
        if fmt == "parquet":
            import pyarrow.parquet as pq

            if path == "-":
                raise ValueError("Parquet cannot be read from stdin: pass a file")
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            self._header_check(names, "in the Parquet schema")
            cols = [c for c in (text_column, id_column, *extra.values()) if c in names]
            for batch in pf.iter_batches(batch_size=self.batch_rows, columns=list(dict.fromkeys(cols))):
                yield from (_row(r, text_column, id_column, extra) for r in batch.to_pylist())
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
                    yield _row(obj, text_column, id_column, extra)
            else:
                reader = csv.DictReader(stream)
                self._header_check(reader.fieldnames or [], "in the CSV header")
                for obj in reader:
                    yield _row(obj, text_column, id_column, extra, csv_cells=True)


def read_rows(path: str, fmt: str | None = None, text_column: str = "text", id_column: str = "id",
              batch_rows: int = 1024, extra: dict[str, str] | None = None) -> Rows:
    """The rows of ``path`` (``-``: stdin), streamed as row dicts (see the module docstring).
    ``extra``: the task fields besides the text and their columns (default ``EXTRA_COLUMNS``:
    ``tokens`` for the token task, ``text_b`` for pairs)."""
    return Rows(path, fmt, text_column, id_column, batch_rows, dict(EXTRA_COLUMNS if extra is None else extra))


def predict_stream(predictor, rows: Iterator[dict[str, Any]], out, batch_size: int) -> dict[str, Any]:
    """Predict ``rows`` chunk by chunk and write one JSON line per row to ``out`` (flushed per
    chunk, so a pipe sees results as they come); returns counts and the time split between graph
    construction (spaCy + graph assembly) and the rest (encoding + model + records)."""
    import time

    predictor.check_format(getattr(rows, "format", None))  # e.g. plain lines cannot carry a pair
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
