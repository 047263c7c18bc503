"""Stage ``teacher-folds``: fold teachers, so that the teacher outputs on the training documents are
cross-fitted (out of fold).

A teacher fine-tuned until validation stops improving has fit its own training documents far
better than any other document: its outputs on exactly the documents the student learns from are
near one-hot, and carry little of the teacher's judgement between the labels that distillation is
for. With ``teacher.folds`` K > 1 the training documents are cut into K folds by a hash of their id;
fold teacher k is fine-tuned with the recipe the search chose (its learning rate and schedule, up to
the step where the full teacher was best, keeping its best validation round) on the other K-1
folds, and labels the documents of fold k and their transfer copies in the teacher-logits stage.
Validation, test and unlabelled documents are labelled by the full teacher, the one evaluate
reports. K = 1: no fold teachers, the full teacher labels everything. A teacher the run does not
fine-tune (``teacher.finetune: false``, a zero-shot causal LM, the pair task's sentence encoder)
never saw the training documents: nothing to cross-fit.

Resuming: each finished fold teacher is its own directory ``folds/<k>/`` with a ``folds/<k>.json``
record; a re-run trains only the folds without one (an interrupted fold continues from its Ray
Train checkpoint, as fine-tuning does).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.transfer import source_id
from tgd.config import RunConfig
from tgd.schema import DOCUMENTS, read_manifest, stage_dir
from trainers.teacher.finetune import loop_config, train_call, training_rows
from trainers.teacher.model import resolve_model_path, teacher_model_dir

FOLDS_DIR = "folds"


def fold_of(doc_id: str, folds: int) -> int:
    """The fold of a document (a transfer copy: its original's), stable across runs and machines."""
    return int(hashlib.sha256(source_id(doc_id).encode()).hexdigest()[:8], 16) % folds


@dataclass(frozen=True)
class Labeller:
    """One teacher of the teacher-logits stage and the documents it labels."""
    name: str  # "full" or "fold<k>"
    model_path: Path
    teacher_id: str
    fold: int | None  # None: the full teacher (every document no fold teacher takes)


def labellers(cfg: RunConfig) -> list[Labeller]:
    """The teachers of the teacher-logits stage: the full teacher first, then the fold teachers."""
    full = read_manifest(cfg, "teacher-finetune")["teacher_id"]
    out = [Labeller("full", teacher_model_dir(cfg), full, None)]
    m = read_manifest(cfg, "teacher-folds") or {}
    for k, rel in enumerate(m.get("models", [])):
        out.append(Labeller(f"fold{k}", (stage_dir(cfg, "teacher-folds") / rel).resolve(), f"{full}~fold{k}", k))
    return out


def assign(cfg: RunConfig, ids: list[str], teachers: list[Labeller]) -> list[int]:
    """For each id, the index in ``teachers`` of the one that labels it: a training document (or a
    copy of one) goes to the teacher of its fold, every other document to the full teacher."""
    folds = {t.fold: i for i, t in enumerate(teachers) if t.fold is not None}
    if not folds:
        return [0] * len(ids)
    train = _training_ids(cfg)
    return [folds[fold_of(i, len(folds))] if source_id(i) in train else 0 for i in ids]


def _training_ids(cfg: RunConfig) -> set[str]:
    files = sorted((stage_dir(cfg, "ingest") / "documents").glob("part-*.parquet"))
    return {i for f in files
            for i in pq.read_table(f, schema=DOCUMENTS, columns=["id"], filters=[("split", "=", "train")])
            .column("id").to_pylist()}


def run(cfg: RunConfig, out_dir: Path) -> dict[str, Any]:
    import ray.data

    ft = read_manifest(cfg, "teacher-finetune")
    k = cfg.teacher.folds
    if k == 1 or not ft.get("model_path"):
        why = ("teacher.folds is 1" if k == 1 else
               f"the teacher is not fine-tuned in this run ({ft.get('skipped')}): it never saw the training documents")
        print(f"[teacher-folds] no fold teachers: {why}", flush=True)
        return {"input_rows": 0, "output_rows": 0, "folds": 1, "models": [], "skipped": why}
    recipe, labels = ft["recipe"], ft["labels"]
    base = resolve_model_path(cfg.teacher.model)
    train, val = training_rows(cfg, "train"), training_rows(cfg, "validation")
    fold = pa.array([fold_of(i, k) for i in train.column("id").to_pylist()], pa.int64())
    val_ds = ray.data.from_arrow(val)
    (out_dir / FOLDS_DIR).mkdir(exist_ok=True)
    records = []
    for f in range(k):
        done = out_dir / FOLDS_DIR / f"{f}.json"
        if done.is_file():
            records.append(json.loads(done.read_text()))
            print(f"[teacher-folds] fold {f}: done by an earlier attempt", flush=True)
            continue
        part = train.filter(pc.not_equal(fold, f))
        t0 = time.time()
        print(f"[teacher-folds] fold {f} of {k}: lr {recipe['lr']:g} on {part.num_rows} of {train.num_rows} training "
              f"documents, to step {ft['best_step']} of {recipe['steps']}", flush=True)
        config = loop_config(cfg, base, labels, part, val, recipe["steps"], recipe["round_steps"])
        rounds, _, _ = train_call(cfg, config, {"train": ray.data.from_arrow(part), "validation": val_ds},
                                  name=f"fold{f}", storage=out_dir / "_ray", lr=recipe["lr"], stop_at=ft["best_step"],
                                  patience=None, continue_from=None, best_dir=out_dir / FOLDS_DIR / str(f))
        best = max(rounds, key=lambda r: r["val_score"]) if rounds else None
        record = {"fold": f, "model_path": f"{FOLDS_DIR}/{f}", "train_documents": part.num_rows,
                  "labels_documents": train.num_rows - part.num_rows,
                  "best_step": best and best["step"], "best_val_score": best and best["val_score"],
                  "seconds": round(time.time() - t0, 1)}
        done.write_text(json.dumps(record))
        records.append(record)
    shutil.rmtree(out_dir / "_ray", ignore_errors=True)
    return {"input_rows": train.num_rows, "output_rows": k, "folds": k, "models": [r["model_path"] for r in records],
            "fold_teachers": records, "rule": "sha256(original document id) mod teacher.folds"}
