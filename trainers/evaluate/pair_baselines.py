"""The non-graph baseline of the pair task, row ``bow``: TF-IDF cosine, no training.

Each side is a bag of words (log counts x idf, the idf from the training pairs' sides, each side one
document; ``<pad>``/``<unk>`` dropped) and the pair's similarity is the cosine of the two vectors.
Same interface as the other non-graph baselines (``trainers.evaluate.baselines``): ``featurize(list
of word ids per example) -> x`` and ``forward(x) -> outputs`` laid out like the pair student's
(column 0: the similarity). An example's word ids are ``(side A ids, side B ids)``
(``Task.words``); a single tensor, as the end-to-end latency path gives for one raw text, is
compared with itself (same work per side as a pair).
"""
from __future__ import annotations

import torch
from torch import nn


class TfidfCosine(nn.Module):
    trainable = False  # nothing to fit: train_baseline only scores it on validation

    def __init__(self, vocab_size: int, hidden: int = 0, num_labels: int = 0, train_words=()):
        super().__init__()
        df = torch.zeros(vocab_size)
        n = 0
        for example in train_words:
            for side in _sides(example):
                df[torch.unique(side)] += 1
                n += 1
        self.register_buffer("idf", torch.log((1 + n) / (1 + df)) + 1)
        self.vocab_size = vocab_size

    def _vector(self, ids: torch.Tensor) -> torch.Tensor:
        x = torch.zeros(self.vocab_size)
        x.index_add_(0, ids, torch.ones(len(ids)))
        x = torch.log1p(x) * self.idf
        x[:2] = 0  # <pad>, <unk>
        return x

    def featurize(self, words: list) -> torch.Tensor:
        """(examples, 2, vocabulary) TF-IDF vectors of the two sides."""
        if not words:
            return torch.zeros(0, 2, self.vocab_size)
        return torch.stack([torch.stack([self._vector(s) for s in _sides(w)]) for w in words])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """-> (examples, 1): the cosine of the sides (0 where a side has no known word)."""
        a, b = x[:, 0], x[:, 1]
        den = (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-8)
        return ((a * b).sum(-1) / den).unsqueeze(-1)


def _sides(example) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(example) if isinstance(example, (tuple, list)) else (example, example)
