"""What a task is on the ground floor: the columns its rows carry, how ingest checks them and counts
their labels, which texts the graph stage builds, and what the config refuses for it.

``pipeline/`` cannot import the training-side adapters (``trainers/tasks/``), so ingest, the graph
stage and config validation ask ``task_spec(cfg.data.task)`` instead of branching on the task name.
Refusals return why the config cannot work, naming the keys to change, or None.
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol


class FieldChecks(Protocol):
    """Ingest's checks of one field value (decodable, not empty, not too long, an allowed label)."""

    def text(self, value: Any, name: str) -> str | None:
        """Why ``value`` is not a usable text, or None."""

    def label(self, value: Any, name: str = "label") -> tuple[str | None, str | None]:
        """-> (label, problem)."""


class TaskSpec:
    name: ClassVar[str]
    pretokenized: ClassVar[bool] = False  # rows carry given tokens, one graph node each; ``text`` joins them by spaces
    paired: ClassVar[bool] = False  # rows carry a second text, ``text_b``: its own graph, ``graph_b``
    transfer_set: ClassVar[bool] = False  # the transfer stage's augmented copies fit this task
    # `tgd tune`'s search space when ``tune.space`` is null: section.key -> the values to draw from.
    # Each list spans the settings the task's losses are sensitive to, so a small random search on
    # validation covers them; a task whose losses weigh differently has its own.
    tune_space: ClassVar[dict[str, list[Any]]] = {
        "distill.lr": [1e-3, 3e-3, 1e-2], "distill.alpha_kl": [0.5, 0.7, 0.9], "distill.temperature": [1.0, 2.0, 4.0],
        "distill.beta_bridge": [0.0, 0.1, 0.3], "student.dropout": [0.1, 0.3, 0.5],
        "student.init_from_teacher": [False, True]}

    # "section.key" -> the value a run uses when the config leaves that key null: the distillation settings
    # whose good value differs by task, not by corpus, each measured on validation and test per task
    # (docs/RESULTS.md, "Distillation settings per task"); every task names every config key whose default is null
    # for this reason (the config refuses to load otherwise)
    task_defaults: ClassVar[dict[str, Any]] = {}

    def required_columns(self, d) -> list[str]:
        """The input columns every row of ``d`` (``DataConfig``) must have."""
        raise NotImplementedError

    def validate(self, rec: dict[str, Any], d, check: FieldChecks) -> tuple[dict[str, Any] | None, str | None]:
        """One input row -> (canonical DOCUMENTS fields, None) or (None, reason)."""
        raise NotImplementedError

    def unlabelled_columns(self, d) -> list[str]:
        """The columns every row of an unlabelled corpus of this task must have (`tgd adapt`'s domain texts)."""
        return [d.text_column]

    def validate_unlabelled(self, rec: dict[str, Any], d, check: FieldChecks
                            ) -> tuple[dict[str, Any] | None, str | None]:
        """One unlabelled input row (`tgd adapt`'s domain texts) -> (DOCUMENTS fields, None) or (None, reason).
        Any label column it carries is ignored: adaptation uses no gold labels."""
        text = rec.get(d.text_column)
        if problem := check.text(text, "text"):
            return None, problem
        return {"text": text}, None

    def labels(self, doc: dict[str, Any]) -> list[str]:
        """The labels one accepted row adds to the ingest label counts."""
        return [doc["label"]] if doc.get("label") else []

    def columns_problem(self, d) -> str | None:
        """Why the column names in ``d`` (``DataConfig``) cannot be told apart, or None."""
        return None

    def unsupported(self, cfg) -> str | None:
        """Why this task cannot run with the rest of ``cfg`` (``RunConfig``), or None."""
        return None


