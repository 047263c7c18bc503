"""The student's layers (trainers/student/conv): the typed transformer layer is plain PyG
TransformerConv on the edge embedding, the GINE layer computes GINE's sum, and checkpoints keep their
parameter names."""
import pytest
import torch
from torch_geometric.nn import TransformerConv

from trainers.student.conv import CONVS, GINELayer, TransformerLayer
from trainers.student.encoder import Encoder


def _graph(nodes=20, edges=60, types=5):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(nodes, 32, generator=g), torch.randint(0, nodes, (2, edges), generator=g),
            torch.randint(0, types, (edges,), generator=g), torch.rand(edges, generator=g))


def test_transformer_layer_is_transformerconv_on_the_edge_embedding():
    """Projecting the type table and the weight vector once (instead of every edge) changes no output."""
    torch.manual_seed(0)
    layer = TransformerLayer(32, 5, 4, 0.0).eval()
    layer.weight_vec.data.normal_()
    plain = TransformerConv(32, 8, heads=4, edge_dim=32).eval()
    plain.load_state_dict(layer.conv.state_dict())
    h, ei, et, ew = _graph()
    edge_embedding = layer.type_emb(et) + ew.unsqueeze(-1) * layer.weight_vec
    with torch.no_grad():
        expected = layer.norm(h + torch.relu(plain(h, ei, edge_embedding)))
        assert torch.allclose(layer(h, ei, et, ew), expected, atol=1e-5)


def test_gine_layer_sums_relu_of_neighbour_plus_edge_embedding():
    """A node's message is nn((1 + eps) h_i + sum_j relu(h_j + e_ij)) over its in-edges; edge type and weight
    both change it."""
    torch.manual_seed(0)
    layer = GINELayer(32, 5, 4, 0.0).eval()
    layer.weight_vec.data.normal_()
    h, ei, et, ew = _graph()
    e = layer.type_emb(et) + ew.unsqueeze(-1) * layer.weight_vec
    agg = torch.zeros_like(h).index_add_(0, ei[1], torch.relu(h[ei[0]] + e))
    with torch.no_grad():
        expected = layer.norm(h + torch.relu(layer.conv.nn((1 + layer.conv.eps) * h + agg)))
        assert torch.allclose(layer(h, ei, et, ew), expected, atol=1e-5)
        assert not torch.allclose(layer(h, ei, (et + 1) % 5, ew), expected, atol=1e-3)
        assert not torch.allclose(layer(h, ei, et, ew * 0), expected, atol=1e-3)


@pytest.mark.parametrize("conv, keys", [
    ("transformer", {"type_emb.weight", "weight_vec", "conv.lin_query.weight", "conv.lin_edge.weight", "norm.weight"}),
    ("gine", {"type_emb.weight", "weight_vec", "conv.eps", "conv.nn.0.weight", "norm.weight"}),
    ("rgcn", {"conv.comp", "conv.weight", "conv.root", "norm.weight"}),
])
def test_every_conv_runs_and_keeps_its_checkpoint_names(conv, keys):
    enc = Encoder(32, 5, layers=2, heads=4, conv=conv, dropout=0.1)
    h, ei, et, ew = _graph()
    out = enc(h, ei, et, ew)
    assert out.shape == h.shape and torch.isfinite(out).all()
    names = set(enc.state_dict())
    assert {f"layers.1.{k}" for k in keys} <= names  # student.pt files written before the conv/ split still load
    assert set(CONVS) == {"transformer", "gine", "rgcn"}
