"""Stage 3's temperature: per sample, from how sure the teacher is (the adaptive stage of the curriculum)."""
from __future__ import annotations

import torch

from trainers.tasks.scores import normalized_entropy


def adaptive_temperature(teacher_logits: torch.Tensor, t_min: float, t_max: float) -> torch.Tensor:
    """Stage-3 rule, per sample: T = t_min + (t_max - t_min) * (1 - H_norm(teacher)).
    A confident teacher is softened more (its dark knowledge is otherwise invisible); an unsure one
    is kept near t_min (softening an already flat distribution only adds noise)."""
    return t_min + (t_max - t_min) * (1.0 - normalized_entropy(teacher_logits))
