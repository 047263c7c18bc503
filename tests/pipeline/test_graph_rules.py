"""Declared graph rules (graph.rules on graph.terms): hand-made graphs for the rule functions, the real
spaCy pipeline through GraphBuilder, the package round trip of the config, and config validation."""
from __future__ import annotations

import copy
import json

import pyarrow as pa
import pytest
from pydantic import ValidationError

from pipeline.graph_builder import GraphBuilder, graph_from_docs
from pipeline.graph_rules import RULES, TermMatcher, apply_rules
from tgd.config import RULE_MODELS, RULE_NAMES, ConfigError, GraphConfig, LinkTerms, MergeTerms, RunConfig, load_config
from tgd.schema import GRAPHS

GRAPH_TYPE = GRAPHS.field("graph").type


def graph(tokens, dep=(), co=(), pos=None, sent=None):
    """A graph dict as graph_from_docs returns it, for ``tokens`` joined by single spaces."""
    start, end, at = [], [], 0
    for t in tokens:
        start.append(at)
        end.append(at + len(t))
        at += len(t) + 1
    return {"token": list(tokens), "lower": [t.lower() for t in tokens], "pos": list(pos or ["NOUN"] * len(tokens)),
            "start": start, "end": end, "sent": list(sent or [0] * len(tokens)),
            "dep_src": [d[0] for d in dep], "dep_dst": [d[1] for d in dep], "dep_rel": [d[2] for d in dep],
            "co_src": [c[0] for c in co], "co_dst": [c[1] for c in co], "co_weight": [c[2] for c in co],
            "num_nodes": len(tokens)}


def dep(g):
    return list(zip(g["dep_src"], g["dep_dst"], g["dep_rel"]))


def co(g):
    return {(s, d): w for s, d, w in zip(g["co_src"], g["co_dst"], g["co_weight"])}


TOKENS = ["the", "Federal", "Government", "raised", "the", "tax"]
POS = ["DET", "ADJ", "PROPN", "VERB", "DET", "NOUN"]


def government_graph():
    return graph(TOKENS, pos=POS, sent=[0, 0, 0, 0, 0, 1],
                 dep=[(2, 0, "det"), (2, 1, "amod"), (3, 2, "nsubj"), (3, 1, "nmod"), (3, 2, "nmod"),
                      (3, 5, "dobj"), (5, 4, "det")],
                 co=[(0, 1, .5), (0, 2, 1.), (1, 2, .5), (1, 3, .5), (2, 3, .25), (3, 4, .5), (4, 5, .5)])


# --- the rules on hand-made graphs ---

def test_merge_repoints_arcs_and_drops_inner_ones():
    g = government_graph()
    before = copy.deepcopy(g)
    m = apply_rules(g, [MergeTerms()], ["federal government"])
    assert g == before  # not changed in place
    assert m["token"] == ["the", "Federal Government", "raised", "the", "tax"]
    assert m["lower"] == ["the", "federal government", "raised", "the", "tax"]
    assert m["pos"] == ["DET", "PROPN", "VERB", "DET", "NOUN"]  # the last token's POS
    assert (m["start"][1], m["end"][1]) == (g["start"][1], g["end"][2]) and m["sent"] == [0, 0, 0, 0, 1]
    assert m["num_nodes"] == 5
    # the amod arc inside the term is gone, the two nmod arcs became one, the rest re-pointed
    assert dep(m) == [(1, 0, "det"), (2, 1, "nsubj"), (2, 1, "nmod"), (2, 4, "dobj"), (4, 3, "det")]
    # (0,1) and (0,2) meet: the larger weight stays; (1,2) became a self-loop; (1,3) and (2,3) meet
    assert co(m) == {(0, 1): 1.0, (1, 2): .5, (2, 3): .5, (3, 4): .5}
    assert all(s < d for s, d in co(m))
    pa.array([m], type=GRAPH_TYPE)  # still a GRAPHS row


def test_link_adds_edges_within_the_window_and_not_beyond():
    g = graph(["tax", "a", "b", "tax", "c", "d", "e", "tax"], co=[(0, 1, .5), (0, 3, .25)])
    linked = apply_rules(g, [LinkTerms(window=4)], ["tax"])
    # starts 0 and 3 are fewer than 4 apart: the existing edge is kept, its weight raised to 1;
    # 3 and 7 (4 apart) and 0 and 7 are not linked
    assert co(linked) == {(0, 1): .5, (0, 3): 1.0} and len(linked["co_src"]) == 2
    wider = apply_rules(g, [LinkTerms(window=5)], ["tax"])
    assert co(wider) == {(0, 1): .5, (0, 3): 1.0, (3, 7): 1.0}
    assert linked["token"] == g["token"] and dep(linked) == dep(g) and linked["num_nodes"] == 8
    assert co(g) == {(0, 1): .5, (0, 3): .25}  # not changed in place
    pa.array([wider], type=GRAPH_TYPE)


