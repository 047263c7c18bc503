"""The student's message-passing stack: ``student.layers`` layers of the ``student.conv`` kind
(``trainers.student.conv``), each typed by the edge's relation."""
from __future__ import annotations

from torch import nn

from trainers.student.conv import CONVS


class Encoder(nn.Module):
    def __init__(self, hidden: int, num_edge_types: int, layers: int, heads: int, conv: str, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(CONVS[conv](hidden, num_edge_types, heads, dropout) for _ in range(layers))

    def forward(self, h, edge_index, edge_type, edge_weight):
        for layer in self.layers:
            h = layer(h, edge_index, edge_type, edge_weight)
        return h
