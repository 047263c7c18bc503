"""The student's static path (``student.static_path``): a frozen table of the teacher's static word
vectors next to the GNN; for pairs the similarity is a learned mix of the GNN's cosine and the static
one, for documents the head reads both vectors."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from tgd.config import RunConfig, StudentConfig
from trainers.evaluate.baselines import gnn_baseline_config
from trainers.student.checkpoint import load_student, save_student
from trainers.student.features import GraphEncoding
from trainers.student.model import Student
from trainers.tasks import get_task

ENC = GraphEncoding(["<pad>", "<unk>", "good", "film", "dull", "plot"], ["nsubj", "<other>"], [])
CFG = StudentConfig(hidden=16, heads=2, pos_dim=4, dropout=0.0, static_path=True)


def _graph(words):
    n = len(words)
    return {"num_nodes": n, "lower": words, "pos": ["NOUN"] * n, "sent": [0] * n, "dep_src": [0], "dep_dst": [1],
            "dep_rel": ["nsubj"], "co_src": [0], "co_dst": [1], "co_weight": [1.0]}


def _pairs():
    task = get_task("pair")
    rows = [(["good", "film"], ["dull", "film", "plot"]), (["dull", "plot"], ["good", "plot", "film"])]
    return Batch.from_data_list([task.encode(ENC, {"graph": _graph(a), "graph_b": _graph(b), "score": 0.5})
                                 for a, b in rows])


def _student(cfg=CFG) -> Student:
    torch.manual_seed(0)
    return Student(len(ENC.vocab), len(ENC.pos), ENC.num_edge_types, 0, cfg, "pair").eval()


def test_similarity_is_the_learned_mix_of_the_gnn_and_static_cosines():
    model, batch = _student(), _pairs()
    h = model.node_states(batch)
    assert h.shape == (batch.num_nodes, 2 * CFG.hidden)  # the GNN's states, then each node's static row
    assert torch.equal(h[:, CFG.hidden:], model.static.weight[batch.x_tok])
    u, v = model.task_head.vectors(model, h, batch.batch, batch.side, 2)
    seg = batch.batch * 2 + batch.side
    sums = torch.zeros(4, CFG.hidden).index_add_(0, seg, model.static.weight[batch.x_tok]).view(2, 2, -1)
    gnn, static = torch.cosine_similarity(u, v, dim=-1), torch.cosine_similarity(sums[:, 0], sums[:, 1], dim=-1)
    assert not torch.allclose(gnn, static)
    for mix, want in ((0.0, 0.5 * gnn + 0.5 * static), (40.0, gnn), (-40.0, static)):
        model.static_mix.data.fill_(mix)
        got = model(batch)[0][:, 0]
        assert torch.allclose(got, want, atol=1e-5), mix


def test_only_the_mix_learns_the_static_table_stays_frozen():
    model, batch = _student(), _pairs()
    before = model.static.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model.train()
    loss = (model(batch)[0][:, 0] - torch.tensor([1.0, 0.0])).pow(2).sum()
    loss.backward()
    assert model.static.weight.grad is None and model.static_mix.grad is not None
    opt.step()
    assert torch.equal(model.static.weight, before)


def test_document_head_reads_the_unit_static_sum_next_to_the_readout():
    """Classification: the MLP reads [readout of the GNN's states, unit-length sum of the static rows];
    no mix. Token labelling has no static path."""
    from trainers.student.heads import unit

    batch = _pairs()  # any graphs: read here as documents
    torch.manual_seed(0)
    model = Student(len(ENC.vocab), len(ENC.pos), ENC.num_edge_types, 2, CFG, "classification").eval()
    assert model.static is not None and model.static_mix is None
    assert model.head[0].in_features == model.readout.out_dim + CFG.hidden
    h = model.node_states(batch)
    z = model.readout(h[:, :CFG.hidden], batch.batch, 2)
    sums = torch.zeros(2, CFG.hidden).index_add_(0, batch.batch, model.static.weight[batch.x_tok])
    want = model.head(torch.cat([z, unit(sums)], -1))
    assert torch.allclose(model(batch)[0], want, atol=1e-6)
    assert Student(6, 18, 5, 2, CFG, "token").static is None


def test_the_gnn_row_never_has_a_static_path(tmp_path):
    assert _student(CFG.model_copy(update={"static_path": False})).static is None
    cfg = RunConfig(run_dir=str(tmp_path), data={"source": "brown-pairs", "task": "pair"})
    assert cfg.student.static_path and not gnn_baseline_config(cfg).student.static_path
    # the task's default: on for pairs, off for classification (a setting says otherwise)
    docs = RunConfig(run_dir=str(tmp_path), data={"source": "rt-sentiment"})
    assert docs.student.static_path is False
    assert RunConfig(run_dir=str(tmp_path), data={"source": "rt-sentiment"},
                     student={"static_path": True}).student.static_path


def test_student_saved_before_the_static_path_loads_without_one(tmp_path):
    old = _student(CFG.model_copy(update={"static_path": False}))
    save_student(tmp_path / "s.pt", old.state_dict(), ENC, CFG, "pair")
    blob = torch.load(tmp_path / "s.pt", weights_only=True)
    del blob["student"]["static_path"]  # as a checkpoint written before the field existed
    torch.save(blob, tmp_path / "s.pt")
    model, _, _ = load_student(tmp_path / "s.pt")
    assert model.static is None
    assert model(_pairs())[0][:, 0].tolist() == pytest.approx(old(_pairs())[0][:, 0].tolist(), abs=1e-6)


@pytest.mark.parametrize("task,labels", [("classification", 2), ("pair", 0)])
def test_export_form_computes_what_the_student_does(task, labels):
    """The export head (what TorchScript / ONNX trace) reads the static columns of the exported node
    states as the student's head does (the pair form is also checked end to end in tests/serving)."""
    batch = _pairs()
    torch.manual_seed(0)
    model = Student(len(ENC.vocab), len(ENC.pos), ENC.num_edge_types, labels, CFG, task).eval()
    model.static.weight.data.normal_()
    if model.static_mix is not None:
        model.static_mix.data.fill_(0.7)
    h = model.node_states(batch)
    head = model.task_head.export(model).eval()
    args = {"h": h, "batch": batch.batch, "graphs": torch.zeros(batch.num_graphs), "side": batch.side}
    got = head(*(args[k] for k in model.task_head.export_inputs))
    assert torch.allclose(got, model(batch)[0], atol=1e-5)
