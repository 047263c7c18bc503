"""``student.conv: rgcn``: RGCNConv with basis decomposition (one weight matrix per relation, built from
shared bases); edge weights are ignored."""
from __future__ import annotations

from torch_geometric.nn import RGCNConv

from trainers.student.conv.base import TypedLayer


class RGCNLayer(TypedLayer):
    # ``heads`` is unused: every layer in ``CONVS`` takes the same arguments
    def __init__(self, hidden: int, num_edge_types: int, heads: int, dropout: float):
        super().__init__(hidden, dropout)
        self.conv = RGCNConv(hidden, hidden, num_edge_types, num_bases=min(8, num_edge_types))

    def messages(self, h, edge_index, edge_type, edge_weight):
        return self.conv(h, edge_index, edge_type)
