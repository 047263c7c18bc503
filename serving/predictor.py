"""Raw input -> text graph -> trained student -> prediction record: THE inference path of a student.

Everything that serves a student goes through ``Predictor``: evaluate's end-to-end latency, `tgd
predict` (one process), the exported TorchScript / ONNX packages and the Ray Data batch path. The
graph is built by ``pipeline.graph_builder.GraphBuilder`` (the graph stage's own code, in whichever
``graph.parser`` mode the student was trained on) and encoded by the student's ``GraphEncoding``,
so training and serving see identical inputs. Every task is served the same way; what differs
(the row's fields, its graph(s), the split of a batched forward, the record) is asked of the task
adapter (``trainers.tasks``): classification ``text`` -> label; token ``text`` or ``tokens`` -> one
tag per token; pair ``text`` + ``text_b`` -> similarity (+ label).

Encoded graphs go through the one batched prediction path, ``trainers.student.predict``, which
validation and evaluate's scores run too: the PyTorch ``Student`` or an exported package's model
(``serving.export.PackagedModel``), whole graphs in batches and graphs over ``node_budget`` nodes
from parts.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from serving.records import error_record
from trainers.student.predict import as_model, logits_per_graph
from trainers.tasks import get_task


class Predictor:
    """``Predictor(model, encoding, builder)``: raw input rows -> logits or prediction records.

    ``model``: a ``Student`` (or any object with the ``trainers.student.predict.TorchModel``
    interface); ``encoding`` its ``GraphEncoding``; ``builder`` a ``GraphBuilder``.
    ``node_budget``: graphs with more nodes are predicted from parts (None: always whole).
    ``max_chars``: longer texts get an error record instead of a prediction (None: no limit).
    Nothing here trains or needs the teacher, and nothing
    here knows a task: the task adapter (``trainers.tasks``) says which fields a row uses, how its
    graph(s) are built, how a batched forward splits into per-row logits, and writes the record.
    """

    def __init__(self, model, encoding, builder, *, task: str | None = None, node_budget: int | None = None,
                 max_chars: int | None = None):
        self.model = as_model(model)
        self.encoding, self.builder = encoding, builder
        self.task = task or self.model.task
        self.adapter = get_task(self.task)
        self.node_budget, self.max_chars = node_budget, max_chars
        self.labels = list(encoding.labels)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The row fields this task's prediction reads (besides ``id``)."""
        return self.adapter.inputs

    def check_format(self, fmt: str | None) -> None:
        """Refuse an input format that cannot carry this task's rows (plain lines for pairs)."""
        if fmt == "lines" and not self.adapter.lines_input:
            raise ValueError(f"task {self.task!r} needs the fields "
                             f"{', '.join(self.adapter.inputs)} in every row: plain "
                             "lines of text (--input -, a .txt file, --format lines) cannot carry them; give JSONL, "
                             f"CSV or Parquet with the columns {', '.join(repr(c) for c in self.adapter.inputs)}")

    # ------------------------------------------------------------------ logits
    def _graph_logits(self, grows: Sequence[dict]) -> list[torch.Tensor]:
        """Logits per built input (the task's graph row), through the one batched prediction path."""
        datas = [self.adapter.encode(self.encoding, g) for g in grows]
        return logits_per_graph(self.model, datas, self.node_budget, batch_size=max(len(datas), 1))

    @staticmethod
    def _as_row(x) -> dict[str, Any]:
        return x if isinstance(x, dict) else {"text": x}

    @torch.no_grad()
    def predict_logits_rows(self, inputs: Sequence, batch_size: int = 64) -> list[torch.Tensor]:
        """Logits per input, in order: (labels,) per row for graph / pair heads, (nodes, labels)
        for node heads. ``inputs``: texts or row dicts (no row checks: trusted inputs only)."""
        rows = [self._as_row(x) for x in inputs]
        out: list[torch.Tensor] = []
        for i in range(0, len(rows), batch_size):
            out += self._graph_logits(self.adapter.build_inputs(self.builder, rows[i:i + batch_size]))
        return out

    @torch.no_grad()
    def predict_logits(self, inputs: Sequence, batch_size: int = 64) -> torch.Tensor:
        """Logits of all inputs as one (rows, labels) tensor in input order: one row per input for
        graph / pair heads, one row per node (inputs concatenated) for node heads. ``inputs``: texts
        or row dicts (no row checks: for trusted inputs, e.g. evaluate's timing)."""
        rows = self.predict_logits_rows(inputs, batch_size)
        if not rows:
            return torch.zeros(0, len(self.labels))
        return torch.cat([r.reshape(-1, r.shape[-1]) for r in rows])

    # ------------------------------------------------------------------ records
    def check(self, row: Any) -> str | None:
        """Why a row (a dict with the task's fields; a bare value is its ``text``) cannot be
        predicted, or None."""
        return self.adapter.input_problem(self._as_row(row), self.max_chars)

    def _records(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records for checked rows; a failure inside a chunk is retried row by row so only the
        row that caused it gets an error record."""
        try:
            grows = self.adapter.build_inputs(self.builder, rows)
            out: list[dict[str, Any] | None] = [None] * len(rows)
            ok = []
            for i, g in enumerate(grows):
                why = self.adapter.graph_problem(g)
                if why:
                    out[i] = error_record(why)
                else:
                    ok.append(i)
            for i, logits in zip(ok, self._graph_logits([grows[i] for i in ok])):
                out[i] = self.adapter.record(logits, self.labels, grows[i]["graph"])
            return out  # type: ignore[return-value]
        except Exception as e:  # noqa: BLE001 - any failure becomes the row's error, never a crash
            if len(rows) == 1:
                return [error_record(f"prediction failed: {type(e).__name__}: {e}")]
            return [r for row in rows for r in self._records([row])]

    def predict_records(self, rows: Iterable[dict[str, Any]], batch_size: int = 64) -> list[dict[str, Any]]:
        """One record per input row, in order. A row is a dict with the task's fields
        (``self.inputs``: classification ``text``; token ``text`` or ``tokens``; pair ``text`` and
        ``text_b``) and optionally ``id`` (carried into the record), or ``{"error": ...}`` from a
        reader that could not parse it (passed through). Bad rows get ``{"error": why}``."""
        rows = list(rows)
        out: list[dict[str, Any] | None] = [None] * len(rows)
        for k in range(0, len(rows), batch_size):
            idx, todo = [], []
            for i in range(k, min(k + batch_size, len(rows))):
                row = rows[i]
                why = row.get("error") or self.check(row)
                if why:
                    out[i] = error_record(why)
                else:
                    idx.append(i)
                    todo.append(row)
            for i, rec in zip(idx, self._records(todo) if todo else []):
                out[i] = rec
        return [({"id": row["id"]} if row.get("id") is not None else {}) | rec for row, rec in zip(rows, out)]
