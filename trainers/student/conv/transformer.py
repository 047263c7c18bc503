"""``student.conv: transformer`` (default): TransformerConv whose attention and messages see an edge
embedding = type embedding + weight x learned vector, so dependency relations, their reverses and
weighted co-occurrence edges are told apart with few parameters (the embedding costs ``types x hidden``).

The edge embedding is linear in (type, weight), and so is TransformerConv's edge projection: the layer
projects the type table and the weight vector once per batch and gathers, instead of projecting every
edge (an edges x hidden x hidden matmul per layer, forward and backward, the largest single cost of
a training step). Same function and the same parameters as plain ``TransformerConv``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import TransformerConv
from torch_geometric.utils import softmax

from trainers.student.conv.base import TypedLayer
from trainers.student.dropout import dropout


class ProjectedEdgeTransformerConv(TransformerConv):
    """``TransformerConv`` whose ``edge_attr`` arrives already multiplied by ``lin_edge`` (the weight
    stays here, so checkpoints keep their keys)."""

    def message(self, query_i: torch.Tensor, key_j: torch.Tensor, value_j: torch.Tensor, edge_attr: torch.Tensor,
                index: torch.Tensor, ptr: torch.Tensor | None, size_i: int | None) -> torch.Tensor:
        e = edge_attr.view(-1, self.heads, self.out_channels)
        alpha = (query_i * (key_j + e)).sum(dim=-1) / math.sqrt(self.out_channels)
        alpha = softmax(alpha, index, ptr, size_i)
        alpha = dropout(alpha, self.dropout, self.training)
        return (value_j + e) * alpha.view(-1, self.heads, 1)


class TransformerLayer(TypedLayer):
    def __init__(self, hidden: int, num_edge_types: int, heads: int, dropout: float):
        super().__init__(hidden, dropout)
        self.type_emb = nn.Embedding(num_edge_types, hidden)
        self.weight_vec = nn.Parameter(torch.zeros(hidden))
        self.conv = ProjectedEdgeTransformerConv(hidden, hidden // heads, heads=heads, edge_dim=hidden, dropout=dropout)

    def messages(self, h, edge_index, edge_type, edge_weight):
        w = self.conv.lin_edge.weight  # (lin_edge(type_emb[t] + weight * vec) = table[t] + weight * lin_edge(vec))
        e = F.linear(self.type_emb.weight, w)[edge_type] + edge_weight.unsqueeze(-1) * F.linear(self.weight_vec, w)
        return self.conv(h, edge_index, e)
