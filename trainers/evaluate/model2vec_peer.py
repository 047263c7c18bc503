"""Peer row ``model2vec``: static vectors distilled from the run's own teacher, the other cheap model a
user would deploy instead of the student (classification: with a linear classifier; pairs: their
cosine).

The model2vec recipe (Tulkens & van Dongen 2024): every token of the teacher's tokenizer is passed
through the teacher alone (``[CLS] token [SEP]``), its last-layer states mean-pooled
(``trainers.student.vocabulary.pooled_states``, the student's own initialisation recipe), the
matrix reduced by PCA to ``DIM`` and each row weighted by its frequency (SIF, Arora et al. 2017:
``a / (a + p(token))``, ``p`` from the training split's tokens, so frequent tokens count less in a
mean). A text is the mean of its tokens' vectors: a table lookup, no network at prediction time.
model2vec's own ``distill`` is not used: its extra pins an older transformers than the project's;
the recipe is these few lines. The vectors come from the fine-tuned teacher when there is one (the
model2vec library distils the base model), so the peer starts from what the student is distilled
from. The classifier is a logistic regression whose strength is chosen on validation.

Timed like every row (one thread; model only: lookup + classifier on pre-tokenised texts; end to
end: tokenise + lookup + classifier) and sized on disk (the vectors file plus the classifier).
"""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.evaluate.latency import BATCH, _timed
from trainers.evaluate.statistics import outcome
from trainers.student.vocabulary import pca, pooled_states, sif_weights

DIM = 256  # model2vec's default width
C_GRID = (0.01, 0.1, 1.0, 10.0)  # logistic-regression strengths on standardised features, chosen on validation
MODEL2VEC_TASKS = ("classification", "pair")  # tokens: a static vector per token is no tagger


@dataclass
class StaticVectors:
    """Token vectors and the tokenizer that cuts a text into those tokens."""
    tok: Any
    vectors: np.ndarray  # (tokens, DIM) float32

    def ids(self, texts: list[str]) -> list[list[int]]:
        return self.tok(list(texts), add_special_tokens=False)["input_ids"]

    def embed_ids(self, ids: list[list[int]]) -> np.ndarray:
        """Mean of each text's token vectors (zeros for a text without tokens)."""
        out = np.zeros((len(ids), self.vectors.shape[1]), np.float32)
        for i, row in enumerate(ids):
            if row:
                out[i] = self.vectors[row].mean(0)
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_ids(self.ids(texts))


def _special_template(tok) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (BERT: [CLS], [SEP])."""
    core = tok("a", add_special_tokens=False)["input_ids"]
    full = tok("a")["input_ids"]
    start = next(k for k in range(len(full)) if full[k:k + len(core)] == core)
    return full[:start], full[start + len(core):]


def distill_vectors(model_dir: str, train_texts: list[str], seed: int = 0) -> StaticVectors:
    """The model2vec recipe on the teacher at ``model_dir`` (module docstring)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    special = set(tok.all_special_ids)
    ids = [i for i in range(len(tok)) if i not in special]
    m = torch.zeros(len(tok), model.config.hidden_size)
    prefix, suffix = _special_template(tok)
    m[ids] = pooled_states(model, [prefix + [i] + suffix for i in ids], pad)
    vectors = pca(m, DIM, seed).numpy()
    vectors[sorted(special)] = 0
    counts = np.bincount(np.concatenate([np.asarray(r, np.int64) for r in tok(train_texts, add_special_tokens=False)
                                         ["input_ids"]] or [np.zeros(0, np.int64)]), minlength=len(tok))
    return StaticVectors(tok, (vectors * sif_weights(counts).numpy()[:, None]).astype(np.float32))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, (a * b).sum(1) / np.maximum(den, 1e-12), 0.0)


class Model2VecPeer:
    """Static vectors + what the task puts on them: a fitted classifier, or the cosine of two sides."""

    def __init__(self, vectors: StaticVectors, classifier=None):
        self.vectors, self.classifier = vectors, classifier

    def predict_ids(self, ids_a: list[list[int]], ids_b: list[list[int]] | None = None) -> np.ndarray:
        if self.classifier is None:
            return _cosine(self.vectors.embed_ids(ids_a), self.vectors.embed_ids(ids_b))
        return self.classifier.predict(self.vectors.embed_ids(ids_a))

    def predict(self, texts: list[str], texts_b: list[str] | None = None) -> np.ndarray:
        """The deployed path from raw text: tokenise, look up, classify (or compare)."""
        return self.predict_ids(self.vectors.ids(texts), self.vectors.ids(texts_b) if texts_b is not None else None)

    def save(self, out_dir: Path) -> float:
        """Vectors (float32 .npy) and classifier on disk; -> their size in MB."""
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / "model2vec.npy", self.vectors.vectors)
        files = [out_dir / "model2vec.npy"]
        if self.classifier is not None:
            (out_dir / "model2vec_classifier.pkl").write_bytes(pickle.dumps(self.classifier))
            files.append(out_dir / "model2vec_classifier.pkl")
        return sum(f.stat().st_size for f in files) / 1e6


