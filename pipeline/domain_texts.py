"""An unlabelled in-domain corpus (`tgd terms`, `tgd adapt`'s ``--domain TEXTS``) -> checked documents
+ rejects, as ingest does for the training corpus.

TEXTS is a JSONL / CSV / Parquet file (or a folder of them) in the run's columns
(``data.text_column``; the token task: ``data.tokens_column`` or a text; pairs: both text columns),
or a .txt file with one text per line. Any label column is ignored: adaptation uses no gold labels.
Every row ends up accepted or in the rejects (REJECTS schema) with its reason; duplicate texts are
refused like ingest refuses them. The fingerprint hashes the accepted contents, so a package's
lineage names the corpus it was adapted to whatever the files are called.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from pipeline.ingest import RowChecks, content_id, raw_text
from pipeline.readers import BadRow, InputError, Record, read_records, resolve_files
from tgd.config import RunConfig
from tgd.schema import REJECTS, TRANSFER_SPLIT, write_table
from tgd.tasks import task_spec


@dataclass
class DomainTexts:
    docs: list[dict[str, Any]]  # DOCUMENTS fields: id, row, split "transfer", text (+ tokens / text_b)
    rejects: list[dict[str, Any]]  # REJECTS rows
    input_rows: int
    source: str
    fingerprint: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    def write_rejects(self, path: Path) -> None:
        write_table(pa.Table.from_pylist(self.rejects, schema=REJECTS), path, REJECTS)

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "input_rows": self.input_rows, "accepted_rows": len(self.docs),
                "rejected_rows": len(self.rejects), "rejects_by_reason": self.reasons,
                "fingerprint": self.fingerprint}


def _lines(path: str) -> Iterator[Record]:
    """A .txt file: one text per line (blank lines are rows too, refused as empty)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for i, line in enumerate(f):
            yield Record(path, i, {"text": line.rstrip("\n")})


def _records(source: str, columns: list[str], cfg: RunConfig) -> Iterator[Record]:
    _, files = resolve_files(source, "--domain")
    if len(files) == 1 and files[0].endswith(".txt"):
        yield from _lines(files[0])
        return
    yield from read_records(source, "auto", columns, cfg.data.tokens_column, cfg.data.tags_column, key="--domain")


def read_domain(source: str | Path, cfg: RunConfig) -> DomainTexts:
    """Every row of ``source`` checked for ``cfg``'s task; refuses an input with no usable row."""
    source = str(source)
    d, spec = cfg.data, task_spec(cfg.data.task)
    check = RowChecks(d.max_chars, None)
    docs, rejects, seen, n = [], [], {}, 0
    for rec in _records(source, spec.unlabelled_columns(d), cfg):
        n += 1
        value = rec.value

        def reject(reason: str) -> None:
            rejects.append({"id": f"domain:{rec.row}", "row": rec.row, "source": rec.source, "reason": reason,
                            "values": raw_text(value)})

        if isinstance(value, BadRow):
            reject(value.reason)
            continue
        doc, problem = spec.validate_unlabelled(value, d, check)
        if problem:
            reject(problem)
            continue
        doc_id = content_id(doc)
        if doc_id in seen:
            reject(f"duplicate document (same content), first seen at row {seen[doc_id]}")
            continue
        seen[doc_id] = rec.row
        docs.append({"id": doc_id, "row": rec.row, "split": TRANSFER_SPLIT, **doc})
    reasons: dict[str, int] = {}
    for r in rejects:
        key = r["reason"].split(":")[0].split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    if not docs:
        top = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda x: -x[1])[:3])
        raise InputError(f"--domain {source}: no usable rows ({n} read{', all rejected: ' + top if top else ''})")
    fingerprint = hashlib.sha256("\n".join(sorted(seen)).encode()).hexdigest()[:16]
    return DomainTexts(docs, rejects, n, source, fingerprint, reasons)
