"""Node-budgeted subgraphs, so memory per batch is bounded whatever the document length.

``GraphSampler.sample(data, budget, generator) -> Data``, two backends:
- ``torch`` (pure PyTorch + PyG utilities; always available): ``sentence`` takes a window of
  consecutive sentences from a random start (a sentence longer than the budget is cut to a random
  contiguous span); ``khop`` grows 1-hop neighbourhoods (``k_hop_subgraph``) of random seeds until the
  budget is reached.
- ``pyg``: PyG's ``NeighborSampler`` (needs pyg-lib or torch-sparse, e.g. on GPU clusters) for the
  ``khop`` seeds' neighbourhoods.
Every subgraph is induced (``trainers.student.subgraph.induced``). Training resamples every epoch;
prediction uses the whole graph or ``trainers.student.subgraph.decompose``.
"""
from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.utils import k_hop_subgraph

from tgd.errors import StageError
from trainers.student.subgraph import induced


def pyg_sampler_available() -> bool:
    try:
        import torch_geometric.typing as t

        return bool(t.WITH_PYG_LIB or t.WITH_TORCH_SPARSE)
    except Exception:
        return False


def _sentence_window(data: Data, budget: int, gen: torch.Generator) -> torch.Tensor:
    sent, n = data.sent.tolist(), data.num_nodes
    first = int(torch.randint(sent[-1] + 1, (1,), generator=gen))
    lo = next(i for i, s in enumerate(sent) if s >= first)
    hi = min(lo + budget, n)
    if hi == n:
        lo = max(0, n - budget)  # near the end: extend backwards to use the whole budget
    elif sent[hi] == sent[hi - 1]:
        b = hi
        while b > lo and sent[b] == sent[b - 1]:
            b -= 1
        hi = b if b > lo else hi  # end on a sentence boundary unless one sentence exceeds the budget
    return torch.arange(lo, hi)


def _khop(data: Data, budget: int, gen: torch.Generator) -> torch.Tensor:
    order = torch.randperm(data.num_nodes, generator=gen)
    chosen = torch.zeros(data.num_nodes, dtype=torch.bool)
    for seed in order.tolist():
        if chosen[seed]:
            continue
        nodes, _, _, _ = k_hop_subgraph(seed, 1, data.edge_index, num_nodes=data.num_nodes)
        new = nodes[~chosen[nodes]]
        room = budget - int(chosen.sum())
        if room <= 0:
            break
        chosen[new[:room]] = True
    return chosen.nonzero().flatten()


def _pyg_khop(data: Data, budget: int, gen: torch.Generator) -> torch.Tensor:
    from torch_geometric.sampler import NeighborSampler, NodeSamplerInput

    sampler = NeighborSampler(Data(edge_index=data.edge_index, num_nodes=data.num_nodes), num_neighbors=[8])
    seeds = torch.randperm(data.num_nodes, generator=gen)[: max(1, budget // 9)]
    out = sampler.sample_from_nodes(NodeSamplerInput(None, seeds))
    return out.node[:budget]


class GraphSampler:
    def __init__(self, kind: str = "sentence", backend: str = "auto"):
        if backend == "pyg" and not pyg_sampler_available():
            raise StageError("sampler_backend=pyg needs pyg-lib or torch-sparse (install from PyG's wheel index)")
        self.kind = kind
        self.backend = ("pyg" if backend == "pyg" or (backend == "auto" and kind == "khop" and pyg_sampler_available())
                        else "torch")

    def sample(self, data: Data, budget: int, gen: torch.Generator) -> Data:
        if data.num_nodes <= budget:
            return data
        if self.kind == "sentence":
            nodes = _sentence_window(data, budget, gen)
        elif self.backend == "pyg":
            nodes = _pyg_khop(data, budget, gen)
        else:
            nodes = _khop(data, budget, gen)
        return induced(data, nodes)
