"""Peer rows of the evaluate table: the cheap text classifier a user would deploy *instead of* the
student, row ``fasttext`` (classification only).

The baselines (``baselines.py``) answer "does the graph / the teacher help this student?"; a peer
answers "why deploy the student at all?". Supervised fastText (Joulin et al. 2017, "Bag of Tricks
for Efficient Text Classification") is the classic answer: a linear model over averaged word and
word-bigram embeddings, trained in seconds on one CPU thread and served in microseconds per
document, and within a few points of far larger models on sentiment and topic classification. It
trains on the same training documents and labels as the ``bow`` row, picks its epochs and learning
rate on the validation split, and is scored on the test split, timed end to end from the raw text
(preprocessing + predict) and sized on disk (the file ``save_model`` writes), like the student
rows, so the table says what the student buys over it.
"""
from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainers.evaluate.latency import BATCH, _timed

# epochs x learning rate, chosen on validation. fastText's own guidance for supervised models
# tunes exactly these two (5 to 50 epochs, lr 0.1 to 1.0); a peer held to the library default (5
# epochs at lr 0.1, which under-fits small corpora) would flatter the student, and nine fits on one
# thread stay cheap next to one student's training. A fit whose loss diverges (fastText raises
# "Encountered NaN", at a high lr) is recorded as failed and skipped.
GRID = {"epoch": (5, 10, 25), "lr": (0.1, 0.5, 1.0)}
NGRAMS = 2  # word bigrams: the "bag of tricks" setting that closes most of the gap to deeper models
# Embedding width: the 10 hidden units Joulin et al. use for sentiment and topic classification,
# not the library's 100 (a word-vector default). On rt-sentiment 10 scored level with 100 at a tenth
# of the size on disk and of the fit time; the file holds (words + bigrams) x DIM floats.
DIM = 10
SEED = 0  # the initial vectors, and fastText's own generator: with thread=1 a fit is repeatable
PEER_TASKS = ("classification",)  # fastText predicts one label per document: no peer for tokens or pairs
LABEL = "<label>"  # fastText's label prefix: no token of ``preprocess`` starts with it (unlike "__label__")
EOS = "</s>"  # the end-of-line word fastText adds to every line, so it has an input vector too

# Why the bigrams are tokens of their own and every input vector is handed to fastText (its
# ``pretrainedVectors``) rather than ``wordNgrams=2`` and fastText's own initialisation: since
# upstream commit b733943 (2024; the source fasttext-numpy2-wheel 0.9.2 is built from) the input
# matrix is allocated without being cleared, and ``uniform`` initialises only a tenth of its rows per
# training thread, so with thread=1 the other rows start as whatever the allocator returned: fits
# differ from run to run and some stop with "Encountered NaN" even at lr 0.1. Bigram tokens ("a|b":
# no single token looks like one) make every row a vocabulary row, all of which the vectors file
# sets: the model is fastText's bag of words and bigrams (exact bigrams, no hashed buckets) from a
# seeded uniform initialisation, the same on every run.
_TOKEN = re.compile(r"\w+|[^\w\s]")  # words and single punctuation marks


def tokens(text: str) -> list[str]:
    """Lowercased words and punctuation marks."""
    return _TOKEN.findall(text.lower())


def preprocess(text: str) -> str:
    """One document as fastText reads it, at training and prediction time alike: its tokens, then
    its word bigrams as tokens, on one line."""
    toks = tokens(text)
    return " ".join(toks + [f"{a}|{b}" for a, b in zip(toks, toks[1:])])


def _predict_lines(model, lines: list[str], fallback: int) -> np.ndarray:
    out, _ = model.predict(lines, k=1)
    return np.array([int(o[0][len(LABEL):]) if o else fallback for o in out], dtype=np.int64)


@dataclass
class FastTextPeer:
    """A fitted fastText classifier over label indices, its chosen settings, the validation score of
    every grid point, and its saved model file."""
    model: Any
    settings: dict[str, Any]
    grid: list[dict[str, Any]]
    path: Path
    fallback: int  # the most frequent training label: the prediction for a line fastText returns no label for
    num_labels: int

    def predict_lines(self, lines: list[str]) -> np.ndarray:
        """Label index per preprocessed line (batched: fastText's multi-line predict)."""
        return _predict_lines(self.model, lines, self.fallback)

    def predict(self, texts: list[str]) -> np.ndarray:
        """Label index per raw text: preprocessing + predict, the deployed path."""
        return self.predict_lines([preprocess(t) for t in texts])

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6

    @property
    def params(self) -> int:
        """Input vectors (words and bigrams) and the output layer."""
        return (len(self.model.words) + self.num_labels) * self.model.get_dimension()


def _initial_vectors(lines: list[str], path: Path) -> int:
    """Write a seeded uniform(-1/DIM, 1/DIM) vector (fastText's own initialisation) for every token
    of ``lines`` and the end-of-line word as a .vec file; -> how many."""
    vocab = sorted({w for line in lines for w in line.split()} | {EOS})
    vec = np.random.default_rng(SEED).uniform(-1 / DIM, 1 / DIM, (len(vocab), DIM))
    with path.open("w", encoding="utf-8") as f:
        f.write(f"{len(vocab)} {DIM}\n")
        f.writelines(f"{w} {' '.join(f'{x:.5f}' for x in v)}\n" for w, v in zip(vocab, vec))
    return len(vocab)


