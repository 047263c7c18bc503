"""Raw text -> text graph -> trained student -> prediction record: THE inference path of a student.

Everything that serves a student goes through ``Predictor``: evaluate's end-to-end latency, `tgd
predict` (one process), the exported TorchScript / ONNX packages and the Ray Data batch path. The
graph is built by ``pipeline.graph_builder.GraphBuilder`` (the graph stage's own code, in whichever
``graph.parser`` mode the student was trained on) and encoded by the student's ``GraphEncoding``,
so training and serving see identical inputs.

The model behind it is anything with ``logits(batch)``, ``part_logits(parts)`` and ``hops``: the
PyTorch ``Student`` (wrapped in ``TorchModel``) or an exported package's runner
(``serving.export``). Graphs over ``node_budget`` nodes are predicted from parts
(``trainers.student.subgraph.decompose``: sentence windows plus their ``hops``-hop halo, so the
parts give the whole-graph prediction with bounded memory per forward).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch_geometric.data import Batch

from serving.records import error_record, record_writer
from trainers.student.subgraph import decompose


class TorchModel:
    """The PyTorch ``Student`` behind the predictor interface (its own forward and forward_parts,
    exactly what evaluate scores)."""

    def __init__(self, student: torch.nn.Module):
        self.student = student.eval()
        self.task = student.task
        self.hops = len(student.encoder.layers)  # message-passing layers = the halo decomposition needs

    @torch.no_grad()
    def logits(self, batch) -> torch.Tensor:
        return self.student(batch)[0]

    @torch.no_grad()
    def part_logits(self, parts) -> torch.Tensor:
        return self.student.forward_parts(parts)


class Predictor:
    """``Predictor(model, encoding, builder)``: raw texts -> logits or prediction records.

    ``model``: a ``Student`` (or any object with the ``TorchModel`` interface); ``encoding`` its
    ``GraphEncoding``; ``builder`` a ``GraphBuilder``. ``node_budget``: graphs with more nodes are
    predicted from parts (None: always whole). ``max_chars``: longer texts get an error record
    instead of a prediction (None: no limit). Nothing here trains or needs the teacher.
    """

    def __init__(self, model, encoding, builder, *, task: str | None = None, node_budget: int | None = None,
                 max_chars: int | None = None):
        self.model = TorchModel(model) if isinstance(model, torch.nn.Module) else model
        self.encoding, self.builder = encoding, builder
        self.task = task or self.model.task
        self.writer = None  # the task's record writer, on the first predict_records (evaluate only times logits)
        self.node_budget, self.max_chars = node_budget, max_chars
        self.labels = list(encoding.labels)

    # ------------------------------------------------------------------ logits
    def _graph_logits(self, graphs: Sequence[dict]) -> list[torch.Tensor]:
        """One logits row per graph: graphs within the budget in one collated batch, each larger
        graph from its parts."""
        datas = [self.encoding.encode(g) for g in graphs]
        out: list[torch.Tensor | None] = [None] * len(datas)
        whole = [i for i, d in enumerate(datas) if self.node_budget is None or d.num_nodes <= self.node_budget]
        if len(whole) == 1:  # a single graph skips the collation (a third of the forward at batch 1)
            d = datas[whole[0]]
            d.batch = torch.zeros(d.num_nodes, dtype=torch.long)
            out[whole[0]] = self.model.logits(d)[0]
        elif whole:
            for i, row in zip(whole, self.model.logits(Batch.from_data_list([datas[i] for i in whole]))):
                out[i] = row
        for i, d in enumerate(datas):
            if out[i] is None:
                parts = decompose(d, self.node_budget, self.model.hops)
                for p in parts:
                    p.batch = torch.zeros(p.num_nodes, dtype=torch.long)
                out[i] = self.model.part_logits(parts)[0]
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def predict_logits(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Logits of shape (len(texts), num_labels), rows in the order of ``texts`` (no row checks:
        for trusted texts, e.g. evaluate's timing)."""
        texts = list(texts)
        if not texts:
            return torch.zeros(0, len(self.labels))
        rows = []
        for i in range(0, len(texts), batch_size):
            rows += self._graph_logits(self.builder.build(texts[i:i + batch_size]))
        return torch.stack(rows)

    # ------------------------------------------------------------------ records
    def check(self, text: Any) -> str | None:
        """Why a row's text cannot be predicted, or None."""
        if not isinstance(text, str):
            return f"text must be a string, got {type(text).__name__}"
        if not text.strip():
            return "empty text"
        if self.max_chars is not None and len(text) > self.max_chars:
            return f"text too long: {len(text):,} characters (limit {self.max_chars:,}, --max-chars)"
        return None

    def _records(self, texts: list[str]) -> list[dict[str, Any]]:
        """Records for checked texts; a failure inside a chunk is retried row by row so only the
        row that caused it gets an error record."""
        try:
            graphs = self.builder.build(texts)
            out: list[dict[str, Any] | None] = [None] * len(texts)
            ok = []
            for i, g in enumerate(graphs):
                if g["num_nodes"] == 0:
                    out[i] = error_record("no tokens in the text")
                else:
                    ok.append(i)
            for i, logits in zip(ok, self._graph_logits([graphs[i] for i in ok])):
                out[i] = self.writer.record(logits, self.labels, graphs[i])
            return out  # type: ignore[return-value]
        except Exception as e:  # noqa: BLE001 - any failure becomes the row's error, never a crash
            if len(texts) == 1:
                return [error_record(f"prediction failed: {type(e).__name__}: {e}")]
            return [r for t in texts for r in self._records([t])]

    def predict_records(self, rows: Iterable[dict[str, Any]], batch_size: int = 64) -> list[dict[str, Any]]:
        """One record per input row, in order. A row is ``{"text": ..., "id": ...}`` (``id``
        optional, carried into the record), or ``{"error": ...}`` from a reader that could not
        parse it (passed through). Bad rows get ``{"error": why}``."""
        self.writer = self.writer or record_writer(self.task)  # refuses a task not served yet, by name
        rows = list(rows)
        out: list[dict[str, Any] | None] = [None] * len(rows)
        for k in range(0, len(rows), batch_size):
            idx, texts = [], []
            for i in range(k, min(k + batch_size, len(rows))):
                row = rows[i]
                why = row.get("error") or self.check(row.get("text"))
                if why:
                    out[i] = error_record(why)
                else:
                    idx.append(i)
                    texts.append(row["text"])
            for i, rec in zip(idx, self._records(texts) if texts else []):
                out[i] = rec
        return [({"id": row["id"]} if row.get("id") is not None else {}) | rec for row, rec in zip(rows, out)]
