"""Induced subgraphs and the decomposition of a long graph into parts of at most a node budget.

Shared by training (``trainers.distill.sampling`` samples induced subgraphs) and prediction (a graph
over the budget is cut into consecutive sentence windows covering every node exactly once, read out
together by ``Student.forward_parts``), so both cut graphs the same way.
"""
from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.utils import subgraph

NODE_KEYS = ("x_tok", "x_pos", "sent", "side", "t_states", "t_mask", "node_y", "t_node_logits")
EDGE_KEYS = ("edge_type", "edge_weight")



def induced(data: Data, nodes: torch.Tensor) -> Data:
    """The subgraph on ``nodes`` (sorted, unique); graph-level attributes are carried over."""
    nodes = torch.unique(nodes)
    ei, _, emask = subgraph(nodes, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes, return_edge_mask=True)
    out = Data(edge_index=ei, num_nodes=int(nodes.numel()))
    for key in data.keys():
        if key in ("edge_index", "num_nodes"):
            continue
        val = data[key]
        out[key] = val[nodes] if key in NODE_KEYS else val[emask] if key in EDGE_KEYS else val
    out.orig_nodes = nodes
    return out


def decompose(data: Data, budget: int) -> list[Data]:
    """Consecutive sentence windows of at most ``budget`` nodes covering every node once."""
    if data.num_nodes <= budget:
        return [data]
    sent = data.sent.tolist()
    parts, lo = [], 0
    while lo < data.num_nodes:
        hi = min(lo + budget, data.num_nodes)
        if hi < data.num_nodes:
            b = hi
            while b > lo and sent[b] == sent[b - 1]:
                b -= 1
            hi = b if b > lo else hi
        parts.append(induced(data, torch.arange(lo, hi)))
        lo = hi
    return parts
