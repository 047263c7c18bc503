"""The student's task heads: what turns node states into a task's logits, in each of its three forms.

- ``whole``: a (batched) graph -> logits, in training and prediction;
- ``parts``: the core nodes' states of a long document's parts (``subgraph.decompose``) -> the same
  logits as ``whole`` on the whole graph;
- ``export``: an ``nn.Module`` over plain tensors that TorchScript tracing and the ONNX exporter take,
  computing what ``whole`` computes (``serving.export`` writes it).

The task adapter names its head kind (``Task.head``): ``graph`` reads out one vector per document
(classification), ``node`` classifies every node (token labelling), ``pair`` reads out one vector per
side of a pair and scores [cosine, label logits over [u, v, |u-v|, u*v]]. A head holds no weights
itself: the readout and the MLP are the ``Student``'s (``student.readout``, ``student.head``), so
checkpoints and their initialisation do not depend on the head kind. A new head kind is one class
here registered in ``HEADS``.

Why the export form has its own pooling: PyG's ``global_max_pool`` / ``softmax`` take a different
code path under ONNX export that fails with this torch (``torch.full`` with a tensor fill value in
``torch_geometric.utils.scatter``), so ``export_pool`` computes the same mean, max and attention
pooling with plain ``scatter_add`` / ``scatter_reduce``; the export tests check the exported logits
against the PyTorch student.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Head:
    kind: ClassVar[str]
    export_inputs: ClassVar[tuple[str, ...]]  # the export form's inputs, ``h`` first
    static_path: ClassVar[bool] = False  # reads the student's static word vectors too (``student.static_path``)

    def in_dim(self, hidden: int, readout_dim: int, static: bool = False) -> int:
        """The width of the MLP's input (``static``: the student has a static path)."""
        raise NotImplementedError

    def whole(self, student, h: torch.Tensor, data) -> torch.Tensor:
        raise NotImplementedError

    def parts(self, student, h: torch.Tensor, parts) -> torch.Tensor:
        """Logits of one document from the core nodes' states ``h`` of all its parts, in node order."""
        raise NotImplementedError

    def export(self, student) -> nn.Module:
        raise NotImplementedError


def static_sums(h, seg, num_segments: int, hidden: int) -> torch.Tensor:
    """Per segment (document or pair side) the sum of its nodes' static rows (the columns of ``h``
    after ``hidden``): the SIF-weighted mean's direction, the weights being in the rows."""
    s = h[:, hidden:]
    return s.new_zeros(num_segments, s.shape[1]).scatter_add(0, seg.unsqueeze(-1).expand_as(s), s)


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to length 1 (a zero row stays zero), in export-friendly ops."""
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6)


class GraphHead(Head):
    """One readout vector per graph -> the MLP -> (graphs, labels). With the static path the MLP also
    reads the unit-length sum of the document's static rows (the teacher's SIF-weighted word vectors,
    a model2vec-style document vector) next to the readout of the GNN's states."""
    kind = "graph"
    export_inputs = ("h", "batch", "graphs")
    static_path = True

    def in_dim(self, hidden, readout_dim, static=False):
        return readout_dim + (hidden if static else 0)

    def pooled(self, student, h, batch, num_graphs):
        z = student.readout(h[:, :student.hidden], batch, num_graphs)
        if student.static is None:
            return z
        n = z.shape[0]
        return torch.cat([z, unit(static_sums(h, batch, n, student.hidden))], -1)

    def whole(self, student, h, data):
        return student.head(self.pooled(student, h, data.batch, getattr(data, "num_graphs", None)))

    def parts(self, student, h, parts):
        return student.head(self.pooled(student, h, torch.zeros(h.shape[0], dtype=torch.long, device=h.device), 1))

    def export(self, student):
        return _ExportGraphHead(student)


class NodeHead(Head):
    """The MLP on every node's state -> (nodes, labels)."""
    kind = "node"
    export_inputs = ("h",)

    def in_dim(self, hidden, readout_dim, static=False):
        return hidden

    def whole(self, student, h, data):
        return student.head(h)

    def parts(self, student, h, parts):
        return student.head(h)

    def export(self, student):
        return _ExportNodeHead(student)


