"""The student: word + POS embeddings -> typed message passing -> readout -> task head.

It needs only the text graph at inference (never the teacher). A head kind with a static path
(documents and pairs, ``student.static_path``) also gets a frozen table of the teacher's static
word vectors (``trainers.student.vocabulary.static_word_vectors``): each node's row is appended to
its state, so the head can read both and every form (whole, parts, export) carries it the same way.
The task adapter names the head kind (``trainers.student.heads``: ``graph``, ``node`` or
``pair``), which reads the readout and the MLP below. ``forward_parts`` encodes a long document as
several subgraphs and lets the head read out over all their core nodes at once (decomposed
prediction with bounded memory).
"""
from __future__ import annotations

import torch
from torch import nn

from trainers.student.dropout import Dropout
from trainers.student.encoder import Encoder
from trainers.student.heads import HEADS
from trainers.student.readout import Readout
from trainers.tasks import get_task


class Student(nn.Module):
    def __init__(self, vocab_size: int, num_pos: int, num_edge_types: int, num_labels: int, cfg,
                 task: str = "classification"):
        super().__init__()
        self.task, h = task, cfg.hidden
        self.kind = get_task(task).head
        self.hidden = h
        self.word = nn.Embedding(vocab_size, h, padding_idx=0)
        self.pos = nn.Embedding(num_pos, cfg.pos_dim)
        self.inp = nn.Sequential(nn.Linear(h + cfg.pos_dim, h), nn.LayerNorm(h))
        self.drop = Dropout(cfg.dropout)
        self.encoder = Encoder(h, num_edge_types, cfg.layers, cfg.heads, cfg.conv, cfg.dropout)
        self.readout = Readout(h, cfg.readout)
        static = cfg.static_path and HEADS[self.kind].static_path
        d = HEADS[self.kind].in_dim(h, self.readout.out_dim, static)
        self.head = nn.Sequential(nn.Linear(d, h), nn.ReLU(), Dropout(cfg.dropout), nn.Linear(h, num_labels))
        self.static = self.static_mix = None
        if static:
            self.static = nn.Embedding(vocab_size, h, padding_idx=0)
            self.static.weight.requires_grad_(False)  # the teacher's vectors as they are: what reads them learns
            if self.kind == "pair":
                self.static_mix = nn.Parameter(torch.zeros(1))  # sigmoid(0) = an even mix to start from

    @property
    def task_head(self):
        """The head kind's forms (``trainers.student.heads``): whole graph, parts, export."""
        return HEADS[self.kind]

    def node_states(self, data) -> torch.Tensor:
        """(nodes, hidden), or (nodes, 2 x hidden) with the static path: the GNN's states, then each
        node's static row."""
        x = self.inp(torch.cat([self.word(data.x_tok), self.pos(data.x_pos)], -1))
        h = self.encoder(self.drop(x), data.edge_index, data.edge_type, data.edge_weight)
        return h if self.static is None else torch.cat([h, self.static(data.x_tok)], -1)

    def forward(self, data):
        """-> (logits, node states). Logits are per graph (classification), per node (token) or per
        pair (similarity, then label logits)."""
        h = self.node_states(data)
        return self.task_head.whole(self, h, data), h

    @torch.no_grad()
    def forward_parts(self, parts) -> torch.Tensor:
        """Decomposed prediction for one document (parts from ``subgraph.decompose``): encode each
        part, keep its core nodes (``part.core``; its halo only gives them their neighbourhood),
        and let the head read out over the core nodes of all parts."""
        h = torch.cat([self.node_states(p)[p.core] if "core" in p else self.node_states(p) for p in parts])
        return self.task_head.parts(self, h, parts)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
