"""``student.conv: gine``: GINEConv (Hu et al. 2020) with the same typed edge embedding as
``transformer`` (type embedding + weight x learned vector): a message is relu(h_j + e_ij), summed,
then a node MLP. No per-edge attention, so each layer does a fraction of the per-edge work of
TransformerConv (one gather, add, relu and scatter against ~3 gathers, scores, a segment softmax and
weighted messages per head), which is what bounds a training step on CPU."""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GINEConv

from trainers.student.conv.base import TypedLayer


class GINELayer(TypedLayer):
    # ``heads`` is unused: every layer in ``CONVS`` takes the same arguments
    def __init__(self, hidden: int, num_edge_types: int, heads: int, dropout: float):
        super().__init__(hidden, dropout)
        self.type_emb = nn.Embedding(num_edge_types, hidden)
        self.weight_vec = nn.Parameter(torch.zeros(hidden))
        mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.conv = GINEConv(mlp, train_eps=True)

    def messages(self, h, edge_index, edge_type, edge_weight):
        e = self.type_emb(edge_type) + edge_weight.unsqueeze(-1) * self.weight_vec
        return self.conv(h, edge_index, e)