def _fit(train_file: Path, vectors: Path, vocab_size: int, epoch: int, lr: float):
    import fasttext

    # wordNgrams=1 and no character n-grams: no hashed buckets, so every input row is a vocabulary row
    model = fasttext.train_supervised(str(train_file), epoch=epoch, lr=lr, dim=DIM, wordNgrams=1, minn=0, maxn=0,
                                      minCount=1, loss="softmax", label=LABEL, pretrainedVectors=str(vectors),
                                      thread=1, seed=SEED, verbose=0)
    if len(model.words) != vocab_size:  # a word without an initial vector would start uninitialised
        raise AssertionError(f"fastText peer: {len(model.words)} words, {vocab_size} initial vectors")
    return model


def train_fasttext(train_texts: list[str], train_labels, val_texts: list[str], val_labels, num_labels: int,
                   out_dir: Path, score=None, log=print) -> FastTextPeer:
    """Fit one model per ``GRID`` point on the training texts (label indices; ``-1``: unlabelled,
    skipped), keep the one with the best validation ``score(pred, gold) -> float`` (accuracy unless
    given; ties: the earlier, cheaper point) and save it to ``out_dir/fasttext.bin``."""
    score = score or (lambda p, g: float(np.mean(p == g)) if len(g) else 0.0)
    train_labels, val_labels = np.asarray(train_labels), np.asarray(val_labels)
    keep = train_labels >= 0
    lines = [preprocess(t) for t, k in zip(train_texts, keep) if k]
    y = train_labels[keep]
    if not lines:
        raise ValueError("fastText peer: no labelled training documents")
    vkeep = val_labels >= 0
    val_lines = [preprocess(t) for t, k in zip(val_texts, vkeep) if k]
    val_gold = val_labels[vkeep]
    fallback = int(np.bincount(y, minlength=num_labels).argmax())
    out_dir.mkdir(parents=True, exist_ok=True)
    grid, best, best_model = [], None, None
    t0 = time.time()
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        train_file, vectors = Path(tmp) / "train.txt", Path(tmp) / "init.vec"
        train_file.write_text("".join(f"{LABEL}{int(c)} {line}\n" for c, line in zip(y, lines)), encoding="utf-8")
        vocab_size = _initial_vectors(lines, vectors)
        for epoch in GRID["epoch"]:
            for lr in GRID["lr"]:
                try:
                    model = _fit(train_file, vectors, vocab_size, epoch, lr)
                except RuntimeError as e:  # fastText stops a fit whose loss diverged ("Encountered NaN")
                    grid.append({"epoch": epoch, "lr": lr, "val_score": None, "failed": str(e)})
                    continue
                s = score(_predict_lines(model, val_lines, fallback), val_gold)
                grid.append({"epoch": epoch, "lr": lr, "val_score": s})
                if best is None or s > best["val_score"]:
                    best, best_model = grid[-1], model
    if best is None:
        raise RuntimeError(f"fastText peer: every setting of the grid failed: {grid}")
    path = out_dir / "fasttext.bin"
    best_model.save_model(str(path))
    settings = {"epoch": best["epoch"], "lr": best["lr"], "ngrams": NGRAMS, "dim": DIM, "vocabulary": vocab_size,
                "val_score": best["val_score"]}
    log(f"[evaluate] fastText peer: {len(grid)} settings fitted in {time.time() - t0:.1f}s, chosen on validation: "
        f"epoch {best['epoch']}, lr {best['lr']:g} (validation {best['val_score']:.4f})")
    return FastTextPeer(best_model, settings, grid, path, fallback, num_labels)


def fasttext_latency(peer: FastTextPeer, model_texts: list[str], e2e_texts: list[str]) -> dict[str, float]:
    """Milliseconds per document on one thread: model only (predict on preprocessed lines of
    ``model_texts``) and end to end from raw ``e2e_texts`` (preprocessing + predict), at batch 1
    and batch ``BATCH``."""
    lines = [preprocess(t) for t in model_texts]
    peer.predict_lines(lines[:5])  # warm-up

    def batched(fn, items, batch):
        for i in range(0, len(items), batch):
            fn(items[i:i + batch])

    return {"latency_ms_b1": _timed(lambda: batched(peer.predict_lines, lines, 1), len(lines)),
            "latency_ms_b64": _timed(lambda: batched(peer.predict_lines, lines, BATCH), len(lines)),
            "e2e_latency_ms_b1": _timed(lambda: batched(peer.predict, e2e_texts, 1), len(e2e_texts)),
            "e2e_latency_ms_b64": _timed(lambda: batched(peer.predict, e2e_texts, BATCH), len(e2e_texts))}


def fasttext_row(task, labels: list[str], train: tuple[list[str], Any], val: tuple[list[str], Any],
                 test: tuple[list[str], Any], teach, e2e_texts: list[str], latency_docs: int, out_dir: Path,
                 log=print) -> tuple[dict[str, Any], np.ndarray | None]:
    """The ``fasttext`` row: (texts, gold label indices) of each split; ``teach``: the teacher's test
    predictions (agreement). Scored by ``task.scores`` like every other row; -> (row, per test
    document whether it is right)."""
    headline = task.headline(labels)
    peer = train_fasttext(*train, *val, len(labels), out_dir,
                          score=lambda p, g: task.scores(p, g, None, labels)[headline], log=log)
    texts, gold = test
    gold = np.asarray(gold)
    pred = peer.predict(texts)
    row = {"model": "fasttext", **task.scores(pred, gold, np.asarray(teach), labels), "seeds": 1,
           "params": peer.params, "size_mb": peer.size_mb, "fasttext": peer.settings, "fasttext_grid": peer.grid,
           **fasttext_latency(peer, texts[:latency_docs], e2e_texts)}
    return row, task.row_correct(pred, gold)
