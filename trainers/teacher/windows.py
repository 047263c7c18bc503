"""Windows: every input is cut into windows of at most ``teacher.max_length`` tokens (special tokens
or the causal-lm prompt included) overlapping by ``teacher.stride`` tokens, so a long document is
seen whole (up to ``teacher.max_windows`` windows) instead of only its first 512 tokens. Windows
are built from one tokenization of the whole text, so every sub-word keeps its character offsets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Encoded:
    """One text tokenized once: sub-word ids with character offsets, and its windows."""
    ids: np.ndarray
    start: np.ndarray
    end: np.ndarray
    windows: list[tuple[int, int]]  # [a, b) token ranges fed to the teacher
    truncated: bool


class Windower:
    """Cuts tokenized texts into overlapping windows and wraps them in special tokens / the prompt."""

    def __init__(self, tokenizer, max_length: int, stride: int, max_windows: int, prompt: str | None = None):
        self.tok = tokenizer
        probe = tokenizer("a", add_special_tokens=True)["input_ids"]
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        at = next(i for i in range(len(probe)) if probe[i:i + len(bare)] == bare)
        self.prefix, self.suffix = list(probe[:at]), list(probe[at + len(bare):])
        if prompt is not None:  # causal-lm: specials + prompt head + text + prompt tail
            head, tail = prompt.split("{text}")
            self.prefix += tokenizer(head, add_special_tokens=False)["input_ids"] if head else []
            self.suffix = (tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []) + self.suffix
        self.body = max_length - len(self.prefix) - len(self.suffix)
        if self.body < 1:
            raise ValueError(f"teacher.max_length={max_length} leaves no room for text after "
                             f"{len(self.prefix) + len(self.suffix)} special/prompt tokens")
        if stride >= self.body:
            raise ValueError(f"teacher.stride={stride} must be smaller than the {self.body} text tokens per window")
        self.step = self.body - stride
        self.max_windows = max_windows

    def spans(self, n: int) -> list[tuple[int, int]]:
        """All windows covering ``n`` tokens; the last one ends exactly at n."""
        if n <= self.body:
            return [(0, n)]
        out, a = [], 0
        while a + self.body < n:
            out.append((a, a + self.body))
            a += self.step
        out.append((max(n - self.body, 0), n))
        return out

    def encode(self, texts: list[str]) -> list[Encoded]:
        enc = self.tok(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for ids, offs in zip(enc["input_ids"], enc["offset_mapping"]):
            offs = np.asarray(offs, dtype=np.int64).reshape(-1, 2)
            spans = self.spans(len(ids))
            out.append(Encoded(np.asarray(ids, dtype=np.int64), offs[:, 0], offs[:, 1],
                               spans[: self.max_windows], len(spans) > self.max_windows))
        return out

    def wrap(self, ids: np.ndarray) -> list[int]:
        return self.prefix + [int(i) for i in ids] + self.suffix
