"""Domain terms (pipeline/terms.py): the log-odds scoring, the filters and their counts, phrase
candidates on hand-made graphs, and `tgd terms` end to end on a small real run."""
import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq

from pipeline.terms import count_candidates, extract_terms, log_odds_z, read_terms
from tests.fixtures.cli_process import one_error_line
from tests.fixtures.teacher_fixtures import review_corpus
from tgd.cli import main
from tgd.config import TermsConfig
from tgd.schema import REJECTS, TERMS


def _graph(words, pos, sent=None):
    """A graph dict with only what counting reads; ``words`` as they appear (lower-cased here)."""
    return {"lower": [w.lower() for w in words], "pos": pos, "sent": sent or [0] * len(words)}


def test_log_odds_z_separates_domain_words_from_shared_ones():
    # counts out of 10,000 domain and 100,000 background occurrences
    delta, z = log_odds_z(np.array([40, 100, 1000]), np.array([0, 1000, 10]), 10_000, 100_000, 10_000)
    assert z[0] > 5 and delta[0] > 0  # frequent in the domain, never in the background
    assert abs(z[1]) < 0.5  # the same rate in both
    assert z[2] > z[0]  # more evidence, larger z
    _, z_back = log_odds_z(np.array([1]), np.array([1000]), 10_000, 100_000, 10_000)
    assert z_back[0] < -5  # a background word scores negative


def test_extract_terms_filters_and_counts():
    background = Counter({"film": 500, "great": 300, "actor": 200, "good": 100, "plot": 100, "great film": 80,
                          "plot twist": 20})
    domain = Counter({"photon": 40, "entanglement": 30, "good": 10, "qubit": 2, "photon detectors": 12,
                      "great film": 1})
    settings = TermsConfig(min_count=3, min_z=3.0, max_terms=2)
    kept, sel = extract_terms(domain, background, settings)
    assert [r["term"] for r in kept] == ["photon", "entanglement"]  # highest z first, max_terms=2
    assert sel["candidates"] == 6
    # qubit and great film: too rare; good: as common in the background; photon detectors: past max_terms
    assert sel["dropped"] == {"min_count": 2, "min_z": 1, "max_terms": 1}
    assert sel["kept"] == 2 and sel["kept_by_kind"] == {"word": 2}
    assert kept[0]["domain_count"] == 40 and kept[0]["background_count"] == 0 and kept[0]["words"] == 1
    kept, sel = extract_terms(domain, background, settings.model_copy(update={"max_terms": 10}))
    assert {r["term"]: r["kind"] for r in kept} == {"photon": "word", "entanglement": "word",
                                                    "photon detectors": "phrase"}
    assert sel["dropped"]["max_terms"] == 0 and [r["z"] for r in kept] == sorted((r["z"] for r in kept), reverse=True)
    assert sel["prior_a0"] == min(sum(domain.values()), sum(background.values()))  # terms.prior null
    assert "good" not in {r["term"] for r in kept}  # in the domain, but as common in the background


def test_phrase_candidates_runs_and_their_endings():
    g = _graph("The new federal income tax was raised . Tax rules , income tax and photon detectors".split(),
               ["DET", "ADJ", "ADJ", "NOUN", "NOUN", "AUX", "VERB", "PUNCT",
                "NOUN", "NOUN", "PUNCT", "NOUN", "NOUN", "CCONJ", "NOUN", "NOUN"],
               [0] * 8 + [1] * 8)
    c = count_candidates(g, max_words=4)
    assert {p: n for p, n in c.items() if " " in p} == {
        "new federal income tax": 1, "federal income tax": 1, "income tax": 2, "tax rules": 1, "photon detectors": 1}
    assert c["tax"] == 3 and c["raised"] == 1 and "the" not in c and "was" not in c and "." not in c
    assert "new federal income tax" not in count_candidates(g, max_words=3)  # longer than max_words
    # a run must end on a noun; sentences cut runs
    c = count_candidates(_graph("quantum detectors are cold . Photon detectors".split(),
                                ["ADJ", "NOUN", "AUX", "ADJ", "PUNCT", "NOUN", "NOUN"], [0, 0, 0, 0, 0, 1, 1]), 4)
    assert {p for p in c if " " in p} == {"quantum detectors", "photon detectors"}
    c = count_candidates(_graph(["tax", "income"], ["NOUN", "NOUN"], [0, 1]), 4)
    assert "tax income" not in c


