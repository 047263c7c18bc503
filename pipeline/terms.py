"""Domain terms (`tgd terms CONFIG --domain TEXTS`): the words and noun phrases of an unlabelled
in-domain corpus that are frequent there and rare in the run's training split (the background).

Both corpora are counted on text graphs built by the graph builder, so a term is spelled the way
``graph.terms`` matches graph nodes: lower-cased words joined by single spaces. The background is
the graph stage's output (training split only: validation and test texts stay unseen); the domain
texts are read and checked by ``pipeline.domain_texts`` (bad rows go to ``OUT/rejects.parquet``)
and parsed here with the run's ``graph`` settings, without its graph rules, so both sides are
counted on token nodes (a background node that an earlier ``merge_terms`` made from several words
is split back into them).

Candidates, per graph, within one sentence:
- words: ``lower`` forms made of letters (inner hyphens and apostrophes allowed), at least two
  characters, not a spaCy English stop word, tagged NOUN, PROPN, ADJ or VERB;
- phrases: maximal runs of such words tagged ADJ, NOUN or PROPN, cut back to end on a NOUN or
  PROPN (the head of an English noun phrase); a run counts itself and each of its endings of two
  words or more, up to ``terms.max_words`` words ("new federal income tax" also counts "federal
  income tax" and "income tax"), because a term is often the tail of a longer, one-off phrase.
POS "X" (every node of ``graph.parser=fast``, where no tagger runs) is unknown, so it is accepted in
every position: there, phrases are runs of non-stop content words.

Scoring: the weighted log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn
2008, "Fightin' Words"). For a candidate with counts y_d (domain) and y_b (background), and n_d,
n_b the total counts of all candidates of each corpus (words and phrases in one vocabulary, so a
corpus without phrases of its own still gives them a background rate), the prior gives it
a0 * (y_d + y_b) / (n_d + n_b) pseudo-counts a, and

    delta = log((y_d + a) / (n_d + a0 - y_d - a)) - log((y_b + a) / (n_b + a0 - y_b - a))
    z     = delta / sqrt(1 / (y_d + a) + 1 / (y_b + a))

The prior keeps a string seen a few times in the domain and never in the background from an
unbounded log-odds; z divides by the evidence, so a frequent string with a small difference and a
rare one with a large difference are compared fairly. a0 is ``terms.prior``, or when null the
smaller corpus's total (see the key's description for why).

Selection, in this order, each step counted in the summary: domain count >= ``terms.min_count``,
z >= ``terms.min_z``, then the ``terms.max_terms`` highest z (ties: more domain occurrences first,
then alphabetical, so the list is the same on every run).

Outputs in OUT (default ``RUN_DIR/terms``): ``terms.parquet`` (TERMS, best first; ``read_terms``
reads it back), ``terms.json`` (counts, settings, why candidates were dropped, the sha256 of the
domain files, the top 20), ``terms.md`` (the top 50 as a table) and ``rejects.parquet`` (REJECTS).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.domain_texts import read_domain
from pipeline.graph_builder import GraphBuilder
from pipeline.readers import InputError, resolve_files
from tgd.config import RunConfig, TermsConfig
from tgd.errors import StageError
from tgd.schema import GRAPHS, SCHEMA_VERSION, TERMS, read_manifest, read_table, stage_dir, write_table

WORD_POS = frozenset({"NOUN", "PROPN", "ADJ", "VERB", "X"})
PHRASE_POS = frozenset({"ADJ", "NOUN", "PROPN", "X"})  # may be inside a phrase
HEAD_POS = frozenset({"NOUN", "PROPN", "X"})  # may end a phrase
_LETTERS = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
PARSE_BATCH = 1000  # domain texts parsed per GraphBuilder call (bounds the graphs held at once)
LOG_EVERY = 5000  # domain texts between progress lines
TOP_JSON, TOP_MD = 20, 50


def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS  # the English list alone, no pipeline loaded

    return frozenset(STOP_WORDS)


STOP_WORDS = _stop_words()


def is_content_word(w: str) -> bool:
    """A lower-cased form that can be (part of) a term: letters with inner hyphens / apostrophes,
    two characters or more, not a stop word."""
    return len(w) >= 2 and w not in STOP_WORDS and _LETTERS.fullmatch(w) is not None


def _nodes(graph: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(lower, pos, sentence) per word; a node holding several words (a merged term) yields each,
    the last with the node's POS (the term's head) and the others as unknown ("X")."""
    for w, p, s in zip(graph["lower"], graph["pos"], graph["sent"]):
        if " " in w:
            *inner, last = w.split()
            for x in inner:
                yield x, "X", s
            yield last, p, s
        else:
            yield w, p, s


