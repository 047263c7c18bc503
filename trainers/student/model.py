"""The student: word + POS embeddings -> typed message passing -> readout -> task head.

It needs only the text graph at inference (never the teacher). The task adapter names the head:
``graph`` reads out a document vector (attention pooling concatenated with mean and max, or
mean+max alone); ``node`` classifies every node; ``pair`` encodes both sides with the same encoder
and scores [u, v, |u-v|, u*v]. ``forward_parts`` encodes a long document as several subgraphs and reads out
over all their nodes at once (decomposed prediction with bounded memory).
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Data

from trainers.student.dropout import Dropout
from trainers.student.encoder import Encoder
from trainers.student.readout import Readout
from trainers.tasks import get_task


class Student(nn.Module):
    def __init__(self, vocab_size: int, num_pos: int, num_edge_types: int, num_labels: int, cfg, task: str = "classification"):
        super().__init__()
        self.task, self.kind, h = task, get_task(task).head, cfg.hidden
        self.hidden = h
        self.word = nn.Embedding(vocab_size, h, padding_idx=0)
        self.pos = nn.Embedding(num_pos, cfg.pos_dim)
        self.inp = nn.Sequential(nn.Linear(h + cfg.pos_dim, h), nn.LayerNorm(h))
        self.drop = Dropout(cfg.dropout)
        self.encoder = Encoder(h, num_edge_types, cfg.layers, cfg.heads, cfg.conv, cfg.dropout)
        self.readout = Readout(h, cfg.readout)
        d = {"graph": self.readout.out_dim, "node": h, "pair": 4 * self.readout.out_dim}[self.kind]
        self.head = nn.Sequential(nn.Linear(d, h), nn.ReLU(), Dropout(cfg.dropout), nn.Linear(h, num_labels))

    def node_states(self, data) -> torch.Tensor:
        x = self.inp(torch.cat([self.word(data.x_tok), self.pos(data.x_pos)], -1))
        return self.encoder(self.drop(x), data.edge_index, data.edge_type, data.edge_weight)

    def graph_vector(self, h, data) -> torch.Tensor:
        return self.readout(h, data.batch, getattr(data, "num_graphs", None))

    def pair_vectors(self, h, data) -> tuple[torch.Tensor, torch.Tensor]:
        """One vector per side of each pair: a pair is one graph whose nodes carry ``side`` (0: A,
        1: B; no edge between the sides), read out per (pair, side)."""
        zeros = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        batch = data.batch if getattr(data, "batch", None) is not None else zeros
        side = data.side if getattr(data, "side", None) is not None else zeros
        n = int(getattr(data, "num_graphs", None) or 1)
        z = self.readout(h, batch * 2 + side, 2 * n).view(n, 2, -1)
        return z[:, 0], z[:, 1]

    def pair_output(self, u, v) -> torch.Tensor:
        """Per pair: [cosine(u, v), logits of the head over [u, v, |u-v|, u*v] (none without labels)]."""
        sim = torch.cosine_similarity(u, v, dim=-1).unsqueeze(-1)
        return torch.cat([sim, self.head(torch.cat([u, v, (u - v).abs(), u * v], -1))], -1)

    def forward(self, data):
        """-> (logits, node states). Logits are per graph (classification), per node (token) or per
        pair (similarity, then label logits)."""
        h = self.node_states(data)
        if self.kind == "node":
            return self.head(h), h
        if self.kind == "pair":
            return self.pair_output(*self.pair_vectors(h, data)), h
        return self.head(self.graph_vector(h, data)), h

    @torch.no_grad()
    def forward_parts(self, parts) -> torch.Tensor:
        """Decomposed prediction for one document (parts from ``subgraph.decompose``): encode each
        part, keep its core nodes (``part.core``; its halo only gives them their neighbourhood),
        read out over the core nodes of all parts."""
        h = torch.cat([self.node_states(p)[p.core] if "core" in p else self.node_states(p) for p in parts])
        batch = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        if self.kind == "node":
            return self.head(h)
        if self.kind == "pair":  # the parts' nodes keep their side
            side = torch.cat([p.side[p.core] if "core" in p else p.side for p in parts])
            whole = Data(batch=batch, side=side, num_nodes=h.shape[0])
            return self.pair_output(*self.pair_vectors(h, whole))
        return self.head(self.readout(h, batch, 1))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
