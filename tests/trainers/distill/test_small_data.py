"""A small-data row (``distill.train_fraction`` < 1) keeps the gold labels of a seeded fraction of the
training documents only; a distilled student still learns from the teacher on the rest (gold
hidden, like a transfer copy), a student without teacher never sees them."""
from __future__ import annotations

import torch

from tests.conftest import make_config
from tests.fixtures.student_data import make_run
from trainers.distill.data import load, prepare
from trainers.distill.spec import build_spec
from trainers.tasks import get_task


def test_small_data_rows_keep_a_fraction_of_the_labels_and_the_teacher_on_the_rest(tmp_path):
    cfg = make_config(tmp_path, student={"hidden": 16, "heads": 2, "pos_dim": 4, "vocab_min_count": 1},
                      distill={"train_fraction": 0.25}, evaluate={"bow_epochs": 4}, ray={"num_workers": 1})
    make_run(cfg, n_docs=120, teacher_right=1.0)
    prepared = prepare(cfg, use_teacher=True)
    train = prepared.splits["train"]
    _, distilled = build_spec(cfg, prepared, True, tmp_path / "fit")
    _, plain = build_spec(cfg, prepare(cfg, use_teacher=False), False, tmp_path / "fit")
    gold = {i: int(load(p).y[0]) for i, p in zip(distilled.column("id").to_pylist(),
                                                 distilled.column("payload").to_pylist())}
    labelled = {i for i, y in gold.items() if y >= 0}
    assert len(labelled) == round(0.25 * train.num_rows) and set(plain.column("id").to_pylist()) == labelled
    assert set(gold) == set(train.column("id").to_pylist())  # the rest: teacher only, nothing dropped
    hidden = [load(p) for i, p in zip(distilled.column("id").to_pylist(), distilled.column("payload").to_pylist())
              if i not in labelled]
    assert all(bool(d.t_logits.abs().sum() > 0) for d in hidden)  # the teacher's outputs stay on them


def test_hide_gold_hides_each_tasks_targets():
    from torch_geometric.data import Data

    token = Data(y=torch.tensor([-1]), node_y=torch.tensor([3, 1, 0]))
    get_task("token").hide_gold(token)
    assert token.node_y.tolist() == [-1, -1, -1]
    pair = Data(y=torch.tensor([1]), score=torch.tensor([0.7]))
    get_task("pair").hide_gold(pair)
    assert pair.y.tolist() == [-1] and torch.isnan(pair.score).all()