class PairHead(Head):
    """A pair is one graph whose nodes carry ``side`` (0: A, 1: B; no edge between the sides): one
    readout per (pair, side), then per pair [similarity, the MLP over [u, v, |u-v|, u*v]] (the
    MLP's logits are empty without labels). The similarity is cosine(u, v), or with the static path
    (node states wider than ``student.hidden``: the static rows follow the GNN's states) the mix
    ``g cosine(u, v) + (1 - g) cosine(s_A, s_B)``, ``s`` a side's sum of static rows (SIF-weighted
    by construction), ``g = sigmoid(student.static_mix)`` learned."""
    kind = "pair"
    export_inputs = ("h", "batch", "graphs", "side")
    static_path = True

    def in_dim(self, hidden, readout_dim, static=False):
        return 4 * readout_dim  # the label head reads the GNN's side vectors only

    def vectors(self, student, h, batch, side, num_pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, v): side A's and side B's readout vector of each pair (of the GNN's states)."""
        z = student.readout(h[:, :student.hidden], batch * 2 + side, 2 * num_pairs).view(num_pairs, 2, -1)
        return z[:, 0], z[:, 1]

    @staticmethod
    def static_similarity(h, seg, num_pairs: int, hidden: int) -> torch.Tensor:
        """cosine(s_A, s_B) per pair from the static rows of ``h`` (its columns after ``hidden``)."""
        z = static_sums(h, seg, 2 * num_pairs, hidden).view(num_pairs, 2, -1)
        return torch.cosine_similarity(z[:, 0], z[:, 1], dim=-1)

    def scores(self, student, h, batch, side, num_pairs: int) -> torch.Tensor:
        u, v = self.vectors(student, h, batch, side, num_pairs)
        static = (None if student.static is None
                  else self.static_similarity(h, batch * 2 + side, num_pairs, student.hidden))
        return self.output(student.head, u, v, static, student.static_mix)

    @staticmethod
    def _batch_side(h, data):
        zeros = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        batch = data.batch if getattr(data, "batch", None) is not None else zeros
        side = data.side if getattr(data, "side", None) is not None else zeros
        return batch, side, int(getattr(data, "num_graphs", None) or 1)

    def data_vectors(self, student, h, data) -> tuple[torch.Tensor, torch.Tensor]:
        """``vectors`` of a (batched) pair graph, for the sentence bridge."""
        return self.vectors(student, h, *self._batch_side(h, data))

    @staticmethod
    def output(mlp, u, v, static=None, mix=None) -> torch.Tensor:
        sim = torch.cosine_similarity(u, v, dim=-1)
        if static is not None:
            g = torch.sigmoid(mix)
            sim = g * sim + (1 - g) * static
        return torch.cat([sim.unsqueeze(-1), mlp(torch.cat([u, v, (u - v).abs(), u * v], -1))], -1)

    def whole(self, student, h, data):
        return self.scores(student, h, *self._batch_side(h, data))

    def parts(self, student, h, parts):
        side = torch.cat([p.side[p.core] if "core" in p else p.side for p in parts])  # core nodes keep their side
        return self.scores(student, h, torch.zeros(h.shape[0], dtype=torch.long, device=h.device), side, 1)

    def export(self, student):
        return _ExportPairHead(student)


HEADS: dict[str, Head] = {h.kind: h for h in (GraphHead(), NodeHead(), PairHead())}


# ---------------------------------------------------------------------------------- export forms
def export_pool(h, seg, num_segments, gate):
    """``Readout`` (mean, max, optional attention pooling) over ``num_segments`` segments of the
    nodes (``seg``: segment per node), in export-friendly ops."""
    width = h.size(1)
    idx = seg.unsqueeze(-1).expand_as(h)
    sums = h.new_zeros(num_segments, width).scatter_add(0, idx, h)
    counts = h.new_zeros(num_segments, 1).scatter_add(0, seg.unsqueeze(-1), torch.ones_like(h[:, :1]))
    mean = sums / counts.clamp(min=1.0)
    big = torch.finfo(h.dtype).max
    mx = h.new_full((num_segments, width), -big).scatter_reduce(0, idx, h, "amax", include_self=True)
    mx = torch.where(counts > 0, mx, torch.zeros_like(mx))  # an empty segment pools to 0, as PyG's max does
    pooled = [mean, mx]
    if gate is not None:
        g = gate(h)
        gmax = g.new_full((num_segments, 1), -big).scatter_reduce(0, seg.unsqueeze(-1), g, "amax", include_self=True)
        e = torch.exp(g - gmax[seg])
        den = g.new_zeros(num_segments, 1).scatter_add(0, seg.unsqueeze(-1), e)
        a = e / (den[seg] + 1e-16)  # PyG's softmax adds the same epsilon
        pooled.append(h.new_zeros(num_segments, width).scatter_add(0, idx, a * h))
    return torch.cat(pooled, -1)


def _gate(student):
    return student.readout.att.gate_nn if student.readout.att is not None else None


class _ExportGraphHead(nn.Module):
    def __init__(self, student):
        super().__init__()
        self.gate, self.head = _gate(student), student.head
        self.hidden, self.static = student.hidden, student.static is not None

    def forward(self, h, batch, graphs):
        z = export_pool(h[:, :self.hidden], batch, graphs.size(0), self.gate)
        if self.static:
            z = torch.cat([z, unit(static_sums(h, batch, graphs.size(0), self.hidden))], -1)
        return self.head(z)


class _ExportNodeHead(nn.Module):
    def __init__(self, student):
        super().__init__()
        self.head = student.head

    def forward(self, h):
        return self.head(h)


class _ExportPairHead(nn.Module):
    def __init__(self, student):
        super().__init__()
        self.gate, self.head = _gate(student), student.head
        self.width, self.hidden, self.mix = student.readout.out_dim, student.hidden, student.static_mix

    def forward(self, h, batch, graphs, side):
        seg, n = batch * 2 + side, graphs.size(0)
        z = export_pool(h[:, :self.hidden], seg, n * 2, self.gate).view(-1, 2, self.width)
        static = PairHead.static_similarity(h, seg, n, self.hidden) if self.mix is not None else None
        return PairHead.output(self.head, z[:, 0], z[:, 1], static, self.mix)