def test_link_uses_the_last_token_of_an_unmerged_term():
    g = graph(["federal", "government", "raised", "tax", "x", "y", "tax"])
    linked = apply_rules(g, [LinkTerms(window=4)], ["federal government", "tax"])
    # occurrences start at 0, 3 and 6: (0, 3) and (3, 6) are within 4; node of the first is 1
    assert co(linked) == {(1, 3): 1.0, (3, 6): 1.0}


def test_rules_run_in_order_and_link_finds_merged_terms():
    g = government_graph()
    m = apply_rules(g, [MergeTerms(), LinkTerms(window=4)], ["federal government", "tax"])
    assert m["lower"][1] == "federal government" and co(m)[(1, 4)] == 1.0  # merged node linked to "tax"
    assert m["num_nodes"] == 5
    pa.array([m], type=GRAPH_TYPE)


def test_longest_match_wins_left_to_right_without_overlap():
    terms = ["new", "new york", "new york city", "york city hall"]
    match = TermMatcher(terms).find
    assert match("in new york city hall today".split()) == [(1, 3, "new york city")]
    assert match("the new york times".split()) == [(1, 2, "new york")]
    assert match("new new york".split()) == [(0, 0, "new"), (1, 2, "new york")]
    assert match("nothing here".split()) == []
    # a node holding several words (an earlier merge) matches only as a whole
    assert TermMatcher(["new", "york"]).find(["new york", "city"]) == []
    assert TermMatcher(["new york city"]).find(["new york", "city"]) == [(0, 1, "new york city")]
    g = graph("in new york city hall".split())
    assert apply_rules(g, [MergeTerms()], terms)["lower"] == ["in", "new york city", "hall"]


def test_no_rules_is_the_identity():
    g = government_graph()
    assert apply_rules(g, [], ["tax"]) is g
    assert apply_rules(g, [MergeTerms()], ["absent term"]) == g
    assert GraphConfig().rules == [] and GraphConfig().terms == []


def test_every_declared_rule_has_an_implementation_and_documented_keys():
    assert set(RULES) == set(RULE_NAMES) == {"merge_terms", "link_terms"}
    assert all((f.description or "").strip() for m in RULE_MODELS for f in m.model_fields.values())
    assert all((m.__doc__ or "").strip() for m in RULE_MODELS)


# --- the real spaCy pipeline through GraphBuilder ---

TEXT = "The Federal Government raised the tax. Critics said the new tax hurt the federal  government."
TERMS = ["federal government", "tax"]


def test_configured_term_becomes_one_node_with_spacy(graph_builder):
    cfg = GraphConfig(rules=[{"rule": "merge_terms"}, {"rule": "link_terms", "window": 10}], terms=TERMS)
    builder = GraphBuilder(cfg)
    plain, g = graph_builder.build([TEXT])[0], builder.build([TEXT])[0]
    merged = [i for i, w in enumerate(g["lower"]) if w == "federal government"]
    assert len(merged) == 2 and g["num_nodes"] == plain["num_nodes"] - 2
    assert [g["token"][i] for i in merged] == ["Federal Government", "federal government"]
    assert [TEXT[g["start"][i]:g["end"][i]] for i in merged] == ["Federal Government", "federal  government"]
    assert g["pos"][merged[0]] == plain["pos"][plain["token"].index("Government")]  # the last token's POS
    # arcs re-pointed: every node index valid, no self-loop, the merged node still in the parse
    arcs = dep(g)
    assert all(s != d and max(s, d) < g["num_nodes"] for s, d, _ in arcs)
    assert any(merged[0] in (s, d) for s, d, _ in arcs)
    # link_terms: the two "tax" nodes and the first term node are within 10 nodes of each other
    taxes = [i for i, w in enumerate(g["lower"]) if w == "tax"]
    assert co(g)[(merged[0], taxes[0])] == 1.0 and co(g)[(taxes[0], taxes[1])] == 1.0
    # the same rules as applying them to the rule-free graph
    assert g == apply_rules(plain, cfg.rules, cfg.terms)
    pa.array([g], type=GRAPH_TYPE)
    # given tokens (the token task's path): link_terms keeps one node per token
    toks = ["The", "Federal", "Government", "raised", "the", "tax", "."]
    t = GraphBuilder(GraphConfig(rules=["link_terms"], terms=TERMS)).build_pretokenized([toks])[0]
    assert t["token"] == toks and t["num_nodes"] == len(toks)
    assert co(t)[(2, 5)] == 1.0  # the term's last token and "tax", 4 nodes apart (beyond graph.window)
    assert builder.build_pretokenized([toks])[0]["num_nodes"] == len(toks) - 1  # merge_terms applies here too


