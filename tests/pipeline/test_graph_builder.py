"""The semantic graph builder on hand-checked input, with the real pinned spaCy model."""
from pipeline.graph_builder import GraphBuilder, chunk_text
from tgd.config import GraphConfig

SENTENCE = "The cat sat on the mat."


def edges(g, kind):
    if kind == "dep":
        return list(zip(g["dep_src"], g["dep_dst"], g["dep_rel"]))
    return list(zip(g["co_src"], g["co_dst"], g["co_weight"]))


def test_hand_checked_sentence(graph_builder):
    g = graph_builder.build([SENTENCE])[0]
    assert g["token"] == ["The", "cat", "sat", "on", "the", "mat", "."]
    assert g["lower"][0] == "the" and g["pos"] == ["DET", "NOUN", "VERB", "ADP", "DET", "NOUN", "PUNCT"]
    assert [SENTENCE[s:e] for s, e in zip(g["start"], g["end"])] == g["token"]
    # head -> child, typed by relation; the root (sat) has no incoming arc
    assert sorted(edges(g, "dep")) == sorted([
        (1, 0, "det"), (2, 1, "nsubj"), (2, 3, "prep"), (5, 4, "det"), (3, 5, "pobj"), (2, 6, "punct")])
    # window 3: every pair at distance 1 or 2; the pair (sat, the) occurs twice -> weight 1.0, others 0.5
    expected = {(0, 1): .5, (0, 2): 1., (1, 2): .5, (1, 3): .5, (2, 3): .5, (2, 4): 1., (3, 4): .5,
                (3, 5): .5, (4, 5): .5, (4, 6): .5, (5, 6): .5}
    assert {(s, d): w for s, d, w in edges(g, "co")} == expected
    assert g["num_nodes"] == 7 and set(g["sent"]) == {0}


def test_min_cooccurrence_and_window():
    g = GraphBuilder(GraphConfig(min_cooccurrence=2)).build([SENTENCE])[0]
    assert edges(g, "co") == [(0, 2, 1.0), (2, 4, 1.0)]
    g = GraphBuilder(GraphConfig(window=2, dependency_edges=False)).build([SENTENCE])[0]
    assert [(s, d) for s, d, _ in edges(g, "co")] == [(i, i + 1) for i in range(6)]
    assert g["dep_src"] == []


def test_merge_repeated_word_types():
    g = GraphBuilder(GraphConfig(merge_repeated=True)).build([SENTENCE])[0]
    assert g["lower"] == ["the", "cat", "sat", "on", "mat", "."]
    assert (4, 0, "det") in edges(g, "dep")  # mat -> the (both "the"s are node 0)
    co = {(s, d): w for s, d, w in edges(g, "co")}
    assert co[(0, 2)] == 1.0 and all(s != d for s, d in co)
    assert len(co) == len(set(co))


def test_long_text_parsed_in_chunks_keeps_offsets():
    lines = [f"Line {i} says that the quick brown fox jumps over dog number {i}." for i in range(200)]
    text = "\n".join(lines)
    pieces = chunk_text(text, 1000)
    assert "".join(p for _, p in pieces) == text and all(len(p) <= 1000 for _, p in pieces)
    assert all(text[off:off + len(p)] == p for off, p in pieces)
    b = GraphBuilder(GraphConfig(chunk_chars=1000))
    g = b.build([text])[0]
    assert [text[s:e] for s, e in zip(g["start"], g["end"])] == g["token"]
    assert g["sent"][-1] >= 199  # sentence indices keep counting across chunks
    assert max(g["dep_src"] + g["dep_dst"]) < g["num_nodes"]


def test_pretokenized_nodes_are_the_given_tokens(graph_builder):
    toks = ["New", "York", "'s", "mayor", "spoke", "."]
    g = graph_builder.build_pretokenized([toks])[0]
    assert g["token"] == toks and g["num_nodes"] == len(toks)
    text = " ".join(toks)
    assert [text[s:e] for s, e in zip(g["start"], g["end"])] == toks


def test_whitespace_tokens_are_not_nodes(graph_builder):
    g = graph_builder.build(["Hello  \n\n  world ."])[0]
    assert g["token"] == ["Hello", "world", "."]


# --- graph.parser: fast (tokenizer + rule-based sentencizer, no tagger/parser) ---

REAL = ["The film opens slowly. Then, in its second hour, it finds a rhythm that never lets go!",
        "Mr. Smith's  new novel -- all 400 pages of it -- is a mess.\n\nStill, I couldn't put it down."]