def count_candidates(graph: dict[str, Any], max_words: int, counts: Counter | None = None) -> Counter:
    """Add one graph's word and phrase candidates (see the module docstring) to ``counts``."""
    counts = Counter() if counts is None else counts
    run: list[tuple[str, str]] = []  # (word, pos) of the current phrase run
    run_sent = None

    def flush() -> None:
        end = len(run)
        while end and run[end - 1][1] not in HEAD_POS:
            end -= 1
        words = [w for w, _ in run[:end]]
        for k in range(2, min(end, max_words) + 1):
            counts[" ".join(words[-k:])] += 1
        run.clear()

    for w, p, s in _nodes(graph):
        content = is_content_word(w)
        if content and p in WORD_POS:
            counts[w] += 1
        if s != run_sent:
            flush()
            run_sent = s
        if content and p in PHRASE_POS:
            run.append((w, p))
        else:
            flush()
    flush()
    return counts


def count_graphs(graphs: Iterable[dict[str, Any] | None], max_words: int, counts: Counter | None = None) -> Counter:
    counts = Counter() if counts is None else counts
    for g in graphs:
        if g is not None:
            count_candidates(g, max_words, counts)
    return counts


def kind_of(term: str) -> str:
    return "phrase" if " " in term else "word"


def log_odds_z(y_d: np.ndarray, y_b: np.ndarray, n_d: float, n_b: float, a0: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted log-odds (domain vs background) with an informative Dirichlet prior of ``a0``
    pseudo-counts spread like the pooled counts, and its z-score. ``n_d``, ``n_b``: the totals the
    counts are shares of."""
    y_d, y_b = np.asarray(y_d, dtype=np.float64), np.asarray(y_b, dtype=np.float64)
    alpha = a0 * (y_d + y_b) / max(n_d + n_b, 1.0)
    tiny = 1e-12  # a string that is every occurrence of both corpora would divide by zero
    delta = (np.log(y_d + alpha) - np.log(np.maximum(n_d + a0 - y_d - alpha, tiny))
             - np.log(y_b + alpha) + np.log(np.maximum(n_b + a0 - y_b - alpha, tiny)))
    return delta, delta / np.sqrt(1.0 / (y_d + alpha) + 1.0 / (y_b + alpha))


def prior_size(n_d: float, n_b: float, prior: float | None) -> float:
    """a0: ``terms.prior``, or the smaller total (at least one pseudo-count)."""
    return float(prior) if prior is not None else max(float(min(n_d, n_b)), 1.0)


def extract_terms(domain: Counter, background: Counter, settings: TermsConfig) -> tuple[list[dict[str, Any]],
                                                                                      dict[str, Any]]:
    """Score every domain candidate against the background and select; -> (kept TERMS rows, best
    first; the selection: candidates, what each filter dropped, kept, a0 and the totals)."""
    n_d, n_b = sum(domain.values()), sum(background.values())
    a0 = prior_size(n_d, n_b, settings.prior)
    terms = sorted(t for t, c in domain.items() if c > 0)
    y_d = np.array([domain[t] for t in terms], dtype=np.float64)
    y_b = np.array([background.get(t, 0) for t in terms], dtype=np.float64)
    delta, z = log_odds_z(y_d, y_b, n_d, n_b, a0)
    rows = [{"term": t, "kind": kind_of(t), "words": t.count(" ") + 1, "domain_count": int(d),
             "background_count": int(b), "log_odds": float(lo), "z": float(zz)}
            for t, d, b, lo, zz in zip(terms, y_d, y_b, delta, z)]
    frequent = [r for r in rows if r["domain_count"] >= settings.min_count]
    strong = [r for r in frequent if r["z"] >= settings.min_z]
    strong.sort(key=lambda r: (-r["z"], -r["domain_count"], r["term"]))
    kept = strong[:settings.max_terms]
    selection = {"candidates": len(rows),
                 "dropped": {"min_count": len(rows) - len(frequent), "min_z": len(frequent) - len(strong),
                             "max_terms": len(strong) - len(kept)},
                 "kept": len(kept), "kept_by_kind": dict(Counter(r["kind"] for r in kept)),
                 "prior_a0": a0, "occurrences": {"domain": n_d, "background": n_b}}
    return kept, selection


def _valid_graphs(column: pa.ChunkedArray) -> list[dict[str, Any]]:
    """The graphs of a GRAPH column (nulls skipped), with only the fields counting reads."""
    arr = column.combine_chunks()
    if not len(arr):
        return []
    arr = arr.filter(pc.is_valid(arr))
    fields = {name: arr.field(name).to_pylist() for name in ("lower", "pos", "sent")}
    return [{name: fields[name][i] for name in fields} for i in range(len(arr))]


def background_counts(cfg: RunConfig, max_words: int, log: Callable[[str], None] = print) -> tuple[Counter, int]:
    """Candidates of the run's training-split graphs (both texts of a pair) -> (counts, documents)."""
    counts: Counter = Counter()
    docs = 0
    for shard in sorted(stage_dir(cfg, "graphs").glob("part-*.parquet")):
        table = read_table(shard, GRAPHS)
        table = table.filter(pc.equal(table.column("split"), "train"))
        docs += table.num_rows
        for col in ("graph", "graph_b"):
            count_graphs(_valid_graphs(table.column(col)), max_words, counts)
    log(f"[terms] background: {docs:,} training documents, {sum(counts.values()):,} candidate occurrences")
    return counts, docs


def domain_counts(cfg: RunConfig, docs: list[dict[str, Any]], max_words: int,
                  log: Callable[[str], None] = print) -> Counter:
    """Candidates of the accepted domain documents, parsed with the run's graph settings (no graph
    rules, no edges: counting reads nodes, POS and sentences only)."""
    builder = GraphBuilder(cfg.graph.model_copy(update={"rules": [], "cooccurrence_edges": False,
                                                        "dependency_edges": False}))
    counts: Counter = Counter()
    for start in range(0, len(docs), PARSE_BATCH):
        batch = docs[start:start + PARSE_BATCH]
        given = [d["tokens"] for d in batch if d.get("tokens")]
        count_graphs(builder.build_pretokenized(given), max_words, counts)
        count_graphs(builder.build([d["text"] for d in batch if not d.get("tokens")]), max_words, counts)
        count_graphs(builder.build([d["text_b"] for d in batch if d.get("text_b")]), max_words, counts)
        done = start + len(batch)
        if done % LOG_EVERY < PARSE_BATCH or done == len(docs):
            log(f"[terms] domain: {done:,} of {len(docs):,} texts parsed")
    return counts


def files_fingerprint(source: str) -> dict[str, Any]:
    """sha256 of the domain input's bytes (its files in path order), and the files."""
    fs, files = resolve_files(source, "--domain")
    h = hashlib.sha256()
    for path in files:
        with fs.open_input_stream(path) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return {"sha256": h.hexdigest(), "files": files}


def _check_background(cfg: RunConfig) -> None:
    if read_manifest(cfg, "graphs") is None:
        raise StageError(f"tgd terms compares the domain texts with the run's training split, whose graphs are not "
                         f"built yet (no {stage_dir(cfg, 'graphs') / 'manifest.json'}): run `tgd graphs CONFIG` "
                         f"(or `tgd run CONFIG`) first")
    if cfg.graph.merge_repeated:
        raise StageError("tgd terms counts words and phrases in text order, but graph.merge_repeated=true graphs keep "
                         "one node per word type: build the run's graphs with graph.merge_repeated=false")


def run(cfg: RunConfig, domain_path: str | Path, out_dir: str | Path | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Find ``domain_path``'s terms against ``cfg``'s run; write OUT (default ``RUN_DIR/terms``) and
    return the summary (also ``OUT/terms.json``)."""
    t0 = time.time()
    _check_background(cfg)
    settings = cfg.terms
    out = Path(out_dir) if out_dir is not None else stage_dir(cfg, "terms")
    domain = read_domain(domain_path, cfg)
    out.mkdir(parents=True, exist_ok=True)
    domain.write_rejects(out / "rejects.parquet")
    if domain.rejects:
        log(f"[terms] {len(domain.rejects):,} of {domain.input_rows:,} domain rows rejected "
            f"({json.dumps(domain.reasons)}) -> {out / 'rejects.parquet'}")
    background, background_docs = background_counts(cfg, settings.max_words, log)
    if not background:
        raise StageError(f"the run's training split has no candidate words in {stage_dir(cfg, 'graphs')} "
                         f"({background_docs} training documents): nothing to compare the domain with")
    counts = domain_counts(cfg, domain.docs, settings.max_words, log)
    kept, selection = extract_terms(counts, background, settings)
    write_table(pa.Table.from_pylist(kept, schema=TERMS), out / "terms.parquet", TERMS)
    summary = {
        "schema_version": SCHEMA_VERSION, **selection,
        "settings": settings.model_dump(mode="json"),
        "domain": {**domain.summary(), "content_fingerprint": domain.fingerprint,
                   "fingerprint": files_fingerprint(str(domain_path))},
        "background": {"split": "train", "documents": background_docs,
                       "graphs_fingerprint": (read_manifest(cfg, "graphs") or {}).get("fingerprint")},
        "parser": cfg.graph.parser, "top": kept[:TOP_JSON], "out": str(out / "terms.parquet"),
        "seconds": round(time.time() - t0, 2),
    }
    (out / "terms.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    (out / "terms.md").write_text(markdown(kept, summary))
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    """The one line `tgd terms` ends with: what was kept and what each filter dropped."""
    s, d = summary["settings"], summary["dropped"]
    return (f"[terms] kept {summary['kept']:,} of {summary['candidates']:,} candidates (min_count {s['min_count']}: "
            f"-{d['min_count']:,}; z >= {s['min_z']}: -{d['min_z']:,}; max_terms {s['max_terms']}: "
            f"-{d['max_terms']:,}) -> {summary['out']}")


def markdown(kept: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The top terms as a Markdown table, with where they came from and what was dropped."""
    dom, s = summary["domain"], summary["settings"]
    prior = f"null (a0 = {summary['prior_a0']:,.0f})" if s["prior"] is None else f"{s['prior']:g}"
    lines = [
        "# Domain terms", "",
        f"Domain: `{dom['source']}` ({dom['accepted_rows']:,} texts, {dom['rejected_rows']:,} rejected; sha256 "
        f"{dom['fingerprint']['sha256'][:16]}). Background: the run's training split "
        f"({summary['background']['documents']:,} documents).", "",
        "K" + summary_line(summary).removeprefix("[terms] k") + ".", "",
        f"Settings: min_count {s['min_count']}, min_z {s['min_z']}, max_terms {s['max_terms']}, max_words "
        f"{s['max_words']}, prior {prior}.", "",
        "| # | term | kind | domain | background | log-odds | z |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(kept[:TOP_MD], 1):
        lines.append(f"| {i} | {r['term']} | {r['kind']} | {r['domain_count']:,} | {r['background_count']:,} | "
                     f"{r['log_odds']:.2f} | {r['z']:.2f} |")
    if len(kept) > TOP_MD:
        lines += ["", f"{len(kept) - TOP_MD:,} more in terms.parquet."]
    return "\n".join(lines) + "\n"


def read_terms(path: str | Path) -> list[str]:
    """The kept terms of a `tgd terms` output (``terms.parquet`` or its folder), best first: the
    strings ``graph.terms`` takes."""
    path = Path(path)
    path = path / "terms.parquet" if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"--terms {path}: no such terms table; `tgd terms CONFIG --domain TEXTS` writes one "
                         "(RUN_DIR/terms/terms.parquet)")
    try:
        table = read_table(path, TERMS)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"--terms {path}: not a terms table written by `tgd terms` ({e})") from None
    z = table.column("z").to_numpy()
    order = np.argsort(-z, kind="stable")
    terms = table.column("term").to_pylist()
    return [terms[i] for i in order]
