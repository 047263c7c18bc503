"""The three-stage curriculum, declared as data, and easy-to-hard pacing.

Each stage is one entry of ``STAGES``: the weight of each loss term in its step loss (a function of
the ``distill`` settings) and its temperature rule, so the step loss is one weighted sum and a new
stage is a new entry. Stages (epochs per stage in ``distill``): ``align`` (attention-bridge loss
only; when there is no bridge, the teacher stored no node states, KD stands in), ``fusion``
((1 - alpha_kl) CE + alpha_kl KD at the fixed temperature + beta_bridge bridge), ``adaptive``
(fusion at the per-sample temperature of ``temperature.adaptive_temperature``). A stage with 0
epochs is skipped (ablation); without a teacher every epoch is ``ce``, the gold loss alone.

Difficulty of a training document = mean of two ranks in [0, 1]: the teacher's normalised entropy
(an unsure teacher marks a hard or ambiguous document; per node for token labelling, averaged over
the document; without a teacher this term is dropped) and
the graph size (log node count). Pacing (root competence, Platanios et al. 2019): in epoch e the
easiest ``c(e) = min(1, sqrt(c0^2 + (1 - c0^2) * e / E))`` fraction is used, shuffled, with
c0 = ``pace_start`` and E = ``pace_epochs``. Off: every document every epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class CurriculumStage:
    """One stage: ``weights`` maps the ``distill`` settings to the weight of each loss term the stage
    trains (``ce``: gold labels, ``kd``: the teacher's outputs, ``bridge``: the teacher's states; a
    term it does not name is not computed), ``without_bridge`` the term that takes the bridge's
    place (weight 1) when there is no bridge, ``temperature`` its rule ("fixed": distill.temperature;
    "adaptive": per sample, from the teacher's entropy)."""
    name: str
    weights: Callable[[Any], dict[str, float]]
    without_bridge: str | None = None
    temperature: str = "fixed"
    uses_teacher: bool = True
    colour: str = "#fff"  # learning-curve shading


def _fusion(d) -> dict[str, float]:
    return {"ce": 1 - d.alpha_kl, "kd": d.alpha_kl, "bridge": d.beta_bridge}


STAGES: dict[str, CurriculumStage] = {s.name: s for s in (
    CurriculumStage("ce", lambda d: {"ce": 1.0}, uses_teacher=False, colour="#eee"),
    CurriculumStage("align", lambda d: {"bridge": 1.0}, without_bridge="kd", colour="#dde"),
    CurriculumStage("fusion", _fusion, colour="#ded"),
    CurriculumStage("adaptive", _fusion, temperature="adaptive", colour="#edd"),
)}


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


def select(diff: np.ndarray, epoch: int, enabled: bool, start: float, ramp_epochs: int,
           rng: np.random.Generator) -> np.ndarray:
    """Indices of the documents to train on in ``epoch``, in training order."""
    if not enabled:
        return rng.permutation(len(diff))
    k = max(1, math.ceil(competence(epoch, start, ramp_epochs) * len(diff)))
    easiest = np.argsort(diff, kind="stable")[:k]
    return easiest[rng.permutation(k)]


def stages(epochs_align: int, epochs_fusion: int, epochs_adaptive: int, use_teacher: bool) -> list[str]:
    """Stage name (a key of ``STAGES``) of every epoch, in order."""
    if not use_teacher:
        return ["ce"] * (epochs_align + epochs_fusion + epochs_adaptive)
    return ["align"] * epochs_align + ["fusion"] * epochs_fusion + ["adaptive"] * epochs_adaptive
