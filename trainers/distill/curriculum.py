"""The three-stage curriculum and easy-to-hard pacing.

Stages (epochs per stage in ``distill``): ``align`` (attention-bridge loss only; when the teacher
stored no node states, KL on logits stands in), ``fusion`` (CE + KL at fixed T, + bridge),
``adaptive`` (CE + KL at the per-sample temperature of ``temperature.adaptive_temperature``). A stage with
0 epochs is skipped (ablation); without a teacher every epoch is plain CE.

Difficulty of a training document = mean of two ranks in [0, 1]: the teacher's normalised entropy
(an unsure teacher marks a hard or ambiguous document; per node for token labelling, averaged over
the document; without a teacher this term is dropped) and
the graph size (log node count). Pacing (root competence, Platanios et al. 2019): in epoch e the
easiest ``c(e) = min(1, sqrt(c0^2 + (1 - c0^2) * e / E))`` fraction is used, shuffled, with
c0 = ``pace_start`` and E = ``pace_epochs``. Off: every document every epoch.
"""
from __future__ import annotations

import math

import numpy as np

from trainers.tasks.scores import normalized_entropy  # noqa: F401  (the difficulty's teacher term)


def _rank(x: np.ndarray) -> np.ndarray:
    """Rank in [0, 1]; ties share the lowest rank."""
    x = np.asarray(x, dtype=np.float64)
    return np.searchsorted(np.sort(x), x).astype(np.float64) / max(len(x) - 1, 1)


def difficulty(num_nodes: np.ndarray, uncertainty: np.ndarray | None = None) -> np.ndarray:
    """Per document: mean of the size rank and, with a teacher, the rank of its uncertainty (the
    task adapter's normalised teacher entropy: of the document's logits, or averaged over nodes)."""
    size = _rank(np.log1p(np.asarray(num_nodes, dtype=np.float64)))
    if uncertainty is None or len(uncertainty) == 0:
        return size
    return 0.5 * (_rank(uncertainty) + size)


def competence(epoch: int, start: float, ramp_epochs: int) -> float:
    return min(1.0, math.sqrt(start ** 2 + (1 - start ** 2) * epoch / ramp_epochs))


def select(diff: np.ndarray, epoch: int, enabled: bool, start: float, ramp_epochs: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the documents to train on in ``epoch``, in training order."""
    if not enabled:
        return rng.permutation(len(diff))
    k = max(1, math.ceil(competence(epoch, start, ramp_epochs) * len(diff)))
    easiest = np.argsort(diff, kind="stable")[:k]
    return easiest[rng.permutation(k)]


def stages(epochs_align: int, epochs_fusion: int, epochs_adaptive: int, use_teacher: bool) -> list[str]:
    """Stage name of every epoch, in order."""
    if not use_teacher:
        return ["ce"] * (epochs_align + epochs_fusion + epochs_adaptive)
    return ["align"] * epochs_align + ["fusion"] * epochs_fusion + ["adaptive"] * epochs_adaptive
