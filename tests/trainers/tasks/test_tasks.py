"""The task interface: hand-checked top-k decoding, per-node KD masking, entity-level F1, the window
tagger's inputs, and the config combinations refused before any stage runs (through the CLI)."""
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from tgd.cli import main
from trainers.evaluate.baselines import WindowTagger
from trainers.tasks import get_task
from trainers.tasks.classification import expand_topk
from trainers.tasks.token import is_entity_scheme


def test_topk_rows_decode_to_full_length_logits():
    # teacher kept labels 2 and 0 (top 2 of 4) with 10% of its probability mass outside them
    logits = expand_topk([3.0, 1.0], [2, 0], 0.1, 4)
    p = np.exp(logits) / np.exp(logits).sum()
    kept = np.exp([3.0, 1.0]) / np.exp([3.0, 1.0]).sum() * 0.9
    assert p[2] == pytest.approx(kept[0], rel=1e-5) and p[0] == pytest.approx(kept[1], rel=1e-5)
    assert p[1] == pytest.approx(0.05, rel=1e-5) and p[3] == pytest.approx(0.05, rel=1e-5)
    # through the adapter: reordered to the ingest label order after expansion
    row = get_task("classification").decode_teacher({"logits": [3.0, 1.0], "topk_index": [2, 0], "topk_rest": 0.1},
                                                     [3, 2, 1, 0], 4)
    assert np.argmax(row["logits"]) == 1 and len(row["logits"]) == 4  # teacher label 2 is ingest label 1
    full = get_task("classification").decode_teacher({"logits": [0.0, 1.0, 2.0]}, [2, 0, 1], 3)
    assert full["logits"] == [2.0, 0.0, 1.0]


def test_token_kd_is_masked_to_nodes_a_teacher_subword_covers():
    task = get_task("token")
    d = Data(node_y=torch.tensor([0, 1, -1]), t_mask=torch.tensor([True, False, True]),
             t_node_logits=torch.tensor([[5.0, 0.0], [0.0, 5.0], [1.0, 1.0]]), num_nodes=3)
    b = Batch.from_data_list([d, d])
    logits = torch.arange(12, dtype=torch.float32).view(6, 2)
    y, s_kd, t_kd = task.targets(logits, b, "fusion")
    assert y.tolist() == [0, 1, -1, 0, 1, -1]  # CE on every labelled node (-1 carries none)
    assert s_kd.tolist() == logits[[0, 2, 3, 5]].tolist()  # KD only where t_mask
    assert t_kd.tolist() == [[5.0, 0.0], [1.0, 1.0]] * 2
    # curriculum: the teacher's uncertainty averaged over aligned nodes only
    q = 1 / (1 + np.exp(-5.0))  # softmax of (5, 0)
    h = -(q * np.log(q) + (1 - q) * np.log(1 - q)) / np.log(2)
    assert task.teacher_uncertainty(d) == pytest.approx((h + 1.0) / 2)  # node 2 is (1, 1): entropy 1


def test_entity_f1_is_exact_span_match():
    labels = ["O", "B-PER", "I-PER", "B-LOC"]
    assert is_entity_scheme(labels) and not is_entity_scheme(["NOUN", "VERB"])
    # doc 1: PER span right, LOC predicted as O; doc 2: PER span cut short (wrong span)
    gold = np.array([1, 2, 0, 3, 1, 2])
    pred = np.array([1, 2, 0, 0, 1, 0])
    s = get_task("token").scores(pred, gold, None, labels, [4, 2])
    # gold entities: PER, LOC, PER (3); predicted: PER, PER(short) (2); exact matches: 1
    assert s["entity_precision"] == pytest.approx(1 / 2)
    assert s["entity_recall"] == pytest.approx(1 / 3)
    assert s["entity_f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert s["token_accuracy"] == pytest.approx(4 / 6, abs=1e-4)


def test_window_tagger_sees_two_neighbours_each_side_within_a_document():
    x = WindowTagger(10, 8, 3).featurize([torch.tensor([4, 5, 6]), torch.tensor([7])])
    assert x.tolist() == [[0, 0, 4, 5, 6], [0, 4, 5, 6, 0], [4, 5, 6, 0, 0], [0, 0, 7, 0, 0]]


@pytest.mark.parametrize("overrides, message", [
    (["data.task=token", "teacher.kind=causal-lm"], "teacher.kind=causal-lm has no per-token label head"),
    (["data.task=token", "graph.merge_repeated=true"], "graph.merge_repeated=true merges repeated words"),
    (["student.hidden=130", "student.heads=4"], "student.hidden=130 is not divisible by student.heads=4"),
])
def test_unworkable_combinations_are_refused_before_any_stage(tmp_path, capsys, overrides, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\n")
    args = ["run", str(cfg)] + [a for o in overrides for a in ("--set", o)]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing ran


def test_pos_features_off_gives_every_node_the_same_pos_input(graph_builder):
    import pyarrow as pa

    from tgd.config import StudentConfig
    from trainers.student.checkpoint import build_student
    from trainers.student.features import GraphEncoding

    vocab = pa.table({"token": ["the", "film", "was", "dull"], "count": [3, 2, 2, 1]})
    g = graph_builder.build(["The film was dull and slow."])[0]
    assert len(set(g["pos"])) > 2  # spaCy tagged several parts of speech
    on = GraphEncoding.build(vocab, ["det"], ["a", "b"], 1, 100)
    off = GraphEncoding.build(vocab, ["det"], ["a", "b"], 1, 100, pos_features=False)
    assert len(set(on.encode(g).x_pos.tolist())) > 2
    assert set(off.encode(g).x_pos.tolist()) == {0} and GraphEncoding(**off.state()).pos == ["X"]  # saved as such
    student = build_student(off, StudentConfig(hidden=32, heads=2, pos_dim=8, dropout=0.3), "token")
    assert student.pos.num_embeddings == 1
