"""The model2vec peer (trainers/evaluate/model2vec_peer.py) on a tiny random BERT: one static vector per
tokenizer token, frequent tokens weighted down (SIF), a classifier chosen on validation that learns
a separable corpus, the cosine for pairs, and the row's latency and size columns."""
from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.teacher_fixtures import tiny_bert
from trainers.evaluate.model2vec_peer import C_GRID, DIM, Model2VecPeer, distill_vectors, model2vec_row
from trainers.tasks import get_task

POS, NEG = ["great", "good"], ["dull", "bad"]


def reviews(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = [f"the film was {rng.choice(POS if label else NEG)}" for label in y]
    return {"text": texts, "text_b": None, "gold": y}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return str(tiny_bert(tmp_path_factory.mktemp("m2v") / "bert", seed=4))


def test_vectors_one_per_token_frequent_tokens_weighted_down(teacher):
    v = distill_vectors(teacher, ["the the the the film"] * 20)
    assert v.vectors.shape == (len(v.tok), DIM)  # PCA rank 32 (the teacher's width), zero-padded to DIM
    the, film, other = (v.tok.convert_tokens_to_ids(t) for t in ("the", "film", "great"))
    assert not np.allclose(v.vectors[film], v.vectors[other])  # tokens get their own vectors
    ratio = np.linalg.norm(v.vectors[the]) / np.linalg.norm(v.vectors[film])
    unweighted = distill_vectors(teacher, ["x"]).vectors  # a corpus without them: (nearly) full weight
    full = np.linalg.norm(unweighted[the]) / np.linalg.norm(unweighted[film])
    assert ratio < full  # "the" is 4x as frequent as "film": SIF shrinks it more
    assert np.all(v.vectors[v.tok.all_special_ids] == 0)
    emb = v.embed(["the film", ""])
    assert emb.shape == (2, v.vectors.shape[1]) and np.all(emb[1] == 0)


def test_classification_row_learns_and_is_timed(teacher, tmp_path):
    task, labels = get_task("classification"), ["rotten", "fresh"]
    splits = {"train": reviews(200, 0), "validation": reviews(80, 1), "test": reviews(80, 2)}
    row, ok = model2vec_row(task, labels, teacher, splits, splits["test"]["gold"], 20, splits["test"]["text"][:10],
                            tmp_path, log=lambda m: None)
    assert row["accuracy"] > 0.9 and ok.shape == (80,) and ok.mean() == pytest.approx(row["accuracy"])
    assert row["model2vec"]["C"] in C_GRID and set(row["model2vec"]["val_scores"]) == set(C_GRID)
    assert row["size_mb"] == pytest.approx(sum(f.stat().st_size for f in tmp_path.iterdir()) / 1e6)
    for key in ("latency_ms_b1", "latency_ms_b64", "e2e_latency_ms_b1", "e2e_latency_ms_b64"):
        assert row[key] > 0


def test_pair_row_is_the_cosine_of_the_sides(teacher, tmp_path):
    task = get_task("pair")
    a = ["the film was great", "the film was dull", "good", "bad film"]
    b = ["the film was great", "great", "the film was dull", "bad film"]
    gold = np.array([1.0, 0.2, 0.1, 0.9])
    split = {"text": a, "text_b": b, "gold": gold}
    row, ok = model2vec_row(task, [], teacher, {"train": split, "validation": split, "test": split}, gold, 4, a,
                            tmp_path, log=lambda m: None)
    assert -1 <= row["spearman"] <= 1 and "C" not in row["model2vec"]
    peer = Model2VecPeer(distill_vectors(teacher, a + b))
    sim = peer.predict(a, b)
    assert ok == pytest.approx(sim)  # a rank correlation's outcome for the paired intervals: the scores
    assert sim[0] == pytest.approx(1.0) and sim[3] == pytest.approx(1.0)  # identical sides
    assert np.all(sim[1:3] < 1 - 1e-4)
