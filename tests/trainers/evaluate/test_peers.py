"""The fastText peer (real fastText, no mocks) on a small learnable corpus: epochs and learning rate
are chosen on validation, the saved model is the chosen one, it beats the majority class on test,
its latencies and size on disk are reported, and a fit is repeatable."""
from __future__ import annotations

import fasttext
import numpy as np

from trainers.evaluate import peers
from trainers.tasks import get_task

FILLER = "the a film movie story plot actor scene it was and of this one script ending music cast".split()
POS, NEG = ["good", "great", "moving", "fun"], ["bad", "dull", "boring", "weak"]


def corpus(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Reviews with one sentiment word among fillers; "not" before it flips the label (a bigram to
    learn); capitals and punctuation exercise the preprocessing; 5% of the labels are flipped and
    positive reviews are the majority."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        pos = rng.random() < 0.6
        negated = rng.random() < 0.25
        word = str(rng.choice(POS if pos != negated else NEG))
        phrase = ("not " if negated else "") + word
        words = [str(w) for w in rng.choice(FILLER, size=int(rng.integers(5, 12)))]
        words.insert(int(rng.integers(len(words) + 1)), phrase.upper() if rng.random() < 0.3 else phrase)
        texts.append(" ".join(words).capitalize() + rng.choice([".", "!", "?!"]))
        labels.append(int(pos if rng.random() > 0.05 else not pos))
    return texts, np.array(labels)


def test_fasttext_peer_is_chosen_on_validation_and_beats_the_majority(tmp_path):
    train, val, test = corpus(300, 0), corpus(120, 1), corpus(120, 2)
    task, labels = get_task("classification"), ["rotten", "fresh"]
    teach = test[1].copy()
    teach[:10] = 1 - teach[:10]  # a teacher wrong on 10 documents
    logs: list[str] = []
    row, ok = peers.fasttext_row(task, labels, train, val, test, teach, test[0][:20], 50, tmp_path / "peers",
                                 logs.append)
    assert row["model"] == "fasttext" and row["seeds"] == 1 and "chosen on validation" in logs[0]
    # the grid: every point scored on validation (or failed), and the chosen point is the best one
    grid = row["fasttext_grid"]
    assert [(g["epoch"], g["lr"]) for g in grid] == [(e, lr) for e in peers.GRID["epoch"] for lr in peers.GRID["lr"]]
    scored = [g for g in grid if g["val_score"] is not None]
    best = max(scored, key=lambda g: g["val_score"])  # max keeps the first of ties, as the fit does
    chosen = row["fasttext"]
    assert (chosen["epoch"], chosen["lr"]) == (best["epoch"], best["lr"]) and chosen["val_score"] == best["val_score"]
    assert chosen["ngrams"] == 2 and chosen["dim"] == peers.DIM
    # the saved file is the chosen model, and its score is the validation score (not test)
    path = tmp_path / "peers" / "fasttext.bin"
    model = fasttext.load_model(str(path))
    pred_val = np.array([int(p[0][len(peers.LABEL):]) for p in model.predict([peers.preprocess(t) for t in val[0]])[0]])
    assert round(float(np.mean(pred_val == val[1])), 4) == chosen["val_score"]  # task.scores rounds to 4 places
    assert abs(row["size_mb"] - path.stat().st_size / 1e6) < 1e-9 and row["size_mb"] > 0 and row["params"] > 0
    # test: well above the majority class; the per-document correctness backs the accuracy
    majority = max(np.mean(test[1]), 1 - np.mean(test[1]))
    assert row["accuracy"] > majority + 0.1 and 0 < row["macro_f1"] <= 1
    assert ok.shape == (120,) and abs(ok.mean() - row["accuracy"]) < 1e-4
    pred_test = np.where(ok, test[1], 1 - test[1])
    assert abs(row["agreement"] - np.mean(pred_test == teach)) < 1e-9
    for key in ("latency_ms_b1", "latency_ms_b64", "e2e_latency_ms_b1", "e2e_latency_ms_b64"):
        assert row[key] > 0
    # repeatable: thread=1 and a fixed seed give the same grid and the same model again
    again, ok_again = peers.fasttext_row(task, labels, train, val, test, teach, test[0][:5], 5, tmp_path / "again",
                                         lambda _: None)
    assert again["fasttext_grid"] == grid and (ok_again == ok).all()
    assert (tmp_path / "again" / "fasttext.bin").read_bytes() == path.read_bytes()


def test_preprocessing_lowercases_splits_and_adds_the_word_bigrams():
    assert peers.preprocess("Not GOOD, it's\n dull!") == ("not good , it ' s dull ! "
                                                          "not|good good|, ,|it it|' '|s s|dull dull|!")
    assert "\n" not in peers.preprocess("two\nlines")  # fastText predicts one line per document
    assert peers.preprocess("") == "" and peers.preprocess("Word") == "word"
