"""Seeds derived per (run seed, epoch, worker rank): every epoch of every worker draws its own random
stream, and a resumed epoch replays exactly the stream it had (nothing depends on what ran before).
The multipliers are primes larger than any epoch count or world size, so no two triples collide."""
from __future__ import annotations


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """torch's global seed for one epoch of one worker (dropout, shuffles)."""
    return seed * 100_003 + epoch * 101 + rank


def sampler_seed(seed: int, epoch: int, rank: int) -> int:
    """The subgraph sampler's generator seed, a stream apart from ``epoch_seed``'s."""
    return seed * 7919 + epoch * 31 + rank
