"""The teacher as a predictor of raw rows: the fine-tuned Hugging Face checkpoint answering the same
rows as the student, with the same records (classification: ``{"label", "probabilities"}``).

It runs what evaluate's teacher row runs (``trainers.teacher``: the checkpoint's tokenizer, the
teacher stage's windows, a forward per window and the mean of the windows' logits), so a teacher
served next to the student (`bench/serve_load.py`) does the same job as the teacher that was scored.
Only encoder teachers with a sequence-classification head are served: the classification task.

Rows are checked by the task adapter like the student's rows (``input_problem``: missing, empty,
non-string or over-long text), and a row that fails inside a batch is retried alone, so it alone
gets an error record: the contract of ``serving.predictor.Predictor.predict_records``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from serving.records import error_record
from tgd.errors import UserError
from tgd.schema import stage_dir
from trainers.tasks import get_task


class TeacherError(UserError, RuntimeError):
    """A teacher checkpoint that cannot be served (not a classification checkpoint, other labels, ...)."""


class TeacherPredictor:
    """``TeacherPredictor(model_dir, labels)``: raw rows -> classification records from an encoder
    checkpoint. ``labels``: the record's label order (the student package's); a checkpoint with a
    classification head must have exactly these labels (its own order is mapped), one without a head
    (a base checkpoint, for timing only) gets a fresh head. ``max_length`` / ``stride`` /
    ``max_windows``: the teacher stage's windows (``teacher.*`` of the run)."""

    task = "classification"
    inputs = ("text",)

    def __init__(self, model_dir: str | Path, labels: Sequence[str] | None = None, *, max_length: int = 128,
                 stride: int = 32, max_windows: int = 32, max_chars: int | None = None):
        from trainers.teacher.model import head_labels, load_model, load_tokenizer
        from trainers.teacher.windows import Windower

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise TeacherError(f"{path} is not a Hugging Face checkpoint directory (no config.json)")
        own = head_labels(path)
        if not labels and not own:
            raise TeacherError(f"the teacher at {path} has no classification head: give the labels")
        self.labels = list(labels or own)
        if own and sorted(own) != sorted(self.labels):
            raise TeacherError(f"the teacher at {path} was trained on the labels {own}, the student predicts "
                               f"{self.labels}: not the same task")
        head = own or self.labels
        self.order = torch.tensor([head.index(label) for label in self.labels])
        self.tok = load_tokenizer(path)
        self.model = load_model(path, "encoder", "sequence", head).eval()
        self.win = Windower(self.tok, max_length, stride, max_windows)
        self.adapter, self.max_chars = get_task(self.task), max_chars

    @torch.no_grad()
    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """(texts, labels) logits in ``self.labels`` order: the mean over each text's windows."""
        from trainers.teacher.inference import pad_batch

        rows, owner = [], []
        for i, e in enumerate(self.win.encode(list(texts))):
            for a, b in e.windows:
                rows.append(self.win.wrap(e.ids[a:b]))
                owner.append(i)
        ids, mask = pad_batch(rows, self.tok.pad_token_id)
        out = self.model(input_ids=ids, attention_mask=mask).logits.float()
        idx = torch.tensor(owner)
        total = torch.zeros(len(texts), out.shape[1]).index_add_(0, idx, out)
        mean = total / torch.bincount(idx, minlength=len(texts)).clamp(min=1).unsqueeze(1)
        return mean[:, self.order]

    def check(self, row: dict[str, Any]) -> str | None:
        return self.adapter.input_problem(row, self.max_chars)

    def _records(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            return [self.adapter.record(lg, self.labels, {}) for lg in self.logits([r["text"] for r in rows])]
        except Exception as e:  # noqa: BLE001 - any failure becomes the row's error, never a crash
            if len(rows) == 1:
                return [error_record(f"prediction failed: {type(e).__name__}: {e}")]
            return [r for row in rows for r in self._records([row])]

    def predict_records(self, rows: Iterable[dict[str, Any]], batch_size: int = 64) -> list[dict[str, Any]]:
        """One record per row, in order, ids carried, bad rows as error records (like ``Predictor``)."""
        rows = list(rows)
        out: list[dict[str, Any] | None] = [None] * len(rows)
        for k in range(0, len(rows), batch_size):
            idx = []
            for i in range(k, min(k + batch_size, len(rows))):
                why = rows[i].get("error") or self.check(rows[i])
                if why:
                    out[i] = error_record(why)
                else:
                    idx.append(i)
            for i, rec in zip(idx, self._records([rows[i] for i in idx]) if idx else []):
                out[i] = rec
        return [({"id": row["id"]} if row.get("id") is not None else {}) | rec for row, rec in zip(rows, out)]


# ------------------------------------------------------------------ the teacher inside a package
TEACHER_DIR = "teacher"  # the package's sub-directory holding the teacher checkpoint


def finetuned_teacher(cfg, labels: Sequence[str]) -> Path:
    """The run's fine-tuned teacher directory that `tgd export --with-teacher` packages, or a
    ``TeacherError`` saying why there is none to package: only an encoder teacher fine-tuned for
    classification with the student's labels is (checked before anything is written)."""
    from trainers.teacher.model import finetuned_model_dir, head_labels

    if cfg.data.task != "classification" or cfg.teacher.kind != "encoder":
        raise TeacherError(f"--with-teacher packages a fine-tuned encoder teacher for classification; this run is "
                           f"data.task={cfg.data.task!r}, teacher.kind={cfg.teacher.kind!r} (the cascade defers "
                           "whole documents only, for now)")
    src = finetuned_model_dir(cfg)
    if src is None or not (src / "config.json").is_file():
        raise TeacherError(f"--with-teacher: run {cfg.run_dir} has no fine-tuned teacher (teacher-finetune has not "
                           "run, or kept the base checkpoint, which has no classification head): run "
                           "`tgd teacher-finetune CONFIG` first")
    own = head_labels(src)
    if not own or sorted(own) != sorted(labels):
        raise TeacherError(f"--with-teacher: the teacher at {src} predicts {own}, the student {list(labels)}")
    return src


def package_teacher(cfg, out: Path, labels: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Copy the run's fine-tuned teacher (its HF directory: config, tokenizer, weights) into
    ``out/teacher/`` for the cascade; -> the copied files (relative to ``out``, for the manifest)
    and package.json's ``teacher_package`` entry (its labels, the teacher stage's windows and, when
    `tgd evaluate` has run, ``defer_below``: the threshold it chose on validation, the default of
    ``--defer-below``)."""
    import shutil

    from trainers.teacher.model import head_labels

    src = finetuned_teacher(cfg, labels)
    own = head_labels(src)
    dest = out / TEACHER_DIR
    dest.mkdir()
    names = []
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, dest / f.name)
            names.append(f"{TEACHER_DIR}/{f.name}")
    t = cfg.teacher
    meta = {"dir": TEACHER_DIR, "model": t.model, "kind": t.kind, "labels": own, "max_length": t.max_length,
            "stride": t.stride, "max_windows": t.max_windows, "source": str(src), "defer_below": None}
    chosen = stage_dir(cfg, "evaluate") / "cascade.json"  # the threshold evaluate chose on validation
    if chosen.is_file():
        c = json.loads(chosen.read_text())
        meta.update(defer_below=c["threshold"], cascade={"why": c["why"], "goal": c["goal"],
                                                         "validation": c["validation"], "test": c["test"]})
    return names, meta


def load_packaged_teacher(pkg: Path, meta: dict[str, Any], max_chars: int | None = None) -> TeacherPredictor:
    """The teacher a package carries (``tgd export --with-teacher``; checksums verified by the caller)."""
    t = meta.get("teacher_package")
    if not t:
        raise TeacherError(f"{pkg} carries no teacher: export it with `tgd export CONFIG ... --with-teacher` to "
                           "defer to the teacher (--defer-below)")
    return TeacherPredictor(Path(pkg) / t["dir"], meta["labels"], max_length=t["max_length"], stride=t["stride"],
                            max_windows=t["max_windows"], max_chars=max_chars)


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher checkpoint to serve on its own (``serving.service.serve_forever``; `bench/serve_load.py`
    serves the teacher this way, next to the student). ``labels``: the record's label order."""

    model_dir: str
    labels: tuple[str, ...] | None = None
    max_length: int = 128
    stride: int = 32
    max_windows: int = 32
    max_chars: int | None = None

    def load(self, threads: int) -> TeacherPredictor:
        return TeacherPredictor(self.model_dir, self.labels, max_length=self.max_length, stride=self.stride,
                                max_windows=self.max_windows, max_chars=self.max_chars)

    def metadata(self) -> dict[str, Any]:
        return {"teacher": self.model_dir, "labels": list(self.labels or []), "task": TeacherPredictor.task,
                "windows": {"max_length": self.max_length, "stride": self.stride, "max_windows": self.max_windows}}

    def describe(self) -> str:
        return f"teacher {self.model_dir}"
