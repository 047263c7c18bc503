"""Declared graph rules (``graph.rules``): domain terms (``graph.terms``) put into a built graph.

Pure functions on the graph dicts ``graph_builder.graph_from_docs`` returns (the GRAPH struct of
``tgd/schema.py``), no spaCy: the graph builder applies them to every graph it builds, so the graph
stage and prediction time (serving builds graphs with the same builder) get identical graphs.

A term occurrence is a run of consecutive nodes whose ``lower`` forms spell the term's words; runs
are found left to right, the longest term first at each position, never overlapping. A node may
itself hold several words (a term merged by an earlier rule), so matching runs over the words of
the nodes and keeps only runs that begin and end on node boundaries: ``link_terms`` after
``merge_terms`` finds the merged nodes.

Rules:
- ``merge_terms``: each occurrence becomes one node (surface tokens joined by a space, ``lower``
  the term, POS of the last token, the head of an English noun phrase), so a multi-word term has
  one vocabulary entry; arcs inside it are dropped and arcs to it re-pointed. Node order stays
  the text order, so offsets, sentence windows and teacher alignment (by offsets) keep working.
- ``link_terms``: co-occurrence edges of weight 1 between nearby occurrences (a multi-token
  occurrence is its last node). They are ordinary co-occurrence edges, not a new edge type, so a
  student's edge types do not change and a student trained without the rule still reads the graph.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Sequence

from tgd.config import GraphRule, LinkTerms, MergeTerms

NODE_FIELDS = ("token", "lower", "pos", "start", "end", "sent")
_END = ""  # trie key marking the end of a term (a real word is never empty: terms are normalised)

Occurrence = tuple[int, int, str]  # (first node, last node, term)


class TermMatcher:
    """The terms as a trie of words: matching costs the number of words times the longest term's
    length at worst, not the number of terms."""

    def __init__(self, terms: Sequence[str]):
        self.trie: dict[str, Any] = {}
        for term in terms:
            node = self.trie
            for word in term.split(" "):
                node = node.setdefault(word, {})
            node[_END] = term

    def find(self, lower: Sequence[str]) -> list[Occurrence]:
        """Occurrences in ``lower`` (one entry per node): left to right, longest first, disjoint."""
        words, node_of, first, last = [], [], [], []
        for i, form in enumerate(lower):
            parts = form.split(" ")
            for k, w in enumerate(parts):
                words.append(w)
                node_of.append(i)
                first.append(k == 0)
                last.append(k == len(parts) - 1)
        out: list[Occurrence] = []
        i = 0
        while i < len(words):
            best, node, j = None, self.trie, i
            if first[i]:
                while j < len(words) and (node := node.get(words[j])) is not None:
                    if _END in node and last[j]:
                        best = (j, node[_END])
                    j += 1
            if best is None:
                i += 1
                continue
            out.append((node_of[i], node_of[best[0]], best[1]))
            i = best[0] + 1
        return out


@lru_cache(maxsize=8)
def _matcher(terms: tuple[str, ...]) -> TermMatcher:
    return TermMatcher(terms)


def merge_terms(g: dict[str, Any], rule: MergeTerms, occurrences: list[Occurrence]) -> dict[str, Any]:
    """One node per occurrence; every other node kept, in text order."""
    if not occurrences:
        return g
    n = int(g["num_nodes"])
    new_of = [0] * n
    out: dict[str, Any] = {k: [] for k in NODE_FIELDS}
    i = 0
    spans = iter(occurrences)
    span = next(spans, None)
    while i < n:
        if span is not None and i == span[0]:
            a, b, term = span
            out["token"].append(" ".join(g["token"][a:b + 1]))
            out["lower"].append(term)
            out["pos"].append(g["pos"][b])
            out["start"].append(g["start"][a])
            out["end"].append(g["end"][b])
            out["sent"].append(g["sent"][a])
            for k in range(a, b + 1):
                new_of[k] = len(out["token"]) - 1
            i = b + 1
            span = next(spans, None)
            continue
        for k in NODE_FIELDS:
            out[k].append(g[k][i])
        new_of[i] = len(out["token"]) - 1
        i += 1
    arcs = dict.fromkeys((new_of[s], new_of[d], r) for s, d, r in zip(g["dep_src"], g["dep_dst"], g["dep_rel"]))
    arcs = [a for a in arcs if a[0] != a[1]]  # arcs inside an occurrence
    out.update(dep_src=[a[0] for a in arcs], dep_dst=[a[1] for a in arcs], dep_rel=[a[2] for a in arcs])
    co: dict[tuple[int, int], float] = {}
    for s, d, w in zip(g["co_src"], g["co_dst"], g["co_weight"]):
        s, d = sorted((new_of[s], new_of[d]))  # new_of keeps the order, so src < dst still holds
        if s != d:
            co[s, d] = max(co.get((s, d), w), w)
    out.update(co_src=[p[0] for p in co], co_dst=[p[1] for p in co], co_weight=list(co.values()))
    out["num_nodes"] = len(out["token"])
    return out


def link_terms(g: dict[str, Any], rule: LinkTerms, occurrences: list[Occurrence]) -> dict[str, Any]:
    """Co-occurrence edges (weight 1) between occurrences whose first nodes are fewer than
    ``rule.window`` apart; an existing edge between the two nodes is kept, its weight raised to 1."""
    pairs = []
    for p, (first, last, _) in enumerate(occurrences):
        for q in range(p + 1, len(occurrences)):  # occurrences come in text order: stop past the window
            if occurrences[q][0] - first >= rule.window:
                break
            pairs.append((last, occurrences[q][1]))
    if not pairs:
        return g
    co_src, co_dst, co_weight = list(g["co_src"]), list(g["co_dst"]), list(g["co_weight"])
    index = {(s, d): k for k, (s, d) in enumerate(zip(co_src, co_dst))}
    for s, d in pairs:
        if (s, d) in index:
            co_weight[index[s, d]] = max(co_weight[index[s, d]], 1.0)
        else:
            index[s, d] = len(co_src)
            co_src.append(s); co_dst.append(d); co_weight.append(1.0)
    return {**g, "co_src": co_src, "co_dst": co_dst, "co_weight": co_weight}


# rule name (its ``rule`` key) -> what it does to a graph, given the terms' occurrences in it
RULES: dict[str, Callable[[dict[str, Any], Any, list[Occurrence]], dict[str, Any]]] = {
    "merge_terms": merge_terms, "link_terms": link_terms}


def apply_rules(graph: dict[str, Any], rules: Sequence[GraphRule], terms: Sequence[str]) -> dict[str, Any]:
    """``graph`` with ``rules`` applied in the order given (``graph`` itself when there are none;
    never changed in place). ``terms``: normalised as ``GraphConfig.terms`` is (lower-cased, words
    joined by single spaces)."""
    if not rules:
        return graph
    matcher = _matcher(tuple(terms))
    for rule in rules:
        graph = RULES[rule.rule](graph, rule, matcher.find(graph["lower"]))
    return graph
