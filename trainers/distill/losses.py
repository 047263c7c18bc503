"""Distillation losses on logits: hard-label CE and Hinton's temperature KL (x T^2).

``kd_kl`` accepts a scalar or a per-sample temperature (``trainers.distill.temperature``); the T^2
factor keeps the gradient scale of the soft term independent of T (Hinton et al., 2015). The
representation loss is the attention bridge (``trainers.distill.bridge``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ignoring targets < 0 (unlabelled / unaligned); 0 for a batch without any target."""
    if not bool((target >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=-1)


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature,
          weight: torch.Tensor | None = None) -> torch.Tensor:
    """mean_i T_i^2 * KL(softmax(t_i / T_i) || softmax(s_i / T_i)); with ``weight``, the weighted mean
    (0 when every weight is 0)."""
    t = torch.as_tensor(temperature, dtype=student_logits.dtype, device=student_logits.device)
    t = t.reshape(-1, 1) if t.dim() else t.reshape(1, 1)
    log_p_s = F.log_softmax(student_logits / t, -1)
    log_p_t = F.log_softmax(teacher_logits / t, -1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1) * t.reshape(-1) ** 2
    if weight is None:
        return kl.mean()
    return (kl * weight).sum() / weight.sum().clamp_min(1.0)
