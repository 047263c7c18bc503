"""The one place where the Parquet data exchanged between stages is defined.

Stages write, and later stages read, only through these schemas; bump ``SCHEMA_VERSION`` on any
incompatible change (manifests record it, so stale outputs are rebuilt rather than misread).
``tgd schema`` prints this module's tables.

Layout of a run directory::

    RUN_DIR/ingest/documents/part-NNNNN.parquet   DOCUMENTS   accepted rows, in shards (data.unlabelled_source
                                                              texts last: split "transfer", no label)
    RUN_DIR/ingest/rejects.parquet                REJECTS     every refused input row + reason
    RUN_DIR/graphs/part-NNNNN.parquet             GRAPHS      one row per accepted document
    RUN_DIR/graphs/vocab.parquet                  VOCAB       training-split vocabulary
    RUN_DIR/transfer/documents/part-NNNNN.parquet DOCUMENTS   augmented training copies, split "transfer", no label
    RUN_DIR/transfer/graphs/part-NNNNN.parquet    GRAPHS      their graphs (same shard names as documents/)
    RUN_DIR/teacher-finetune/model/               (HF dir)    the best epoch's fine-tuned teacher
    RUN_DIR/teacher-finetune/_ray/                (Ray Train) epoch checkpoints (HF weights + DeepSpeed per-rank
                                                              state); a re-run resumes from them; removed when done
    RUN_DIR/teacher-logits/part-aAAA-rRRR-NNNNN.parquet
                                                  TEACHER     teacher outputs per document (transfer copies
                                                              included); attempt AAA, worker rank RRR: a re-run
                                                              keeps finished files and runs only the rest
    RUN_DIR/teacher-logits/state_projection.npy   (numpy)     projection of teacher states to teacher.state_dim
    RUN_DIR/distill/student.pt                    (torch)     best epoch's student + encoding (weights_only load),
                                                              of the learning rate best on validation
    RUN_DIR/distill/history.json, learning_curves.png         that student's epochs
    RUN_DIR/distill/lr-<rate>/                    one student per rate (distill.lr_factors): the same
                                                  files, tensorboard/ and ray/ (Ray Train epoch
                                                  checkpoints a re-run resumes from)
    RUN_DIR/evaluate/metrics.md, metrics.json     the test-split table; models/ (each row's student), plots
    RUN_DIR/terms/terms.parquet                   TERMS       `tgd terms --domain TEXTS`: the kept domain terms, best
                                                              first (+ terms.json, terms.md, rejects.parquet)
    RUN_DIR/adapt/<domain fingerprint>/teacher-<graph hash>.parquet
                                                  TEACHER     `tgd adapt --domain TEXTS`: the teacher's outputs on
                                                              the domain texts (per graph settings)
    RUN_DIR/adapt/<domain fingerprint>/<settings hash>/
                                                  one adaptation: rejects.parquet (REJECTS), student.pt (the
                                                  adapted student), adapt.json (counts, history, lineage)
    RUN_DIR/<stage>/manifest.json                 counts, config hash, input fingerprints
    RUN_DIR/<stage>/_attempt.json                 an unfinished attempt (same fingerprint: resumed, else wiped)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 2  # 2: every fingerprinted config key hashed, no compatibility with version-1 run directories
SPLITS = ("train", "validation", "test")
TRANSFER_SPLIT = "transfer"  # teacher-labelled, no gold label: augmented copies of training documents, unlabelled texts

DOCUMENTS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False, metadata={"doc": "user id, else content hash"}),
        pa.field("row", pa.int64(), nullable=False, metadata={"doc": "position in the input (0-based)"}),
        pa.field("split", pa.string(), nullable=False, metadata={"doc": "train | validation | test | transfer"}),
        pa.field("text", pa.string(), nullable=False,
                 metadata={"doc": "text; token task: tokens joined by spaces; pair: side A"}),
        pa.field("label", pa.string(), metadata={"doc": "classification/pair label"}),
        pa.field("tokens", pa.list_(pa.string()), metadata={"doc": "token task: given tokens"}),
        pa.field("tags", pa.list_(pa.string()), metadata={"doc": "token task: one tag per token"}),
        pa.field("text_b", pa.string(), metadata={"doc": "pair task: side B"}),
        pa.field("score", pa.float64(), metadata={"doc": "pair task: similarity score"}),
    ],
    metadata={"name": "documents", "version": str(SCHEMA_VERSION)},
)

REJECTS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False, metadata={"doc": "user id when given, else the row number"}),
        pa.field("row", pa.int64(), nullable=False, metadata={"doc": "position in the input (0-based)"}),
        pa.field("source", pa.string(), nullable=False, metadata={"doc": "file the row came from"}),
        pa.field("reason", pa.string(), nullable=False, metadata={"doc": "why it was refused"}),
        pa.field("values", pa.string(), nullable=False, metadata={"doc": "the offending row as JSON text"}),
    ],
    metadata={"name": "rejects", "version": str(SCHEMA_VERSION)},
)

# A document's text graph. Node i is the i-th non-space token (or word type when merged); edge
# lists are parallel arrays of node indices. Dependency arcs point head -> child; models add the
# reverse direction themselves.
GRAPH = pa.struct(
    [
        pa.field("num_nodes", pa.int32(), nullable=False),
        pa.field("token", pa.list_(pa.string()), nullable=False),  # surface form
        pa.field("lower", pa.list_(pa.string()), nullable=False),  # lower-cased form (vocabulary key)
        pa.field("pos", pa.list_(pa.string()), nullable=False),  # coarse universal POS
        pa.field("start", pa.list_(pa.int32()), nullable=False),  # char offset in the text (first occurrence)
        pa.field("end", pa.list_(pa.int32()), nullable=False),
        pa.field("sent", pa.list_(pa.int32()), nullable=False),  # sentence index, for sentence-window sampling
        pa.field("dep_src", pa.list_(pa.int32()), nullable=False),  # head
        pa.field("dep_dst", pa.list_(pa.int32()), nullable=False),  # child
        pa.field("dep_rel", pa.list_(pa.string()), nullable=False),  # relation label
        pa.field("co_src", pa.list_(pa.int32()), nullable=False),  # co-occurrence, src < dst, undirected
        pa.field("co_dst", pa.list_(pa.int32()), nullable=False),
        pa.field("co_weight", pa.list_(pa.float32()), nullable=False),  # pair count / max pair count
    ]
)

GRAPHS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("score", pa.float64()),
        pa.field("graph", GRAPH, nullable=False, metadata={"doc": "graph of `text`"}),
        pa.field("graph_b", GRAPH, metadata={"doc": "pair task: graph of `text_b`"}),
    ],
    metadata={"name": "graphs", "version": str(SCHEMA_VERSION)},
)

VOCAB = pa.schema(
    [
        pa.field("token", pa.string(), nullable=False, metadata={"doc": "lower-cased form"}),
        pa.field("count", pa.int64(), nullable=False, metadata={"doc": "occurrences in the training split"}),
    ],
    metadata={"name": "vocab", "version": str(SCHEMA_VERSION)},
)

# Teacher outputs, one row per accepted document (every split), keyed by document id. The label
# order of ``logits`` is the ``labels`` list of the teacher-logits manifest (the ingest label
# order). Node-level arrays are aligned to the graph nodes of the same document by character
# offsets; a node with no teacher sub-word (truncation) has ``node_aligned`` false and zeros.
TEACHER = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("teacher", pa.string(), nullable=False, metadata={"doc": "teacher id + weights hash"}),
        pa.field("max_length", pa.int32(), nullable=False, metadata={"doc": "teacher max tokens per window"}),
        pa.field("num_windows", pa.int32(), nullable=False, metadata={"doc": "sliding windows averaged"}),
        pa.field("truncated", pa.bool_(), nullable=False, metadata={"doc": "part of the text unseen by the teacher"}),
        pa.field("logits", pa.list_(pa.float32()), metadata={"doc": "document logits (classification/pair label)"}),
        pa.field("topk_index", pa.list_(pa.int32()), metadata={"doc": "top-k compression: label indices kept"}),
        pa.field("topk_rest", pa.float32(), metadata={"doc": "top-k compression: probability mass left out"}),
        pa.field("node_logits", pa.list_(pa.float32()),
                 metadata={"doc": "token task: [num_nodes x labels], row-major"}),
        pa.field("node_aligned", pa.list_(pa.bool_()), metadata={"doc": "per graph node: has a teacher sub-word"}),
        pa.field("node_states", pa.list_(pa.float16()),
                 metadata={"doc": "[num_nodes x state_dim] projected last-layer states"}),
        pa.field("embedding_a", pa.list_(pa.float32()), metadata={"doc": "pair task: sentence embedding of side A"}),
        pa.field("embedding_b", pa.list_(pa.float32()), metadata={"doc": "pair task: sentence embedding of side B"}),
        pa.field("similarity", pa.float32(), metadata={"doc": "pair task: cosine (bi-encoder) or cross-encoder score"}),
    ],
    metadata={"name": "teacher", "version": str(SCHEMA_VERSION)},
)

# Domain terms (`tgd terms`), one row per kept term, best (highest z) first. Counts are occurrences as
# candidates: a word as a content word, a phrase as a noun-phrase run or the ending of a longer one.
TERMS = pa.schema(
    [
        pa.field("term", pa.string(), nullable=False,
                 metadata={"doc": "lower-cased words joined by single spaces (as graph.terms takes them)"}),
        pa.field("kind", pa.string(), nullable=False, metadata={"doc": "word | phrase"}),
        pa.field("words", pa.int32(), nullable=False, metadata={"doc": "words in the term"}),
        pa.field("domain_count", pa.int64(), nullable=False, metadata={"doc": "occurrences in the domain texts"}),
        pa.field("background_count", pa.int64(), nullable=False,
                 metadata={"doc": "occurrences in the run's training split"}),
        pa.field("log_odds", pa.float64(), nullable=False,
                 metadata={"doc": "log-odds ratio domain vs background, informative Dirichlet prior"}),
        pa.field("z", pa.float64(), nullable=False, metadata={"doc": "log_odds / its standard deviation"}),
    ],
    metadata={"name": "terms", "version": str(SCHEMA_VERSION)},
)

ALL = {"documents": DOCUMENTS, "rejects": REJECTS, "graphs": GRAPHS, "vocab": VOCAB, "teacher": TEACHER, "terms": TERMS}


def stage_dir(cfg, name: str) -> Path:
    """Where stage ``name`` of the run configured by ``cfg`` keeps its outputs."""
    return Path(cfg.run_dir) / name


def read_manifest(cfg, name: str) -> dict[str, Any] | None:
    path = stage_dir(cfg, name) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def write_table(table: pa.Table, path: Path, schema: pa.Schema) -> None:
    """Write atomically (tmp + rename): a reader or a resumed run never sees half a file."""
    table = table.cast(schema) if table.schema != schema else table
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def read_table(path: Path, schema: pa.Schema) -> pa.Table:
    """Read one file or a folder of shards and check it has the expected columns."""
    files = sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]
    if not files:
        return schema.empty_table()
    table = pa.concat_tables(pq.read_table(f, schema=schema) for f in files)
    return table


def describe() -> str:
    """Human-readable listing of every schema (``tgd schema``)."""
    out = [f"schema version {SCHEMA_VERSION}", ""]
    for name, schema in ALL.items():
        out.append(f"## {name}")
        for f in schema:
            doc = (f.metadata or {}).get(b"doc", b"").decode()
            out.append(f"  {f.name:<10} {str(f.type):<40} {doc}")
        out.append("")
    return "\n".join(out)
