"""The universal POS that a spaCy pipeline's ``attribute_ruler`` would set, without running it.

The graph needs only the coarse POS of each token. en_core_web_sm's attribute_ruler also sets
MORPH/LEMMA on every token through Python (~1 ms per rt-sentiment snippet, a quarter of the
student's end-to-end latency at batch 64), so ``PosLookup`` compiles the ruler's own POS/TAG
patterns at load time and ``replace_attribute_ruler`` disables the ruler when they compile; a
ruler with patterns the lookup cannot represent stays enabled (logged), so POS is always the
ruler's.
"""
from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger(__name__)


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


def replace_attribute_ruler(nlp, name: str = "") -> PosLookup | None:
    """Disable ``nlp``'s attribute_ruler and return the lookup standing in for it; None (ruler
    kept, or absent) when its patterns cannot be compiled."""
    if "attribute_ruler" not in nlp.pipe_names:
        return None
    try:
        lookup = PosLookup.from_ruler(nlp)
    except UnsupportedRuler as e:
        log.warning("spaCy model %r: keeping attribute_ruler enabled (slower), its patterns cannot be "
                    "replaced by the POS lookup: %s", name, e)
        return None
    nlp.disable_pipe("attribute_ruler")
    return lookup