def fit_classifier(vectors: StaticVectors, train: tuple[list[str], np.ndarray], val: tuple[list[str], np.ndarray],
                   score, seed: int = 0):
    """A logistic regression on the standardised mean vectors, its strength ``C`` chosen on validation by
    ``score(pred, gold)``; -> (classifier, {C: validation score})."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (xt, yt), (xv, yv) = ((vectors.embed(t), np.asarray(y)) for t, y in (train, val))
    keep, vkeep = yt >= 0, yv >= 0
    best, grid = None, {}
    for c in C_GRID:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
        clf.fit(xt[keep], yt[keep])
        grid[c] = score(clf.predict(xv[vkeep]), yv[vkeep])
        if best is None or grid[c] > grid[best[0]]:
            best = (c, clf)
    return best[1], grid


def model2vec_row(task, labels: list[str], teacher_dir: str, splits: dict[str, dict[str, Any]], teach,
                  latency_docs: int, e2e_texts: list[str], out_dir: Path, seed: int = 0,
                  log=print) -> tuple[dict[str, Any], np.ndarray | None]:
    """The ``model2vec`` row. ``splits``: per split ``{"text": [...], "text_b": [...] or None, "gold":
    array}``; ``teach``: the teacher's test predictions (agreement). -> (row, per test row its
    ``outcome``: whether it is right, or its score for a rank correlation)."""
    headline = task.headline(labels)
    t0 = time.time()
    vectors = distill_vectors(teacher_dir, splits["train"]["text"] + (splits["train"]["text_b"] or []), seed)
    t_vec = time.time() - t0
    pair = splits["test"]["text_b"] is not None
    classifier, grid = (None, None) if pair else fit_classifier(
        vectors, (splits["train"]["text"], splits["train"]["gold"]),
        (splits["validation"]["text"], splits["validation"]["gold"]),
        lambda p, g: task.scores(p, g, None, labels)[headline], seed)
    peer = Model2VecPeer(vectors, classifier)
    test = splits["test"]
    gold = np.asarray(test["gold"])
    pred = peer.predict(test["text"], test["text_b"])
    ids_a = vectors.ids(test["text"][:latency_docs])
    ids_b = vectors.ids(test["text_b"][:latency_docs]) if pair else None

    def batched(fn, n, batch):
        for i in range(0, n, batch):
            fn(i, min(i + batch, n))

    n, e2e = len(ids_a), list(e2e_texts)
    model_only = lambda i, j: peer.predict_ids(ids_a[i:j], ids_b[i:j] if pair else None)  # noqa: E731
    end_to_end = lambda i, j: peer.predict(e2e[i:j], e2e[i:j] if pair else None)  # noqa: E731 - same work per side
    row = {"model": "model2vec", **task.scores(pred, gold, np.asarray(teach), labels), "seeds": 1,
           "params": int(vectors.vectors.size + (classifier[-1].coef_.size + classifier[-1].intercept_.size
                                                 if classifier is not None else 0)),
           "size_mb": peer.save(out_dir),
           "model2vec": {"teacher": teacher_dir, "dim": DIM, "tokens": int(vectors.vectors.shape[0]),
                         "distill_s": round(t_vec, 1), **({"C": classifier[-1].C, "val_scores": grid} if grid else {})},
           "latency_ms_b1": _timed(lambda: batched(model_only, n, 1), n),
           "latency_ms_b64": _timed(lambda: batched(model_only, n, BATCH), n),
           "e2e_latency_ms_b1": _timed(lambda: batched(end_to_end, len(e2e), 1), len(e2e)),
           "e2e_latency_ms_b64": _timed(lambda: batched(end_to_end, len(e2e), BATCH), len(e2e))}
    log(f"[evaluate] model2vec peer: {row['model2vec']['tokens']:,} token vectors from {teacher_dir} in {t_vec:.0f}s"
        + (f", C {classifier[-1].C:g} chosen on validation" if classifier is not None else "")
        + f": test {headline} {row[headline]:.4f}")
    return row, outcome(task, pred, gold)