def test_fast_parser_phrases_are_runs_of_content_words():
    words = "the photon detectors measured quantum entanglement , we did".split()
    c = count_candidates(_graph(words, ["X"] * len(words)), 4)
    # POS "X" is unknown: any run of non-stop content words, its endings of 2..max_words words
    assert {p for p in c if " " in p} == {"quantum entanglement", "measured quantum entanglement",
                                          "detectors measured quantum entanglement"}
    assert c["photon"] == 1 and c["measured"] == 1 and "we" not in c and "did" not in c


def test_merged_term_nodes_count_as_their_words():
    # a background graph built with graph.rules merge_terms ("income tax" one node) counts like token nodes
    merged = count_candidates(_graph(["federal", "income tax", "rules"], ["ADJ", "NOUN", "NOUN"]), 4)
    tokens = count_candidates(_graph(["federal", "income", "tax", "rules"], ["ADJ", "NOUN", "NOUN", "NOUN"]), 4)
    assert merged == tokens and merged["income"] == merged["tax"] == merged["federal income tax rules"] == 1


DOMAIN = [
    "Quantum entanglement links the photon detectors in the laboratory.",
    "The photon detectors register quantum entanglement between distant qubits.",
    "Researchers measured quantum entanglement with cooled photon detectors.",
    "Each experiment calibrates the photon detectors before the quantum entanglement test.",
    "Photon detectors and quantum entanglement remain central to quantum optics.",
]


def test_terms_cli_end_to_end(ray_local, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({"run_dir": str(tmp_path / "run"), "ray": {"num_workers": 2},
                               "data": {"source": str(review_corpus(tmp_path / "reviews.jsonl", n=150))}}))
    domain = tmp_path / "domain.jsonl"
    rows = [{"text": f"{s} ({i})"} for i in range(8) for s in DOMAIN]  # distinct texts: duplicates are refused
    rows.insert(3, {"text": ""})  # a bad row
    domain.write_text("".join(json.dumps(r) + "\n" for r in rows))

    # before the graph stage: refused with one line naming the command to run
    assert main(["terms", str(cfg), "--domain", str(domain)]) == 2
    assert "tgd graphs" in one_error_line(capsys.readouterr().err)

    assert main(["graphs", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["terms", str(cfg), "--domain", str(domain), "--set", "terms.max_terms=10"]) == 0
    out = capsys.readouterr().out
    assert "[terms] kept " in out and "max_terms 10:" in out and "1 of 41 domain rows rejected" in out

    terms_dir = tmp_path / "run" / "terms"
    table = pq.read_table(terms_dir / "terms.parquet")
    assert table.schema.equals(TERMS, check_metadata=False)
    kept = read_terms(terms_dir)
    assert kept == table.column("term").to_pylist() and 0 < len(kept) <= 10
    assert {"quantum entanglement", "photon detectors", "quantum", "photon"} <= set(kept)
    vocabulary = {w.strip(".").lower() for text in DOMAIN for w in text.split()}
    assert all(set(t.split()) <= vocabulary for t in kept)  # domain words only, none of the reviews'
    assert set(table.column("background_count").to_pylist()) == {0}

    rejects = pq.read_table(terms_dir / "rejects.parquet")
    assert rejects.schema.equals(REJECTS, check_metadata=False)
    assert rejects.column("row").to_pylist() == [3] and rejects.column("reason").to_pylist() == ["empty text"]

    summary = json.loads((terms_dir / "terms.json").read_text())
    assert summary["domain"]["accepted_rows"] == 40 and summary["domain"]["rejected_rows"] == 1
    assert len(summary["domain"]["fingerprint"]["sha256"]) == 64 and summary["kept"] == len(kept)
    assert summary["candidates"] == summary["kept"] + sum(summary["dropped"].values())
    assert "| 1 | " in (terms_dir / "terms.md").read_text()

    assert main(["terms", str(cfg), "--domain", str(tmp_path / "missing.jsonl")]) == 2
    assert "not found" in one_error_line(capsys.readouterr().err)
