"""Raw input -> text graph -> trained student -> prediction record: THE inference path of a student.

Everything that serves a student goes through ``Predictor``: evaluate's end-to-end latency, `tgd
predict` (one process), the exported TorchScript / ONNX packages and the Ray Data batch path. The
graph is built by ``pipeline.graph_builder.GraphBuilder`` (the graph stage's own code, in whichever
``graph.parser`` mode the student was trained on) and encoded by the student's ``GraphEncoding``,
so training and serving see identical inputs. Every task is served the same way; what differs
(the row's fields, its graph(s), the split of a batched forward, the record) is asked of the task
adapter (``trainers.tasks``): classification ``text`` -> label; token ``text`` or ``tokens`` -> one
tag per token; pair ``text`` + ``text_b`` -> similarity (+ label).

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

from serving.records import error_record
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
    """``Predictor(model, encoding, builder)``: raw input rows -> logits or prediction records.

    ``model``: a ``Student`` (or any object with the ``TorchModel`` interface); ``encoding`` its
    ``GraphEncoding``; ``builder`` a ``GraphBuilder``. ``node_budget``: graphs with more nodes are
    predicted from parts (None: always whole). ``max_chars``: longer texts get an error record
    instead of a prediction (None: no limit). Nothing here trains or needs the teacher, and nothing
    here knows a task: the task adapter (``trainers.tasks``) says which fields a row uses, how its
    graph(s) are built, how a batched forward splits into per-row logits, and writes the record.
    """

    def __init__(self, model, encoding, builder, *, task: str | None = None, node_budget: int | None = None,
                 max_chars: int | None = None):
        from trainers.tasks import get_task

        self.model = TorchModel(model) if isinstance(model, torch.nn.Module) else model
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
            raise ValueError(f"task {self.task!r} needs the fields {', '.join(self.adapter.inputs)} in every row: plain "
                             "lines of text (--input -, a .txt file, --format lines) cannot carry them; give JSONL, "
                             f"CSV or Parquet with the columns {', '.join(repr(c) for c in self.adapter.inputs)}")

    # ------------------------------------------------------------------ logits
    def _graph_logits(self, grows: Sequence[dict]) -> list[torch.Tensor]:
        """Logits per built input (the task's graph row): graphs within the budget in one collated
        batch, each larger graph from its parts. One row per graph (graph / pair heads) or one
        (nodes, labels) slice per graph (node head), as the adapter splits them."""
        datas = [self.adapter.encode(self.encoding, g) for g in grows]
        out: list[torch.Tensor | None] = [None] * len(datas)
        whole = [i for i, d in enumerate(datas) if self.node_budget is None or d.num_nodes <= self.node_budget]
        if len(whole) == 1:  # a single graph skips the collation (a third of the forward at batch 1)
            d = datas[whole[0]]
            d.batch = torch.zeros(d.num_nodes, dtype=torch.long)
            out[whole[0]] = self.adapter.split_logits(self.model.logits(d), [d.num_nodes])[0]
        elif whole:
            logits = self.model.logits(Batch.from_data_list([datas[i] for i in whole]))
            for i, row in zip(whole, self.adapter.split_logits(logits, [datas[i].num_nodes for i in whole])):
                out[i] = row
        for i, d in enumerate(datas):
            if out[i] is None:
                parts = decompose(d, self.node_budget, self.model.hops)
                for p in parts:
                    p.batch = torch.zeros(p.num_nodes, dtype=torch.long)
                out[i] = self.adapter.split_logits(self.model.part_logits(parts), [d.num_nodes])[0]
        return out  # type: ignore[return-value]

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
