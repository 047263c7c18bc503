"""The teacher's one inference path: documents -> windows -> forward passes -> one TEACHER row per
document. Fine-tune validation, the teacher-logits stage and evaluate's teacher row all run it.

``TeacherForward`` is the forward pass on a batch of windows (a plain model or a ZeRO-3 engine's
module), with its padding rule and the causal-lm verbalizer (label words whose next-token logits
stand in for a classification head); ``process`` cuts document batches into windows, runs the
forward on micro-batches of similar lengths and adds the windows' outputs up per document, as the
task adapter says (``Task.add_teacher_window`` / ``Task.finish_teacher_row``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from tgd.config import TeacherConfig
from trainers.teacher.alignment import align_nodes, pool_nodes
from trainers.teacher.windows import Windower

if TYPE_CHECKING:
    from trainers.tasks.base import Task

# Documents per batch handed to ``process``: enough windows to sort by length into well-filled
# micro-batches, few enough that a killed worker loses little (teacher-logits writes one file per batch).
DOCS_PER_BATCH = 256


def pad_batch(rows: list[list[int]], pad_id: int, left: bool = False):
    """Pad to the longest row. Causal LMs are left-padded so the last position is the next-token one."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl] = torch.tensor(r, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def verbalizer_ids(tokenizer, labels: list[str], verbalizer: dict[str, str] | None) -> list[int]:
    """First sub-word of " word" for each label; distinct words are required."""
    words = [(verbalizer or {}).get(l, l) for l in labels]
    ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(ids)) != len(ids):
        raise ValueError(f"teacher.verbalizer: label words {words} do not start with distinct tokens; "
                         "choose other words")
    return ids


