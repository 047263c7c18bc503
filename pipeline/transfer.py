"""Stage ``transfer``: a teacher-labelled transfer set made by augmenting the training graphs.

Distillation learns most from the teacher's judgement on inputs it was not fitted to (Tang et al.
2019, "Distilling task-specific knowledge from BERT into simple neural networks"). Each training
document gets ``transfer.copies`` augmented copies, made on its graph so nothing is re-parsed:

- **mask**: each word, with probability ``mask_prob``, becomes ``[MASK]`` (the teacher's mask token
  for BERT-like tokenizers; outside the student's vocabulary, so the student sees its unknown word);
- **replace**: each remaining word, with probability ``replace_prob``, becomes a training-split word
  of the same part of speech, drawn by frequency (POS-guided replacement);
- **n-gram sample**: with probability ``ngram_prob`` the copy keeps only a window of consecutive
  words covering between ``ngram_min_fraction`` and all of the document.

The copy keeps the original's nodes, POS and edges (restricted to the window): the parse of the
original is the structure, the changed words are the content. Its text is the changed words joined
by the original whitespace, with node offsets recomputed, so the teacher-logits stage labels it and
aligns its states to the nodes like any other document. Copies have split ``transfer`` and no gold
label: the student trains on them with the distillation losses only.

Output: ``transfer/documents/part-*.parquet`` (DOCUMENTS) and ``transfer/graphs/part-*.parquet``
(GRAPHS), one shard pair per graph shard, so the teacher reads them exactly as it reads ingest +
graphs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tgd.config import RunConfig, TransferConfig
from tgd.schema import DOCUMENTS, GRAPHS, TRANSFER_SPLIT, stage_dir, write_table

MASK = "[MASK]"
COPY_MARK = "~aug"  # a copy's id: its original's id, this, the copy's number


def source_id(doc_id: str) -> str:
    """The original document's id of a transfer copy (any other id: itself)."""
    return doc_id.split(COPY_MARK, 1)[0]


class PosVocabulary:
    """Training-split words per POS with their counts, for POS-guided replacement."""

    def __init__(self, graphs: pa.Table):
        counts: dict[str, dict[str, int]] = {}
        for g in graphs.column("graph").to_pylist():
            for tok, pos in zip(g["token"], g["pos"]):
                by_pos = counts.setdefault(pos, {})
                by_pos[tok] = by_pos.get(tok, 0) + 1
        self.words = {p: np.array(list(c)) for p, c in counts.items()}
        self.probs = {p: np.array(list(c.values()), dtype=np.float64) / sum(c.values()) for p, c in counts.items()}

    def draw(self, pos: str, rng: np.random.Generator) -> str | None:
        words = self.words.get(pos)
        return None if words is None else str(words[rng.choice(len(words), p=self.probs[pos])])


def _same_case(word: str, original: str, pos: str) -> str:
    """A replacement written like the word it replaces (proper nouns keep their own spelling)."""
    if pos == "PROPN":
        return word
    if original.isupper() and len(original) > 1:
        return word.upper()
    return word.capitalize() if original[:1].isupper() else word.lower()


