"""What every student layer shares: h -> LayerNorm(h + dropout(relu(messages))). The residual path keeps
deep stacks trainable and gives isolated nodes (no edges) their own state back."""
from __future__ import annotations

import torch
from torch import nn

from trainers.student.dropout import Dropout


class TypedLayer(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.drop = Dropout(dropout)

    def messages(self, h, edge_index, edge_type, edge_weight) -> torch.Tensor:
        """The aggregated messages of every node (hidden wide)."""
        raise NotImplementedError

    def forward(self, h, edge_index, edge_type, edge_weight):
        return self.norm(h + self.drop(torch.relu(self.messages(h, edge_index, edge_type, edge_weight))))
