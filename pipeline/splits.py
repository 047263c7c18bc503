"""Deterministic train / validation / test assignment: the same key gets the same split on every
machine, so a corpus re-read or re-fetched keeps its split."""
from __future__ import annotations

import hashlib

from tgd.schema import SPLITS


def hash_split(key: str, fractions=(0.8, 0.1, 0.1), salt: str = "tgd") -> str:
    """Deterministic split from a hash of the key: same key, same split, on every machine."""
    u = int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") / 2**64
    return SPLITS[0] if u < fractions[0] else SPLITS[1] if u < fractions[0] + fractions[1] else SPLITS[2]


def stratified_split(ids: list[str], labels: list[str], fractions=(0.8, 0.1, 0.1), salt: str = "tgd") -> list[str]:
    """Per label, order by hash and cut at the fractions: every class appears in every split."""
    order: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        order.setdefault(lab, []).append(i)
    out = [""] * len(ids)
    for members in order.values():
        members.sort(key=lambda i: hashlib.sha256(f"{salt}:{ids[i]}".encode()).hexdigest())
        n = len(members)
        n_val = max(1, round(n * fractions[1])) if n >= 3 else 0
        n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
        for rank, i in enumerate(members):
            out[i] = SPLITS[2] if rank < n_test else SPLITS[1] if rank < n_test + n_val else SPLITS[0]
    return out