def test_fast_graphs_match_spacy_nodes_and_cooccurrence(graph_builder):
    fast = GraphBuilder(GraphConfig(parser="fast"))
    assert fast.nlp.pipe_names == ["sentencizer"]
    for text, g, f in zip(REAL, graph_builder.build(REAL), fast.build(REAL)):
        assert f["token"] == g["token"] and f["lower"] == g["lower"]
        assert (f["start"], f["end"]) == (g["start"], g["end"])
        assert edges(f, "co") == edges(g, "co") and f["co_src"]
        assert f["dep_src"] == f["dep_dst"] == f["dep_rel"] == [] and g["dep_src"]
        assert f["pos"] == ["X"] * f["num_nodes"] and f["num_nodes"] == g["num_nodes"]
    # sentence indices from the sentencizer's punctuation rules
    f = fast.build([REAL[0]])[0]
    assert f["sent"] == [0] * 5 + [1] * (f["num_nodes"] - 5)
    f = fast.build([REAL[1]])[0]
    assert f["sent"][f["token"].index("Still")] == f["sent"][-1] == max(f["sent"]) >= 1


def test_fast_ignores_dependency_edges_flag_and_keeps_chunks():
    lines = [f"Line {i} says that the quick brown fox jumps over dog number {i}." for i in range(60)]
    text = "\n".join(lines)
    g = GraphBuilder(GraphConfig(parser="fast", dependency_edges=True, chunk_chars=1000)).build([text])[0]
    assert g["dep_src"] == [] and [text[s:e] for s, e in zip(g["start"], g["end"])] == g["token"]
    # one sentence per line, counted across chunks (indices may skip: a chunk's trailing newline
    # is a whitespace-only sentence, which has no nodes)
    assert len(set(g["sent"])) == 60 and g["sent"] == sorted(g["sent"])
    assert all(len({g["sent"][i] for i, t in enumerate(g["token"]) if t == str(k)}) == 1 for k in range(60))


def test_fast_pretokenized_and_merged(graph_builder):
    toks = ["New", "York", "'s", "mayor", "spoke", ".", "He", "left", "."]
    fast = GraphBuilder(GraphConfig(parser="fast"))
    g, s = fast.build_pretokenized([toks])[0], graph_builder.build_pretokenized([toks])[0]
    assert g["token"] == toks and g["sent"] == [0] * 6 + [1] * 3 and g["dep_src"] == []
    assert edges(g, "co") == edges(s, "co")
    m = GraphBuilder(GraphConfig(parser="fast", merge_repeated=True)).build([SENTENCE])[0]
    assert m["lower"] == ["the", "cat", "sat", "on", "mat", "."] and m["dep_src"] == []


# --- POS from PosLookup (the model's attribute_ruler patterns) instead of running attribute_ruler ---

VARIED = [
    "There is nothing I ain't gonna do for you, is there?", "There were three of them; there's always more.",
    "I don't know whether that's what she meant, but it doesn't matter.", "Has he had any luck? He has.",
    "Everyone loved it, although nobody could say why.", "Being honest, I have been better.",
    "That is the film that changed everything for me.", "Which one did you buy? The one that broke.",
    "He said that he'd come if it stopped raining.", "Let's go -- we're gonna be late, y'all!",
    "Do it now, or don't do it at all.", "She's got to be kidding; he's been here since 9 a.m.",
    "Not once did they apologize.", "Well, then, here we are again!", "You yourself said it's fine.",
    "The results (see Table 2) were, frankly, underwhelming.", "It's $4.99 at the store down the street.",
    "Mr. O'Neil's dog barked at me and my brother.", "What were they thinking when they made this?",
    "All that glitters is not gold.", "Both of them did their best, but neither won.",
    "Can you believe it's over?  I can't.", "If only the script had been half as good as the cast.",
    "Whatever you do, don't watch the trailer first.", "Some like it hot; others, not so much.",
    "The director, who also wrote it, does a great job.", "Unless you're a fan, skip it.",
    "There ought to be a law against sequels like this.", "To be or not to be, that is the question.",
    "so bad it's good lol", "BEST MOVIE EVER!!!", "meh.", "I could've been a contender.",
]


def _rt_snippets(n):
    import pyarrow.parquet as pq

    from pipeline import corpora

    path = corpora.cache_dir() / "corpora" / "rt-sentiment" / "data.parquet"  # only if already fetched
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()[:n] if path.is_file() else []


