"""The task interface: everything that differs between classification, token labelling and pairs.

Stages ask the run's adapter (``trainers.tasks.get_task(cfg.data.task)``) instead of branching on the
task name: what the teacher fine-tunes on and how its outputs add up per document, what a training
example's targets and teacher view are, which student head and teacher head it needs, what CE and KD
compare in a batch, which metrics score it, and what a prediction record looks like. A new task is
one new adapter file registered in ``trainers/tasks/__init__.py`` plus its ground-floor spec in
``tgd/tasks.py`` (row columns and checks, graph inputs, config refusals: ``pipeline/`` and the config
cannot import this).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from trainers.tasks.scores import accuracy_f1


class Task:
    name: ClassVar[str]
    head: ClassVar[str]  # student head: "graph" (one row per graph), "node" (one row per node), "pair"
    teacher_head: ClassVar[str]  # HF head: "sequence", "token" or "embedding" (no head, pooled states)
    metric: ClassVar[str] = "accuracy"  # headline metric: picks the best epoch, leads the table
    soft_labels: ClassVar[bool] = True  # KD compares softened distributions (temperatures apply); False: a regression

    def headline(self, labels: list[str]) -> str:
        """The headline metric for a run with these ingest labels (a task whose data may carry scores
        or labels, like pairs, picks by them)."""
        return self.metric

    # ------------------------------------------------------------------ teacher
    # The teacher stages (``trainers.teacher``) ask these: what fine-tuning trains on, how the windows'
    # outputs of a document add up to its TEACHER row, and what the stored outputs are scored against.
    teacher_as_is: ClassVar[str | None] = None  # why teacher-finetune keeps the given checkpoint (it has no label head)
    teacher_texts: ClassVar[tuple[str, ...]] = ("text",)  # DOCUMENTS columns the teacher reads, one side each
    teacher_gold: ClassVar[str] = "label"  # the DOCUMENTS column the teacher's outputs are scored against
    # what the teacher's recipe search and early stopping rank by: macro-F1, so a minority label counts
    teacher_selection_metric: ClassVar[str] = "macro_f1"

    def validation_nodes(self, tokens: list[str] | None) -> tuple[list[int], list[int]]:
        """Character (starts, ends) of the nodes fine-tune validation scores in one document: none where
        the target is the whole document."""
        return [], []

    def finetune_target(self, docs: dict[str, list], d: int, enc, a: int, b: int, windower,
                        label_index: dict[str, int]):
        """Fine-tuning target of document ``d``'s window [a, b) of its sub-words ``enc``: its label index."""
        return label_index[docs["label"][d]]

    def finetune_batch_targets(self, targets: list) -> torch.Tensor:
        """One micro-batch's ``finetune_target`` values as the HF head's ``labels``."""
        return torch.tensor(targets)

    def add_teacher_window(self, acc: dict[str, Any], out: dict[str, np.ndarray], r: int, pos: np.ndarray,
                           a: int, b: int, subwords: int) -> None:
        """Add row ``r`` of a teacher forward's ``out`` (one window: sub-words [a, b) of ``subwords``, at
        positions ``pos`` of the row) to its document side's running sums ``acc``: the logits."""
        acc["logits"] = acc["logits"] + out["logits"][r]

    def finish_teacher_row(self, row: dict[str, Any], accs: list[dict[str, Any]], groups, denom: np.ndarray,
                           tcfg) -> None:
        """Put a document's teacher outputs on its TEACHER ``row`` from the running sums of its sides
        (``accs``; ``groups``: sub-words per node, ``denom``: windows per sub-word): the logits averaged
        over windows, only the top ``teacher.topk`` kept (plus the probability mass of the rest)."""
        acc = accs[0]
        logits = (acc["logits"] / max(acc["n"], 1)).astype(np.float32)
        k = tcfg.topk
        if k and k < len(logits):
            idx = np.argsort(-logits, kind="stable")[:k]
            p = np.exp(logits - logits.max())
            p /= p.sum()
            row["logits"], row["topk_index"] = logits[idx], idx.astype(np.int32)
            row["topk_rest"] = float(max(1.0 - p[idx].sum(), 0.0))
        else:
            row["logits"] = logits

    def teacher_predictions(self, row: dict[str, Any], gold, labels: list[str]) -> tuple[list, list]:
        """(gold, teacher prediction) lists of one TEACHER row against its document's ``teacher_gold``."""
        top = int(row["topk_index"][0]) if row.get("topk_index") is not None else int(np.argmax(row["logits"]))
        return [gold], [labels[top]]

    def teacher_scores(self, gold: list, pred: list, labels: list[str]) -> dict[str, float]:
        """The teacher's quality over ``teacher_predictions`` pairs."""
        return accuracy_f1(gold, pred, labels)

    # ------------------------------------------------------------------ data
    def decode_teacher(self, row: dict[str, Any], order: list[int], num_labels: int) -> dict[str, Any]:
        """A stored teacher row (``tgd.schema.TEACHER``) decoded for the student: logits reordered to
        the ingest label order and expanded to full length where the stage kept only the top k."""
        return row

    def encode(self, enc, row: dict[str, Any]):
        """A GRAPHS row (``tgd.schema.GRAPHS``) -> the encoded ``Data`` the student reads (before targets)."""
        return enc.encode(row["graph"])

    def words(self, data):
        """The word ids a non-graph baseline reads for one example (``featurize``'s input)."""
        return data.x_tok

    def set_targets(self, data, enc, label, tags, trow: dict | None) -> None:
        """Put the gold targets and the teacher's outputs on an encoded graph (``Data``)."""
        raise NotImplementedError

    def teacher_uncertainty(self, data) -> float:
        """The teacher's normalised entropy on this example in [0, 1]: the curriculum's difficulty term."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def targets(self, logits: torch.Tensor, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(CE targets, student logits for KD, teacher logits for KD) of a batch; -1 targets are
        unlabelled (transfer copies, unaligned nodes) and carry no CE."""
        raise NotImplementedError

    def gold_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss against the gold targets (CE ignoring -1)."""
        from trainers.distill.losses import ce

        return ce(logits, y)

    def kd_loss(self, s_kd: torch.Tensor, t_kd: torch.Tensor, temperature,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """The loss against the teacher (Hinton KL at ``temperature``, x T^2)."""
        from trainers.distill.losses import kd_kl

        return kd_kl(s_kd, t_kd, temperature, weight)

    def make_bridge(self, student, state_dim: int, example) -> torch.nn.Module | None:
        """The training-only bridge module (``example``: one training ``Data``), or None: the
        attention bridge over the teacher's node states when it stored any."""
        from trainers.distill.bridge import AttentionBridge

        return AttentionBridge(student.hidden, state_dim) if state_dim else None

    def bridge_loss(self, bridge, student, h: torch.Tensor, batch) -> torch.Tensor:
        """The bridge loss of a batch, from the student's node states ``h`` (the GNN's: a static
        path's columns are the teacher's vectors as they are)."""
        return bridge(h[:, :student.hidden], batch.batch, batch.t_states.float(), batch.t_mask)

    def gate_weight(self, batch, t_kd: torch.Tensor) -> torch.Tensor:
        """Per-KD-row weight when the weak-teacher gate is on: 1 where the teacher predicts the gold
        target (or there is none), else 0."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """The student's prediction per row from its outputs (a label index, or a score)."""
        return logits.argmax(-1)

    # The cascade (``trainers.evaluate.cascade``, ``serving.cascade``): what a deployment defers to the
    # teacher as a whole, and how sure the student is of it. None: the task has no cascade.
    cascade_unit: ClassVar[str | None] = "document"

    def unit_confidence(self, logits: torch.Tensor) -> float | None:
        """The student's confidence in one unit from its logits (one row per document, or a node row
        per token): the least confident row's largest probability, so one unsure token defers its
        sentence."""
        p = torch.softmax(logits.reshape(-1, logits.shape[-1]).float(), -1)
        return float(p.max(-1).values.min()) if len(p) else 1.0

    def row_correct(self, pred: np.ndarray, gold: np.ndarray) -> np.ndarray | None:
        """Per prediction row, whether it is right (paired bootstrap intervals); None where the
        metric does not split into rows (a rank correlation)."""
        return pred == gold

    def gold_and_teacher(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """Gold targets and the teacher's predictions for one graph, aligned with ``predict``'s rows."""
        raise NotImplementedError

    def hide_gold(self, data) -> None:
        """Hide ``data``'s gold targets (in place: -1, as a transfer copy has): a training example the
        student may learn from the teacher alone (the small-data rows' documents beyond their labelled
        fraction)."""
        data.y.fill_(-1)

    def teacher_as_gold(self, data) -> None:
        """The teacher's predictions become ``data``'s gold targets (in place): how a validation set of
        texts without gold labels (`tgd adapt`'s held-out domain texts) scores a student, by its
        agreement with the teacher."""
        gold, teach = self.gold_and_teacher(data)
        gold.copy_(teach.to(gold.dtype))

    def scores(self, pred: np.ndarray, gold: np.ndarray, teach: np.ndarray | None, labels: list[str],
               lengths: list[int] | None = None) -> dict[str, float]:
        """Metrics of predictions against gold (-1 gold is skipped); ``agreement`` with the teacher
        when ``teach`` is given; ``lengths``: rows per document, where a metric needs documents."""
        raise NotImplementedError

    # ------------------------------------------------------------------ serving
    # Prediction on raw input (``serving.predictor.Predictor``) asks these instead of branching on the
    # task: which fields a row uses, what makes a row unusable, how its graph(s) are built, how a
    # batched forward splits into per-row logits, and what the record looks like.
    inputs: ClassVar[tuple[str, ...]] = ("text",)  # row fields a prediction row may use (besides ``id``)
    lines_input: ClassVar[bool] = True  # a plain line of text (stdin, .txt) is a complete row of this task

    def input_problem(self, row: dict[str, Any], max_chars: int | None) -> str | None:
        """Why a prediction row cannot be predicted (missing, wrong type, empty, too long), or None."""
        return text_problem(row.get("text"), "text", max_chars)

    def build_inputs(self, builder, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Checked prediction rows -> one GRAPHS-like row each (``{"graph": ...}``, what ``encode``
        reads), built with the graph stage's ``GraphBuilder``."""
        return [{"graph": g} for g in builder.build([r["text"] for r in rows])]

    def graph_problem(self, grow: dict[str, Any]) -> str | None:
        """Why a built input cannot be predicted (a graph without nodes), or None."""
        return "no tokens in the text" if grow["graph"]["num_nodes"] == 0 else None

    def split_logits(self, logits: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
        """A batched forward's logits -> one entry per graph (``sizes``: nodes per graph). Graph and
        pair heads give one row per graph."""
        return list(logits)

    def record(self, logits: torch.Tensor, labels: list[str], graph: dict[str, Any]) -> dict[str, Any]:
        """The prediction record of one input, from the student's logits and its text graph."""
        raise NotImplementedError


def text_problem(value: Any, name: str, max_chars: int | None) -> str | None:
    """Why ``value`` is not a usable text for field ``name``, or None (prediction rows)."""
    if value is None:
        return f"row has no {name!r} field"
    if not isinstance(value, str):
        return f"{name} must be a string, got {type(value).__name__}"
    if not value.strip():
        return f"empty {name}"
    if max_chars is not None and len(value) > max_chars:
        return f"{name} too long: {len(value):,} characters (limit {max_chars:,}, --max-chars)"
    return None
