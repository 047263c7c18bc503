"""Distillation losses: hard-label CE, Hinton's temperature KL (x T^2) and the attention bridge.

``kd_kl`` accepts a scalar or a per-sample temperature; the T^2 factor keeps the gradient scale of
the soft term independent of T (Hinton et al., 2015). ``adaptive_temperature`` is stage 3's rule.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import to_dense_batch


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


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) divided by log(C): 0 = one-hot, 1 = uniform."""
    logp = F.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1])


def adaptive_temperature(teacher_logits: torch.Tensor, t_min: float, t_max: float) -> torch.Tensor:
    """Stage-3 rule, per sample: T = t_min + (t_max - t_min) * (1 - H_norm(teacher)).
    A confident teacher is softened more (its dark knowledge is otherwise invisible); an unsure one
    is kept near t_min (softening an already flat distribution only adds noise)."""
    return t_min + (t_max - t_min) * (1.0 - normalized_entropy(teacher_logits))


class AttentionBridge(nn.Module):
    """Cross-attention with the teacher's token states as queries and the student's node states as
    keys/values, plus a direct learned projection of each node state. The loss pulls both views
    (attended and projected) towards the teacher's states (1 - cosine) over aligned nodes. Used only
    in training; the deployed student never sees it."""

    def __init__(self, hidden: int, state_dim: int, attn_dim: int = 64):
        super().__init__()
        self.q = nn.Linear(state_dim, attn_dim)
        self.k = nn.Linear(hidden, attn_dim)
        self.v = nn.Linear(hidden, state_dim)
        self.proj = nn.Linear(hidden, state_dim)
        self.scale = attn_dim ** -0.5

    def forward(self, h, batch, t_states, t_mask) -> torch.Tensor:
        if not bool(t_mask.any()):
            return h.sum() * 0.0
        H, node_mask = to_dense_batch(h, batch)
        T, _ = to_dense_batch(t_states, batch)
        M, _ = to_dense_batch(t_mask, batch, fill_value=False)
        att = (self.q(T) @ self.k(H).transpose(1, 2)) * self.scale
        att = att.masked_fill(~node_mask.unsqueeze(1), float("-inf")).softmax(-1)
        attended = att @ self.v(H)
        valid = M & node_mask
        l_att = 1 - F.cosine_similarity(attended[valid], T[valid], dim=-1).mean()
        l_proj = 1 - F.cosine_similarity(self.proj(h)[t_mask], t_states[t_mask], dim=-1).mean()
        return 0.5 * (l_att + l_proj)
