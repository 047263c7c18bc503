"""Read user corpora (JSONL, CSV/TSV, Parquet, CoNLL/BIO) from a path or any pyarrow URI.

Readers yield one record per input row and never raise on a bad row: a row that cannot be decoded
or parsed is yielded as a ``BadRow`` so ingest can put it in the rejects file. Text is decoded with
surrogateescape, so undecodable bytes survive as lone surrogates until ``storable`` escapes them for
the rejects file. Only a wholly unusable input (missing file, missing columns, unknown format, a
damaged Parquet file) raises ``InputError``.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tgd.errors import UserError

FORMATS_BY_SUFFIX = {
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv", ".tsv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".conll": "conll", ".bio": "conll", ".iob": "conll",
}


class InputError(UserError, RuntimeError):
    """The input as a whole cannot be read; the message names the file and the problem."""


def storable(s: str) -> str:
    """``s`` with undecodable bytes written as ``\\xff`` escapes (and any other lone surrogate, e.g. from
    a JSON ``"\\ud800"``, as ``\\ud800``): valid UTF-8 that Arrow can write and a user can read."""
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class BadRow:
    reason: str
    raw: str

    def __post_init__(self) -> None:
        self.raw = storable(self.raw)


@dataclass
class Record:
    source: str
    row: int
    value: dict[str, Any] | BadRow


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def undecodable(value: Any) -> bool:
    """True for text read with surrogateescape that held bytes that are not UTF-8."""
    if isinstance(value, str):
        return _has_surrogates(value)
    if isinstance(value, list):
        return any(undecodable(v) for v in value)
    return False


def resolve_files(source: str, key: str = "data.source") -> tuple[pafs.FileSystem, list[str]]:
    """A path or URI -> (filesystem, sorted file paths). A folder means every file inside it; ``key``
    names the config key in errors."""
    try:
        if "://" in source:
            fs, path = pafs.FileSystem.from_uri(source)
        else:
            fs, path = pafs.LocalFileSystem(), str(Path(source).expanduser().resolve())
        info = fs.get_file_info(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds; all mean "cannot open"
        raise InputError(f"cannot open {key} {source!r}: {e}") from None
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{key} {source!r} not found (a file, a folder or a URI"
                         f"{', or a built-in corpus name' if key == 'data.source' else ''})")
    if info.type == pafs.FileType.Directory:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        files = sorted(i.path for i in infos
                       if i.type == pafs.FileType.File and not Path(i.path).name.startswith((".", "_")))
        if not files:
            raise InputError(f"{key} {source!r} is an empty folder")
        return fs, files
    return fs, [path]


def detect_format(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS_BY_SUFFIX:
        raise InputError(f"{path}: cannot tell the format from the suffix {suffix!r}; set data.format "
                         f"to one of jsonl, csv, parquet, conll")
    return FORMATS_BY_SUFFIX[suffix]


def _text_stream(fs: pafs.FileSystem, path: str) -> io.TextIOWrapper:
    raw = fs.open_input_stream(path, compression="detect")
    # surrogateescape keeps undecodable bytes so the row is rejected, not the whole file.
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")


def _read_jsonl(fs, path) -> Iterator[tuple[int, dict | BadRow]]:
    row = 0
    with _text_stream(fs, path) as f:
        for line in f:
            if not line.strip():
                continue
            if _has_surrogates(line):
                yield row, BadRow("undecodable bytes (not UTF-8)", line.strip())
            else:
                try:
                    obj = json.loads(line)
                    yield row, obj if isinstance(obj, dict) else BadRow("not a JSON object", line.strip())
                except json.JSONDecodeError as e:
                    yield row, BadRow(f"invalid JSON: {e.msg}", line.strip())
                except RecursionError:
                    yield row, BadRow("invalid JSON: nested too deeply", line.strip())
            row += 1


def _read_csv(fs, path, required: list[str]) -> Iterator[tuple[int, dict | BadRow]]:
    with _text_stream(fs, path) as f:
        reader = csv.DictReader(f, delimiter="\t" if path.lower().endswith(".tsv") else ",")
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; found {header}. "
                             "Set data.*_column to the right names")
        for row, rec in enumerate(reader):
            if None in rec or any(v is None for v in rec.values()):
                yield row, BadRow(f"malformed CSV row (expected {len(header)} fields)", json.dumps(rec, default=str))
            else:
                yield row, rec


def _read_parquet(fs, path, required: list[str]) -> Iterator[tuple[int, dict | BadRow]]:
    try:
        pf = pq.ParquetFile(fs.open_input_file(path))
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {names}. Set data.*_column to the right names")
    row = 0
    for batch in pf.iter_batches(batch_size=4096):
        for rec in _batch_rows(batch):
            if isinstance(rec, dict):
                for k, v in rec.items():
                    if isinstance(v, bytes):
                        rec[k] = v.decode("utf-8", "surrogateescape")
            yield row, rec
            row += 1


def _batch_rows(batch: pa.RecordBatch) -> list[dict | BadRow]:
    """Arrow checks UTF-8 when it writes strings, not when it reads them, so a damaged file or another
    writer can hand over invalid string data. Top-level strings are therefore read as bytes (decoded
    like the text readers do); a nested value that does not decode rejects its row only."""
    cols = [c.cast(pa.large_binary()) if pa.types.is_string(c.type) or pa.types.is_large_string(c.type) else c
            for c in batch.columns]
    batch = pa.RecordBatch.from_arrays(cols, names=batch.schema.names)
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        return [_row_or_bad(batch, i) for i in range(batch.num_rows)]


def _row_or_bad(batch: pa.RecordBatch, i: int) -> dict | BadRow:
    try:
        return batch.slice(i, 1).to_pylist()[0]
    except UnicodeDecodeError:
        values = {}
        for name, col in zip(batch.schema.names, batch.columns):
            try:
                values[name] = col[i].as_py()
            except UnicodeDecodeError:
                values[name] = "(not UTF-8)"
        return BadRow("undecodable bytes (not UTF-8)", json.dumps(values, ensure_ascii=False, default=str))


def _read_conll(fs, path, tokens_col: str, tags_col: str) -> Iterator[tuple[int, dict | BadRow]]:
    """CoNLL/BIO: one token per line, first column the word, last the tag; blank line ends a sentence."""
    row, lines = 0, []

    def flush():
        toks, tags, bad = [], [], None
        for ln in lines:
            parts = ln.split()
            if len(parts) < 2:
                bad = f"malformed CoNLL line {ln!r} (need a word and a tag)"
                break
            toks.append(parts[0])
            tags.append(parts[-1])
        text = "\n".join(lines)
        if bad:
            return BadRow(bad, text)
        if _has_surrogates(text):
            return BadRow("undecodable bytes (not UTF-8)", text)
        return {tokens_col: toks, tags_col: tags}

    with _text_stream(fs, path) as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.startswith("-DOCSTART-"):
                continue
            if line.strip():
                lines.append(line)
            elif lines:
                yield row, flush()
                row, lines = row + 1, []
        if lines:
            yield row, flush()


def read_records(source: str, fmt: str, required: list[str], tokens_col: str = "tokens",
                 tags_col: str = "tags", key: str = "data.source") -> Iterator[Record]:
    """Every row of every file of ``source``, in order, with its position in the whole input."""
    fs, files = resolve_files(source, key)
    offset = 0
    for path in files:
        kind = detect_format(path, fmt)
        try:
            if kind == "jsonl":
                rows = _read_jsonl(fs, path)
            elif kind == "csv":
                rows = _read_csv(fs, path, required)
            elif kind == "parquet":
                rows = _read_parquet(fs, path, required)
            else:
                rows = _read_conll(fs, path, tokens_col, tags_col)
            n = 0
            for row, value in rows:
                n = row + 1
                yield Record(path, offset + row, value)
        except (OSError, csv.Error, pa.ArrowException) as e:  # damage past the Parquet footer shows up here
            raise InputError(f"{path}: cannot read as {kind}: {e}") from None
        offset += n
