"""The student layer's edge projection, measured side by side in one run (not a test).

(a) PyG's ``TransformerConv`` projecting every edge's embedding (``lin_edge`` on an edges x hidden
    matrix, forward and backward), as the student did before;
(b) ``trainers.student.conv.TransformerLayer``: the edge-type table and the weight vector projected
    once per batch, then gathered (same parameters, same function: checked here first).
One training step = forward through ``--layers`` layers, backward, AdamW step, on a synthetic batch
the size of a distill batch (default: 128 rt-sentiment graphs ~ 2.7k nodes, 15k directed edges),
alternating (a) and (b) over ``--rounds`` rounds so machine load hits both alike. The last line is
one JSON object with ``projected_over_per_edge`` (steps/s of (b) over (a)).

    .venv/bin/python bench/edge_projection.py
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch_geometric.nn import TransformerConv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainers.student.conv import TransformerLayer  # noqa: E402


class PerEdgeLayer(TransformerLayer):
    """(a): the same layer with the per-edge projection of plain ``TransformerConv``."""

    def __init__(self, hidden, types, heads, dropout):
        super().__init__(hidden, types, heads, dropout)
        self.conv = TransformerConv(hidden, hidden // heads, heads=heads, edge_dim=hidden, dropout=dropout)

    def messages(self, h, edge_index, edge_type, edge_weight):
        return self.conv(h, edge_index, self.type_emb(edge_type) + edge_weight.unsqueeze(-1) * self.weight_vec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=2700)
    ap.add_argument("--edges", type=int, default=15000)
    ap.add_argument("--types", type=int, default=60, help="edge types (co-occurrence + relations and reverses)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=5, help="steps per round and layer kind")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    h = torch.randn(a.nodes, a.hidden)
    ei = torch.randint(0, a.nodes, (2, a.edges))
    et, ew = torch.randint(0, a.types, (a.edges,)), torch.rand(a.edges)

    # Same function: (b) loaded with (a)'s parameters gives (a)'s output (dropout off).
    ref = PerEdgeLayer(a.hidden, a.types, a.heads, 0.0).eval()
    new = TransformerLayer(a.hidden, a.types, a.heads, 0.0).eval()
    ref.weight_vec.data.normal_()
    new.load_state_dict(ref.state_dict())
    with torch.no_grad():
        diff = (ref(h, ei, et, ew) - new(h, ei, et, ew)).abs().max().item()
    print(f"max |(a) - (b)| on the same parameters: {diff:.2e}")

    def model(cls, *args):
        m = nn.ModuleList(cls(*args) for _ in range(a.layers))
        return m, torch.optim.AdamW(m.parameters())

    kinds = {"per_edge": model(PerEdgeLayer, a.hidden, a.types, a.heads, 0.3),
             "projected": model(TransformerLayer, a.hidden, a.types, a.heads, 0.3)}
    seconds = {k: 0.0 for k in kinds}
    for r in range(a.rounds + 1):  # round 0 warms up
        for k, (m, opt) in kinds.items():
            t = time.perf_counter()
            for _ in range(a.steps):
                x = h
                for layer in m:
                    x = layer(x, ei, et, ew)
                x.sum().backward()
                opt.step()
                opt.zero_grad()
            if r:
                seconds[k] += time.perf_counter() - t
    n = a.rounds * a.steps
    for k, s in seconds.items():
        print(f"({'a' if k == 'per_edge' else 'b'}) {k:<10} {s / n * 1000:7.1f} ms per training step")
    print(json.dumps({"projected_over_per_edge": round(seconds["per_edge"] / seconds["projected"], 3),
                      "max_abs_diff": diff, "threads": a.threads, "nodes": a.nodes, "edges": a.edges}))


if __name__ == "__main__":
    main()