def test_package_round_trip_builds_the_same_graphs(graph_builder):
    """serving/export.py stores ``cfg.graph.model_dump(mode="json")`` in package.json and load_package
    rebuilds the builder with ``GraphConfig(**meta["graph"])``: the rules and terms come back and the
    graphs built from them are the same."""
    cfg = GraphConfig(rules=[MergeTerms(), LinkTerms(window=6)], terms=TERMS)
    stored = json.loads(json.dumps({"graph": cfg.model_dump(mode="json")}))
    assert stored["graph"]["rules"] == [{"rule": "merge_terms"}, {"rule": "link_terms", "window": 6}]
    back = GraphConfig(**stored["graph"])
    assert back == cfg
    doc = next(graph_builder.nlp.pipe([TEXT]))
    built = graph_from_docs([(doc, 0)], cfg, graph_builder.pos_of)
    assert graph_from_docs([(doc, 0)], back, graph_builder.pos_of) == built
    assert "federal government" in built["lower"]


# --- config validation ---

def test_rules_and_terms_are_in_the_graph_fingerprint():
    a = load_config(None)
    b = load_config(None, ["graph.rules=[link_terms]", "graph.terms=[tax]"])
    c = load_config(None, ["graph.rules=[link_terms]", "graph.terms=[tax, federal government]"])
    d = load_config(None, ["graph.rules=[{rule: link_terms, window: 4}]", "graph.terms=[tax]"])
    assert len({x.section_hash("graph") for x in (a, b, c, d)}) == 4
    assert b.graph.rules == [LinkTerms()] and d.graph.rules == [LinkTerms(window=4)]


def test_terms_are_normalised():
    g = GraphConfig(terms=["  Federal   Government ", "tax", "TAX", "", "  ", "federal government"])
    assert g.terms == ["federal government", "tax"]


def test_token_task_refuses_merge_terms_but_takes_link_terms():
    with pytest.raises(ConfigError, match="link_terms instead"):
        load_config(None, ["data.task=token", "graph.rules=[merge_terms]", "graph.terms=[tax]"])
    with pytest.raises(ValidationError, match="merge_terms"):
        RunConfig.model_validate({"data": {"task": "token"},
                                  "graph": {"rules": [{"rule": "merge_terms"}], "terms": ["tax"]}})
    cfg = load_config(None, ["data.task=token", "graph.rules=[{rule: link_terms, window: 5}]", "graph.terms=[tax]"])
    assert cfg.graph.rules == [LinkTerms(window=5)]


def test_rules_without_terms_are_refused():
    with pytest.raises(ConfigError, match="graph.rules needs graph.terms: run `tgd terms`"):
        load_config(None, ["graph.rules=[merge_terms]"])


def test_unknown_rule_names_the_known_ones():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["graph.rules=[{rule: split_terms}]", "graph.terms=[tax]"])
    assert "graph.rules" in str(e.value) and "'split_terms'" in str(e.value)
    assert "merge_terms, link_terms" in str(e.value)
    with pytest.raises(ConfigError, match="no rule key"):
        load_config(None, ["graph.rules=[{window: 3}]", "graph.terms=[tax]"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["graph.rules=[{rule: merge_terms, window: 3}]", "graph.terms=[tax]"])
    with pytest.raises(ConfigError, match="graph.rules.0"):
        load_config(None, ["graph.rules=[{rule: link_terms, window: 1}]", "graph.terms=[tax]"])


def test_rules_refuse_merge_repeated():
    with pytest.raises(ConfigError, match="graph.merge_repeated=false or graph.rules=\\[\\]"):
        load_config(None, ["graph.merge_repeated=true", "graph.rules=[link_terms]", "graph.terms=[tax]"])