def _ruler_builder():
    """Reference: the same pipeline with the real attribute_ruler run and no lookup."""
    ref = GraphBuilder(GraphConfig())
    ref.nlp.enable_pipe("attribute_ruler")
    ref.pos_of = None
    assert ref.nlp.pipe_names[-1] == "attribute_ruler"
    return ref


def test_pos_lookup_gives_the_attribute_ruler_pos(graph_builder):
    assert "attribute_ruler" not in graph_builder.nlp.pipe_names and graph_builder.pos_of is not None
    ref = _ruler_builder()
    texts = VARIED + _rt_snippets(200)
    compared = 0
    for g, r in zip(graph_builder.build(texts), ref.build(texts)):
        assert g["token"] == r["token"] and g["pos"] == r["pos"], g["token"]
        assert (g["dep_src"], g["dep_dst"], g["dep_rel"]) == (r["dep_src"], r["dep_dst"], r["dep_rel"])
        compared += len(g["pos"])
    toks = ["New", "York", "'s", "mayor", "is", "n't", "here", ";", "there", "'s", "no", "one", "."]
    assert graph_builder.build_pretokenized([toks])[0]["pos"] == ref.build_pretokenized([toks])[0]["pos"]
    assert compared > (3000 if len(texts) > 200 else 400)


def test_pos_lookup_precedence_and_operators_match_the_ruler():
    """Synthetic ruler on hand-tagged docs: last-added matching pattern wins; IN / NOT_IN / REGEX,
    booleans, multi-token patterns with positive and negative index; TAG-only patterns feed the
    fallback; patterns that set only LEMMA/MORPH are ignored even with operators."""
    import spacy
    from spacy.tokens import Doc

    from pipeline.pos_lookup import PosLookup

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("attribute_ruler")
    ruler.add_patterns([
        {"patterns": [[{"TAG": "NN"}]], "attrs": {"POS": "NOUN"}},
        {"patterns": [[{"TAG": "NN", "LOWER": {"IN": ["thing", "one"]}}]], "attrs": {"POS": "PRON"}},
        {"patterns": [[{"TAG": {"NOT_IN": ["NN", ""]}, "IS_TITLE": True}]], "attrs": {"POS": "PROPN"}},
        {"patterns": [[{"LOWER": "the"}, {"TAG": "NN"}]], "attrs": {"POS": "DET", "LEMMA": "the"}},
        {"patterns": [[{"ORTH": "big"}, {"TEXT": {"REGEX": "^t"}}]], "attrs": {"POS": "X"}, "index": -1},
        {"patterns": [[{"TAG": "VB"}]], "attrs": {"TAG": "VBX"}},
        {"patterns": [[{"LOWER": "a"}, {"OP": "?"}]], "attrs": {"LEMMA": "a"}},
        {"patterns": [[{"TAG": "NN", "LOWER": "one"}]], "attrs": {"POS": "NUM"}},
    ])
    lookup = PosLookup.from_ruler(nlp)
    words = ["The", "thing", "the", "one", "big", "thing", "Big", "Tom", "run", "a", "one"]
    tags = ["DT", "NN", "DT", "NN", "JJ", "NN", "JJ", "NNP", "VB", "DT", "NN"]
    doc = ruler(Doc(nlp.vocab, words=words, tags=tags))
    want = [t.pos_ or t.tag_ or "X" for t in doc]
    got = [lookup(t) for t in Doc(nlp.vocab, words=words, tags=tags)]
    assert got == want
    assert want == ["DET", "PRON", "DET", "NUM", "JJ", "X", "PROPN", "PROPN", "VBX", "DT", "NUM"]


def test_unrepresentable_ruler_is_kept():
    import pytest
    import spacy

    from pipeline.pos_lookup import PosLookup, UnsupportedRuler

    for pattern in ({"patterns": [[{"LOWER": "a"}, {"OP": "*"}]], "attrs": {"POS": "DET"}},
                    {"patterns": [[{"LENGTH": {">=": 3}}]], "attrs": {"POS": "NOUN"}},
                    {"patterns": [[{"IS_SPACE": False}]], "attrs": {"DEP": "dep"}}):
        nlp = spacy.blank("en")
        nlp.add_pipe("attribute_ruler").add_patterns([pattern])
        with pytest.raises(UnsupportedRuler):
            PosLookup.from_ruler(nlp)
    nlp = spacy.blank("en")
    nlp.add_pipe("attribute_ruler")
    nlp.add_pipe("sentencizer")  # the ruler must be the last enabled component
    with pytest.raises(UnsupportedRuler):
        PosLookup.from_ruler(nlp)