class TeacherForward:
    """One forward pass on a batch of windows -> numpy outputs. Works on a plain model or a ZeRO-3 engine's module."""

    def __init__(self, module, kind: str, task: str, pad_id: int, device, verbalizer: list[int] | None = None):
        self.module, self.kind, self.task, self.pad_id, self.device = module, kind, task, pad_id, device
        self.verbalizer = verbalizer

    def __call__(self, rows: list[list[int]]) -> dict[str, np.ndarray]:
        import torch

        left = self.kind == "causal-lm"
        ids, mask = pad_batch(rows, self.pad_id, left=left)
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.no_grad():
            if left:
                pos = (mask.cumsum(1) - 1).clamp(min=0)
                out = self.module(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True,
                                  logits_to_keep=1)
                logits = out.logits[:, -1, :][:, self.verbalizer]
            else:
                out = self.module(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                logits = getattr(out, "logits", None)
            hidden = out.hidden_states[-1] if out.hidden_states is not None else out.last_hidden_state
        res = {"hidden": hidden.float().cpu().numpy(), "mask": mask.cpu().numpy().astype(bool),
               "shift": (ids.shape[1] - mask.sum(1)).cpu().numpy() if left else np.zeros(len(rows), dtype=np.int64)}
        if logits is not None:
            res["logits"] = logits.float().cpu().numpy()
        return res


class DocBatch:
    """A batch of documents: their windows, the outputs gathered per window, and the finished rows."""

    def __init__(self, docs: dict[str, list], tcfg: TeacherConfig, task: Task, windower: Windower,
                 projection: np.ndarray | None, teacher: str):
        self.docs, self.cfg, self.task, self.win, self.proj, self.teacher = (docs, tcfg, task, windower, projection,
                                                                             teacher)
        self.n = len(docs["id"])
        self.sides = [windower.encode(docs[column]) for column in task.teacher_texts]
        self.acc: dict[tuple[int, int], dict[str, Any]] = {}
        jobs = []
        for s, encs in enumerate(self.sides):
            for d, e in enumerate(encs):
                self.acc[(d, s)] = {"n": 0, "logits": 0.0, "emb": 0.0, "count": np.zeros(len(e.ids), np.int32)}
                for a, b in e.windows:
                    jobs.append((d, s, a, b))
        jobs.sort(key=lambda j: j[3] - j[2])  # similar lengths together: less padding
        self.jobs = jobs
        self.pending = len(jobs)

    def micro_batches(self, size: int) -> Iterator[list[tuple[int, int, int, int]]]:
        for i in range(0, len(self.jobs), size):
            yield self.jobs[i:i + size]

    def rows_for(self, jobs) -> list[list[int]]:
        return [self.win.wrap(self.sides[s][d].ids[a:b]) for d, s, a, b in jobs]

    def apply(self, jobs, out: dict[str, np.ndarray]) -> None:
        """Add one forward's outputs to the documents' running sums (windows are averaged)."""
        want_states = self.cfg.node_states and self.proj is not None
        for r, (d, s, a, b) in enumerate(jobs):
            acc, e = self.acc[(d, s)], self.sides[s][d]
            pos = int(out["shift"][r]) + len(self.win.prefix) + np.arange(b - a)
            acc["n"] += 1
            acc["count"][a:b] += 1
            self.task.add_teacher_window(acc, out, r, pos, a, b, len(e.ids))
            if want_states and s == 0:
                ts = acc.setdefault("tok_states", np.zeros((len(e.ids), out["hidden"].shape[-1]), np.float32))
                ts[a:b] += out["hidden"][r, pos]
        self.pending -= len(jobs)

    def finish(self) -> list[dict[str, Any]]:
        assert self.pending == 0
        rows = []
        for d in range(self.n):
            acc, e = self.acc[(d, 0)], self.sides[0][d]
            row: dict[str, Any] = {
                "id": self.docs["id"][d], "split": self.docs["split"][d], "teacher": self.teacher,
                "max_length": self.cfg.max_length,
                "num_windows": sum(self.acc[(d, s)]["n"] for s in range(len(self.sides))),
                "truncated": any(self.sides[s][d].truncated for s in range(len(self.sides))),
            }
            seen = acc["count"] > 0
            groups = None
            if "tok_logits" in acc or "tok_states" in acc:  # per-sub-word sums pool onto the graph nodes
                end = np.where(seen, e.end, e.start)  # sub-words no window covered cannot align
                groups = align_nodes(self.docs["node_start"][d], self.docs["node_end"][d], e.start, end)
            denom = np.maximum(acc["count"], 1)[:, None]
            self.task.finish_teacher_row(row, [self.acc[(d, s)] for s in range(len(self.sides))], groups, denom,
                                         self.cfg)
            if "tok_states" in acc:
                st, aligned = pool_nodes(acc["tok_states"] / denom, groups, self.cfg.alignment)
                row["node_states"] = (st @ self.proj).astype(np.float16).reshape(-1)
                row["node_aligned"] = aligned
            rows.append(row)
        return rows


def process(batches: Iterable[dict[str, list]], forward: Callable, tcfg: TeacherConfig, task: Task, windower: Windower,
            projection: np.ndarray | None, teacher: str, sync: Callable[[bool], bool] | None = None
            ) -> Iterator[list[dict[str, Any]]]:
    """Run the teacher over document batches; yields finished rows per document batch.

    ``sync(has_work) -> any_has_work`` keeps ZeRO-3 workers in lock step: when this worker has no
    work left but another has, it runs a dummy forward (the collective parameter gathers need it).
    """
    def work() -> Iterator[tuple[DocBatch, list]]:
        for docs in batches:
            db = DocBatch(docs, tcfg, task, windower, projection, teacher)
            if not db.jobs:
                yield db, []
            for mb in db.micro_batches(tcfg.eval_batch_size):
                yield db, mb

    it = work()
    dummy = [windower.wrap(np.array(windower.tok("a", add_special_tokens=False)["input_ids"]))]
    while True:
        item = next(it, None)
        if sync is not None and not sync(item is not None):
            return
        if item is None:
            if sync is None:
                return
            forward(dummy)
            continue
        db, mb = item
        if mb:
            db.apply(mb, forward(db.rows_for(mb)))
        if db.pending == 0:
            yield db.finish()
