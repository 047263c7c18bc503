"""The attention bridge: the representation-level distillation loss between the teacher's token
states and the student's node states (stage 1 trains it alone, later stages add it to the KD loss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import to_dense_batch


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