def augment(text: str, g: dict[str, Any], cfg: TransferConfig, vocab: PosVocabulary,
            rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    """One augmented copy of a document: (its text, its graph). Needs one node per token (offsets
    in text order), i.e. graphs built with ``graph.merge_repeated=false``."""
    n = g["num_nodes"]
    a, b = 0, n
    if n > 1 and rng.random() < cfg.ngram_prob:
        length = int(rng.integers(max(1, int(np.ceil(cfg.ngram_min_fraction * n))), n + 1))
        a = int(rng.integers(0, n - length + 1))
        b = a + length
    tokens, lower = list(g["token"][a:b]), list(g["lower"][a:b])
    for i in range(b - a):
        u = rng.random()
        if u < cfg.mask_prob:
            tokens[i], lower[i] = MASK, MASK.lower()
        elif u < cfg.mask_prob + cfg.replace_prob:
            word = vocab.draw(g["pos"][a + i], rng)
            if word is not None:
                tokens[i], lower[i] = _same_case(word, tokens[i], g["pos"][a + i]), word.lower()
    pieces, start, end, pos = [], [], [], 0
    for i in range(b - a):
        start.append(pos)
        pieces.append(tokens[i])
        pos += len(tokens[i])
        end.append(pos)
        if i + 1 < b - a:  # the original whitespace between this token and the next
            gap = text[g["end"][a + i]:g["start"][a + i + 1]]
            pieces.append(gap)
            pos += len(gap)

    def edges(src, dst, *extra):
        keep = [k for k, (s, d) in enumerate(zip(src, dst)) if a <= s < b and a <= d < b]
        return ([src[k] - a for k in keep], [dst[k] - a for k in keep], *([x[k] for k in keep] for x in extra))

    dep_src, dep_dst, dep_rel = edges(g["dep_src"], g["dep_dst"], g["dep_rel"])
    co_src, co_dst, co_weight = edges(g["co_src"], g["co_dst"], g["co_weight"])
    s0 = g["sent"][a] if b > a else 0
    graph = {"num_nodes": b - a, "token": tokens, "lower": lower, "pos": list(g["pos"][a:b]), "start": start,
             "end": end, "sent": [s - s0 for s in g["sent"][a:b]], "dep_src": dep_src, "dep_dst": dep_dst,
             "dep_rel": dep_rel, "co_src": co_src, "co_dst": co_dst, "co_weight": co_weight}
    return "".join(pieces), graph


def augment_shard(docs: pa.Table, graphs: pa.Table, cfg: TransferConfig, vocab: PosVocabulary,
                  rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    """Copies of the shard's training documents -> (DOCUMENTS rows, GRAPHS rows)."""
    d_rows, g_rows = [], []
    for doc, gr in zip(docs.to_pylist(), graphs.select(["id", "split", "graph"]).to_pylist()):
        if doc["split"] != "train" or gr["graph"]["num_nodes"] == 0:
            continue
        for k in range(cfg.copies):
            text, graph = augment(doc["text"], gr["graph"], cfg, vocab, rng)
            cid = f"{doc['id']}{COPY_MARK}{k}"
            d_rows.append({"id": cid, "row": doc["row"], "split": TRANSFER_SPLIT, "text": text})
            g_rows.append({"id": cid, "split": TRANSFER_SPLIT, "graph": graph})
    return pa.Table.from_pylist(d_rows, schema=DOCUMENTS), pa.Table.from_pylist(g_rows, schema=GRAPHS)


def run(cfg: RunConfig, out_dir: Path) -> dict[str, Any]:
    """Stage entry point: one shard pair per graph shard (none when there are no copies to make)."""
    tcfg = cfg.transfer.model_copy(update={"copies": cfg.transfer_copies()})
    doc_dir, graph_dir = stage_dir(cfg, "ingest") / "documents", stage_dir(cfg, "graphs")
    shards = sorted(graph_dir.glob("part-*.parquet"))
    rows = 0
    if tcfg.copies:
        vocab = PosVocabulary(pa.concat_tables(pq.read_table(s, schema=GRAPHS, columns=["split", "graph"],
                                                             filters=[("split", "=", "train")]) for s in shards))
        for i, shard in enumerate(shards):
            docs = pq.read_table(doc_dir / shard.name, schema=DOCUMENTS, columns=["id", "row", "split", "text"])
            d, g = augment_shard(docs, pq.read_table(shard, schema=GRAPHS), tcfg, vocab,
                                 np.random.default_rng([tcfg.seed, i]))
            write_table(d, out_dir / "documents" / shard.name, DOCUMENTS)
            write_table(g, out_dir / "graphs" / shard.name, GRAPHS)
            rows += d.num_rows
    return {"input_rows": sum(pq.ParquetFile(s).metadata.num_rows for s in shards), "output_rows": rows,
            "copies": tcfg.copies}
