"""Decomposed prediction (parts of at most a node budget, read out together) gives the
whole-graph prediction on long documents, with and without sentence structure, on token graphs
and on word-type graphs (``graph.merge_repeated``), where cutting without a halo lost most edges
(measured on main16's student: 27-37% of long documents changed label)."""
from __future__ import annotations

import random

import pytest
import torch

from pipeline.graph_builder import GraphBuilder
from serving.predictor import Predictor
from tests.fixtures.serving_data import document, small_run
from tgd.config import GraphConfig
from trainers.student.checkpoint import load_student
from trainers.student.subgraph import decompose

BUDGET = 48


@pytest.fixture(scope="module")
def student(tmp_path_factory, graph_builder):
    config = small_run(tmp_path_factory.getbasetemp() / "serving-run", graph_builder)
    return load_student(config.parent / "run" / "distill" / "student.pt")[:2]


def long_documents(n: int = 40) -> list[str]:
    rng = random.Random(3)
    return [document(rng, k % 2, rng.randint(15, 40), punctuation=k % 2 == 0) for k in range(n)]


@pytest.mark.parametrize("merged,budget", [(False, BUDGET), (True, 8)])  # word-type graphs: ~25 nodes here
def test_decomposed_agrees_with_whole_graph(student, graph_builder, merged, budget):
    model, enc = student
    builder = GraphBuilder(GraphConfig(merge_repeated=True)) if merged else graph_builder
    texts = long_documents()
    whole = Predictor(model, enc, builder).predict_logits(texts)
    parts = Predictor(model, enc, builder, node_budget=budget).predict_logits(texts)
    graphs = [enc.encode(g) for g in builder.build(texts)]
    assert all(g.num_nodes > budget for g in graphs)
    assert sum(len(decompose(g, budget)) for g in graphs) >= 3 * len(graphs)
    if not merged:  # one sentence longer than the budget (no punctuation) is cut inside
        assert any(int(g.sent.max()) == 0 and g.num_nodes > budget for g in graphs)
    agree = (whole.argmax(-1) == parts.argmax(-1)).float().mean().item()
    assert agree >= 0.99
    torch.testing.assert_close(parts, whole, atol=1e-4, rtol=1e-4)


def test_parts_cover_every_node_once_with_a_halo(student, graph_builder):
    model, enc = student
    g = enc.encode(graph_builder.build(long_documents(1))[0])
    parts = decompose(g, BUDGET, hops=len(model.encoder.layers))
    cores = torch.cat([p.orig_nodes[p.core] for p in parts])
    assert torch.equal(cores, torch.arange(g.num_nodes))
    assert all(int(p.core.sum()) <= BUDGET for p in parts)
    assert any(p.num_nodes > int(p.core.sum()) for p in parts)  # the halo