class ClassificationSpec(TaskSpec):
    name = "classification"
    transfer_set = True
    # what `tgd tune` chose on the full rt-sentiment (KD at T 1 with the CE term weighed equally, a light
    # bridge), with the cosine decay that measured better than a constant rate there; the peak rate 2e-3,
    # level with 1e-3 on the full corpus, because the fewer steps of a 4,000-document corpus need it
    task_defaults = {"distill.lr": 2e-3, "distill.lr_schedule": "cosine", "distill.alpha_kl": 0.5,
                     "distill.temperature": 1.0, "distill.beta_bridge": 0.3, "student.dropout": 0.3,
                     "student.static_path": False}

    def required_columns(self, d):
        return [d.text_column, d.label_column]

    def validate(self, rec, d, check):
        text = rec.get(d.text_column)
        if problem := check.text(text, "text"):
            return None, problem
        label, problem = check.label(rec.get(d.label_column))
        return (None, problem) if problem else ({"text": text, "label": label}, None)

    def columns_problem(self, d):
        return "data.text_column and data.label_column must differ" if d.text_column == d.label_column else None


class TokenSpec(TaskSpec):
    name = "token"
    pretokenized = True
    # reaches down to a low KD weight: the per-node teacher is close to the gold tags, so its soft targets
    # add less over CE on the tags than a document-level teacher adds over one label
    tune_space = {"distill.lr": [1e-3, 3e-3], "distill.alpha_kl": [0.2, 0.5, 0.7], "distill.curriculum": [False, True],
                  "distill.beta_bridge": [0.0, 0.1, 0.3], "student.dropout": [0.1, 0.3]}
    # what `tgd tune` chose on brown-pos: mostly CE on the gold tags (the per-node teacher adds little over
    # them), no node bridge, light dropout (tags are local decisions a small student should fit closely);
    # ahead of a higher KD weight with pacing on a Brown sample they were not chosen on
    task_defaults = {"distill.lr": 3e-3, "distill.lr_schedule": "constant", "distill.alpha_kl": 0.2,
                     "distill.temperature": 2.0, "distill.beta_bridge": 0.0, "student.dropout": 0.1,
                     "student.static_path": False}

    def required_columns(self, d):
        return [d.tokens_column, d.tags_column]

    def validate(self, rec, d, check):
        tokens, tags = rec.get(d.tokens_column), rec.get(d.tags_column)
        if not isinstance(tokens, list) or not tokens:
            return None, "missing tokens" if not tokens else f"tokens is not a list (got {type(tokens).__name__})"
        if not isinstance(tags, list) or len(tags) != len(tokens):
            return None, f"tags must be a list as long as tokens ({len(tokens)})"
        if problem := self._tokens_problem(tokens, check):
            return None, problem
        clean_tags = []
        for t in tags:
            tag, problem = check.label(t, "tag")
            if problem:
                return None, problem
            clean_tags.append(tag)
        text = " ".join(tokens)
        if len(text) > d.max_chars:
            return None, f"text too long ({len(text)} chars > data.max_chars={d.max_chars})"
        return {"text": text, "tokens": tokens, "tags": clean_tags}, None

    @staticmethod
    def _tokens_problem(tokens: list, check: FieldChecks) -> str | None:
        for t in tokens:
            if problem := check.text(t, "token"):
                return problem
            if any(c.isspace() for c in t):
                return f"token {t!r} contains whitespace"
        return None

    def unlabelled_columns(self, d):
        return []  # tokens or text, checked per row

    def validate_unlabelled(self, rec, d, check):
        tokens = rec.get(d.tokens_column)
        if tokens is None:  # a plain text: spaCy's tokens become the nodes
            return super().validate_unlabelled(rec, d, check)
        if not isinstance(tokens, list) or not tokens:
            return None, "missing tokens" if not tokens else f"tokens is not a list (got {type(tokens).__name__})"
        if problem := self._tokens_problem(tokens, check):
            return None, problem
        text = " ".join(tokens)
        if len(text) > d.max_chars:
            return None, f"text too long ({len(text)} chars > data.max_chars={d.max_chars})"
        return {"text": text, "tokens": tokens}, None

    def labels(self, doc):
        return doc["tags"]

    def unsupported(self, cfg):
        if cfg.teacher.kind == "causal-lm":
            return ("teacher.kind=causal-lm has no per-token label head, so data.task=token would pull the student's "
                    "node logits toward zeros: use an encoder teacher (teacher.kind=encoder)")
        if cfg.graph.merge_repeated:
            return ("graph.merge_repeated=true merges repeated words into one node, so the gold tags of "
                    "data.task=token no longer map one to one onto nodes: set graph.merge_repeated=false")
        if merging := [r.rule for r in cfg.graph.rules if not r.keeps_token_nodes]:
            return (f"graph.rules has {merging[0]}, which merges each term occurrence into one node, but "
                    f"data.task=token labels every token, so tokens merged into a term would lose their own tag: "
                    f"use link_terms instead (it links term occurrences and keeps one node per token)")
        return None


