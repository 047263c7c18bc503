"""Edge-type-aware message passing over the text graph.

``transformer`` (default): TransformerConv whose attention and messages see an edge embedding =
type embedding + weight x learned vector, so dependency relations, their reverses and weighted
co-occurrence edges are told apart with few parameters (the embedding costs ``types x hidden``).
``rgcn``: RGCNConv with basis decomposition (one weight matrix per relation, shared bases); edge
weights are ignored. Both keep a residual path + LayerNorm so deep stacks and isolated nodes work.
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import RGCNConv, TransformerConv


class TypedLayer(nn.Module):
    def __init__(self, hidden: int, num_edge_types: int, heads: int, conv: str, dropout: float):
        super().__init__()
        self.kind = conv
        if conv == "transformer":
            self.type_emb = nn.Embedding(num_edge_types, hidden)
            self.weight_vec = nn.Parameter(torch.zeros(hidden))
            self.conv = TransformerConv(hidden, hidden // heads, heads=heads, edge_dim=hidden, dropout=dropout)
        else:
            self.conv = RGCNConv(hidden, hidden, num_edge_types, num_bases=min(8, num_edge_types))
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, edge_index, edge_type, edge_weight):
        if self.kind == "transformer":
            e = self.type_emb(edge_type) + edge_weight.unsqueeze(-1) * self.weight_vec
            m = self.conv(h, edge_index, e)
        else:
            m = self.conv(h, edge_index, edge_type)
        return self.norm(h + self.drop(torch.relu(m)))


class Encoder(nn.Module):
    def __init__(self, hidden: int, num_edge_types: int, layers: int, heads: int, conv: str, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(TypedLayer(hidden, num_edge_types, heads, conv, dropout) for _ in range(layers))

    def forward(self, h, edge_index, edge_type, edge_weight):
        for layer in self.layers:
            h = layer(h, edge_index, edge_type, edge_weight)
        return h
