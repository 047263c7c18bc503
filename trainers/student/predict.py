"""The one batched prediction path of a trained student, over encoded graphs.

Validation during training, every evaluate row, `tgd predict`, the exported packages and the Ray
Data batch path all run ``logits_per_graph``: graphs within ``node_budget`` nodes are collated into
batches, each larger graph is predicted from its parts (``subgraph.decompose``: sentence windows
plus their ``hops``-hop halo, so the parts give the whole-graph prediction with bounded memory).
What a task's rows are (one per graph, or one per node) is asked of the task adapter.

The model behind it is anything with ``logits(batch)``, ``part_logits(parts)``, ``hops`` and
``task``: a PyTorch ``Student`` wrapped in ``TorchModel``, or an exported package's runner
(``serving.export.PackagedModel``). Building graphs from raw text is ``serving.predictor``'s job.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from trainers.student.subgraph import decompose
from trainers.tasks import get_task

BATCH_SIZE = 64  # graphs per collated forward: large enough to amortise the collation, small enough for memory


class TorchModel:
    """A PyTorch ``Student`` behind the prediction interface: its own ``forward`` and
    ``forward_parts`` on ``device``."""

    def __init__(self, student: torch.nn.Module, device="cpu"):
        self.student, self.device = student, device
        self.task = student.task
        self.hops = len(student.encoder.layers)  # message-passing layers = the halo decomposition needs

    @torch.no_grad()
    def logits(self, batch) -> torch.Tensor:
        return self.student(batch.to(self.device))[0].cpu()

    @torch.no_grad()
    def part_logits(self, parts) -> torch.Tensor:
        return self.student.forward_parts([p.to(self.device) for p in parts]).cpu()


def as_model(model, device="cpu"):
    """A ``Student`` wrapped in ``TorchModel``; anything else is taken as it is (a package's model)."""
    return TorchModel(model, device) if isinstance(model, torch.nn.Module) else model


def _alone(d: Data) -> Data:
    """``d`` as a batch of one, without collation (a copy: ``d`` itself stays collatable)."""
    d = copy.copy(d)
    d.batch = torch.zeros(d.num_nodes, dtype=torch.long)
    return d


@torch.no_grad()
def logits_per_graph(model, datas: Sequence[Data], node_budget: int | None = None,
                     batch_size: int = BATCH_SIZE) -> list[torch.Tensor]:
    """The model's logits for each encoded graph, in order: a (labels,) row per graph for graph and
    pair heads, a (nodes, labels) slice for node heads. ``node_budget``: graphs with more nodes are
    predicted from parts (None: always whole)."""
    model = as_model(model)
    task = get_task(model.task)
    if hasattr(model, "student"):
        model.student.eval()
    out: list[torch.Tensor | None] = [None] * len(datas)
    whole = [i for i, d in enumerate(datas) if node_budget is None or d.num_nodes <= node_budget]
    for k in range(0, len(whole), batch_size):
        idx = whole[k:k + batch_size]
        if len(idx) == 1:  # a single graph skips the collation (a third of the forward at batch 1)
            logits = model.logits(_alone(datas[idx[0]]))
        else:
            logits = model.logits(Batch.from_data_list([datas[i] for i in idx]))
        for i, row in zip(idx, task.split_logits(logits, [datas[i].num_nodes for i in idx])):
            out[i] = row
    for i, d in enumerate(datas):
        if out[i] is None:
            parts = [_alone(p) for p in decompose(d, node_budget, model.hops)]
            out[i] = task.split_logits(model.part_logits(parts), [d.num_nodes])[0]
    return out  # type: ignore[return-value]


def predict(model, datas: Sequence[Data], node_budget: int | None = None, batch_size: int = BATCH_SIZE,
            device="cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, gold targets and the teacher's predictions for encoded graphs that carry their
    targets, one row per prediction of the task (per graph or per node), in the order of ``datas``."""
    model = as_model(model, device)
    task = get_task(model.task)
    preds = [task.predictions(r.reshape(-1, r.shape[-1])) for r in logits_per_graph(model, datas, node_budget,
                                                                                    batch_size)]
    gold, teach = zip(*(task.gold_and_teacher(d) for d in datas)) if datas else ((), ())

    def cat(xs):
        return torch.cat(list(xs)).numpy() if xs else np.zeros(0, dtype=np.int64)

    return cat(preds), cat(gold), cat(teach)


def metrics(pred, gold, teach, labels: list[str], has_teacher: bool, task: str,
            lengths: list[int] | None = None) -> dict[str, float]:
    """The task's scores of ``pred`` (``agreement`` with the teacher when there is one)."""
    return get_task(task).scores(pred, gold, teach if has_teacher else None, labels, lengths)
