"""Raw text -> text graph -> trained student -> logits: the inference path of a deployed student.

The graph is built by ``pipeline.graph_builder.GraphBuilder`` (the same code as the graph stage,
in whichever ``graph.parser`` mode the student was trained on) and encoded by the student's own
``GraphEncoding`` (saved in its checkpoint), so training and serving see identical inputs.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch_geometric.data import Batch


class Predictor:
    """``Predictor(model, encoding, builder).predict_logits(texts)``: one logits row per text.

    ``model`` is a ``trainers.student.model.Student`` (classification task: one row per graph),
    ``encoding`` its ``GraphEncoding``, ``builder`` a ``GraphBuilder``. The model is put in eval
    mode; nothing here trains or needs the teacher.
    """

    def __init__(self, model: torch.nn.Module, encoding, builder):
        self.model, self.encoding, self.builder = model.eval(), encoding, builder

    def batches(self, texts: Sequence[str], batch_size: int = 64):
        """Yield one model input per ``batch_size`` texts: spaCy parses the chunk in one
        ``nlp.pipe`` call, every graph is encoded, and the graphs are collated into a PyG ``Batch``.
        A single graph skips the collation (it costs about a third of the student's forward at
        batch 1): its ``Data`` gets the all-zero ``batch`` vector the readout needs."""
        for i in range(0, len(texts), batch_size):
            datas = [self.encoding.encode(g) for g in self.builder.build(texts[i:i + batch_size])]
            if len(datas) == 1:
                datas[0].batch = torch.zeros(datas[0].num_nodes, dtype=torch.long)
                yield datas[0]
            else:
                yield Batch.from_data_list(datas)

    @torch.no_grad()
    def predict_logits(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Logits of shape (len(texts), num_labels), rows in the order of ``texts``."""
        texts = list(texts)
        if not texts:
            return torch.zeros(0, len(self.encoding.labels))
        self.model.eval()
        return torch.cat([self.model(b)[0] for b in self.batches(texts, batch_size)])