class PairSpec(TaskSpec):
    name = "pair"
    paired = True
    # beta_bridge spans large weights: for pairs the sentence-level bridge (each side's vector onto the
    # teacher's sentence embedding) is the main path of the teacher's knowledge, not a small auxiliary
    # term; no temperature (the teacher's similarity is regressed, not softened)
    tune_space = {"distill.lr": [1e-3, 3e-3], "distill.alpha_kl": [0.2, 0.5, 0.9], "distill.curriculum": [False, True],
                  "distill.beta_bridge": [1.0, 10.0, 30.0, 100.0], "student.dropout": [0.1, 0.3]}
    # the bridge is the pair student's main teacher signal (the KD target is one similarity per pair):
    # weighted far above the classification default, where it is an auxiliary term (docs/RESULTS.md);
    # the rest as the pair runs on brown-pairs were measured with (temperature is unused: no softmax)
    task_defaults = {"distill.lr": 3e-3, "distill.lr_schedule": "constant", "distill.alpha_kl": 0.7,
                     "distill.temperature": 2.0, "distill.beta_bridge": 30.0, "student.dropout": 0.3,
                     "student.static_path": True}

    def required_columns(self, d):
        return [d.text_a_column, d.text_b_column]

    def validate(self, rec, d, check):
        out, problem = self.validate_unlabelled(rec, d, check)
        if problem:
            return None, problem
        score, label = rec.get(d.score_column), rec.get(d.label_column)
        if score is not None and score != "":
            try:
                out["score"] = float(score)
            except (TypeError, ValueError):
                return None, f"score is not a number: {score!r}"
            if out["score"] != out["score"]:
                return None, "score is NaN"
        if label is not None and label != "":
            out["label"], problem = check.label(label)
            if problem:
                return None, problem
        if "score" not in out and "label" not in out:
            return None, "missing score and label"
        return out, None

    def unlabelled_columns(self, d):
        return self.required_columns(d)

    def validate_unlabelled(self, rec, d, check):
        a, b = rec.get(d.text_a_column), rec.get(d.text_b_column)
        for value, name in ((a, "text_a"), (b, "text_b")):
            if problem := check.text(value, name):
                return None, problem
        return {"text": a, "text_b": b}, None

    def unsupported(self, cfg):
        if cfg.teacher.kind == "causal-lm":
            return ("teacher.kind=causal-lm gives no sentence embeddings, which data.task=pair distils (the teacher's "
                    "similarity is the cosine of its mean-pooled embeddings): use an encoder teacher "
                    "(teacher.kind=encoder)")
        if "no_adaptive_t" in cfg.evaluate.ablations:
            return ("evaluate.ablations has no_adaptive_t, but data.task=pair regresses the teacher's similarity (no "
                    "temperature to adapt), so that row would repeat the distilled one: drop no_adaptive_t")
        return None


SPECS: dict[str, TaskSpec] = {s.name: s for s in (ClassificationSpec(), TokenSpec(), PairSpec())}


def task_spec(name: str) -> TaskSpec:
    if name not in SPECS:
        raise ValueError(f"data.task={name!r} is not a task; known: {', '.join(SPECS)}")
    return SPECS[name]


def unsupported(cfg) -> str | None:
    """Why ``cfg``'s task cannot run with the rest of ``cfg``, else None."""
    return task_spec(cfg.data.task).unsupported(cfg)
