"""Node-budgeted sampling keeps edges consistent; decomposition covers every node once and the
decomposed forward equals the whole-graph forward when no edge crosses a part boundary."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from tests.fixtures.student_data import _graph
from tgd.config import StudentConfig
from trainers.distill.sampling import GraphSampler, pyg_sampler_available
from trainers.student.checkpoint import build_student
from trainers.student.features import GraphEncoding
from trainers.student.subgraph import decompose


def _enc():
    return GraphEncoding(["<pad>", "<unk>", *[f"w{i}" for i in range(40)]], ["amod", "det", "dobj", "nsubj", "<other>"], ["neg", "pos"])


def _data(n=300, seed=0):
    d = _enc().encode(_graph(np.random.default_rng(seed), 0, n))
    d.t_states = torch.arange(n, dtype=torch.float16).view(n, 1)
    d.t_mask = torch.ones(n, dtype=torch.bool)
    d.y = torch.tensor([0]); d.t_logits = torch.zeros(1, 2)
    return d


def _edge_set(d, names=None):
    orig = d.orig_nodes if names is None else names
    return {(int(orig[s]), int(orig[t]), int(k)) for s, t, k in zip(*d.edge_index, d.edge_type)}


@pytest.mark.parametrize("kind", ["sentence", "khop"])
def test_sampled_subgraph_respects_budget_and_keeps_edges_consistent(kind):
    full = _data()
    full_edges = _edge_set(full, torch.arange(full.num_nodes))
    sampler = GraphSampler(kind, "torch")
    gen = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(10):
        sub = sampler.sample(full, 50, gen)
        assert 0 < sub.num_nodes <= 50
        nodes = set(sub.orig_nodes.tolist())
        assert sub.x_tok.shape[0] == sub.t_states.shape[0] == sub.num_nodes
        assert torch.equal(sub.x_tok, full.x_tok[sub.orig_nodes])
        assert torch.equal(sub.t_states.flatten().long(), sub.orig_nodes)  # node tensors sliced together
        sub_edges = _edge_set(sub)
        induced_edges = {e for e in full_edges if e[0] in nodes and e[1] in nodes}
        assert sub_edges == induced_edges  # exactly the induced edges, with their types
        assert sub.edge_weight.shape[0] == sub.edge_index.shape[1]
        seen.add(tuple(sorted(nodes))[:3])
    assert len(seen) > 1  # resampled, not a fixed window
    if kind == "sentence":  # whole sentences (6 tokens each) when they fit
        sub = sampler.sample(full, 50, torch.Generator().manual_seed(3))
        assert sub.num_nodes % 6 == 0 or int(sub.orig_nodes[-1]) == full.num_nodes - 1


def test_small_graph_is_not_sampled():
    d = _data(20)
    assert GraphSampler("sentence").sample(d, 50, torch.Generator()) is d


def test_decompose_covers_each_node_once_and_matches_whole_graph():
    full = _data(240)
    parts = decompose(full, 64)
    assert all(p.num_nodes <= 64 for p in parts)
    assert torch.equal(torch.cat([p.orig_nodes for p in parts]), torch.arange(240))
    torch.manual_seed(0)
    model = build_student(_enc(), StudentConfig(hidden=32, heads=2, dropout=0.0), "classification").eval()
    for p in parts:
        p.batch = torch.zeros(p.num_nodes, dtype=torch.long)
    whole, _ = model(Batch.from_data_list([full]))
    # parts end on sentence boundaries (sentences are 6 tokens; 64 -> 60), so no edge is cut
    assert sum(p.edge_index.shape[1] for p in parts) == full.edge_index.shape[1]
    assert torch.allclose(model.forward_parts(parts), whole, atol=1e-5)


@pytest.mark.skipif(not pyg_sampler_available(), reason="pyg-lib / torch-sparse not installed (PyG sampler backend)")
def test_pyg_backend_respects_budget():
    full = _data()
    sub = GraphSampler("khop", "pyg").sample(full, 50, torch.Generator().manual_seed(0))
    assert sub.num_nodes <= 50


def test_pyg_backend_refused_clearly_without_pyg_lib():
    if pyg_sampler_available():
        pytest.skip("pyg-lib present")
    with pytest.raises(RuntimeError, match="pyg-lib"):
        GraphSampler("khop", "pyg")
