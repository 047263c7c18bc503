"""Graph readout: node states -> one vector per graph (or per pair side). ``attention``: attention
pooling (a learned gate per node) concatenated with mean and max; ``meanmax``: mean and max alone."""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import AttentionalAggregation, global_max_pool, global_mean_pool


class Readout(nn.Module):
    def __init__(self, hidden: int, kind: str):
        super().__init__()
        self.kind = kind
        self.att = AttentionalAggregation(nn.Linear(hidden, 1)) if kind == "attention" else None
        self.out_dim = hidden * (3 if kind == "attention" else 2)

    def forward(self, h, batch, size=None):
        parts = [global_mean_pool(h, batch, size), global_max_pool(h, batch, size)]
        if self.att is not None:
            parts.append(self.att(h, batch, dim_size=size))
        return torch.cat(parts, -1)
