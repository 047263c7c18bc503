"""serving.Predictor: raw texts -> graphs -> encoded batch -> student logits, one row per text, equal
to the same model's logits on graphs built separately with the builder (both graph.parser modes)."""
import pytest
import torch
from torch_geometric.data import Batch

from pipeline.graph_builder import GraphBuilder
from serving import Predictor
from tgd.config import GraphConfig, StudentConfig
from trainers.student.checkpoint import build_student
from trainers.student.features import GraphEncoding

TEXTS = ["A warm, funny film that never talks down to its audience.",
         "Dull. The plot goes nowhere and the actors look bored!",
         "I expected more from the director of such fine earlier work; still, the last act works."]


@pytest.fixture(scope="module")
def fast_builder():
    return GraphBuilder(GraphConfig(parser="fast"))


@pytest.mark.parametrize("mode", ["spacy", "fast"])
def test_predict_logits_shape_and_consistency(mode, graph_builder, fast_builder):
    builder = graph_builder if mode == "spacy" else fast_builder
    graphs = builder.build(TEXTS)
    words = sorted({w for g in graphs for w in g["lower"]})[::2]  # half the words known, the rest <unk>
    rels = sorted({r for g in graph_builder.build(TEXTS) for r in g["dep_rel"]})
    enc = GraphEncoding(["<pad>", "<unk>", *words], rels + ["<other>"], ["neg", "pos"])
    torch.manual_seed(0)
    model = build_student(enc, StudentConfig(hidden=16, pos_dim=8, heads=2, dropout=0.3), "classification")
    predictor = Predictor(model, enc, builder)
    logits = predictor.predict_logits(TEXTS, batch_size=2)  # two chunks: rows must stay in order
    assert logits.shape == (3, 2) and not model.training
    with torch.no_grad():
        expected = model(Batch.from_data_list([enc.encode(g) for g in graphs]))[0]
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(predictor.predict_logits(TEXTS[1:2], batch_size=1), expected[1:2], rtol=1e-5, atol=1e-5)
    assert predictor.predict_logits([]).shape == (0, 2)
