"""Declared stages and the make-style runner that skips finished work.

A stage is up to date when its ``manifest.json`` records the current schema version, the hash of
the config sections it reads and the fingerprints of its inputs (the manifests of the stages it
depends on, or the source files for ingest). ``ensure`` runs missing or stale dependencies first.
A stage interrupted midway leaves an ``_attempt.json``; a re-run with the same fingerprint keeps
the partial output so the stage can resume, a different fingerprint wipes it.

Resources (``ray.*``, ``ray.stages``) are not hashed: they decide where and how fast a stage runs,
so changing them never makes a finished stage stale (``--force`` re-runs one). Each stage runs with
``cfg.for_stage(name)``: ``cfg.ray`` inside it holds that stage's own workers, CPUs and GPU flag.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from tgd.config import RunConfig
from tgd.schema import SCHEMA_VERSION, read_manifest, stage_dir


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    deps: tuple[str, ...]
    sections: tuple[str, ...]  # config sections whose values decide the output
    run: Callable[[RunConfig, Path], dict[str, Any]]  # (config, output dir) -> manifest counts/extras
    needs_ray: bool = False
    source_fingerprint: Callable[[RunConfig], Any] | None = None  # inputs from outside the run dir
    uses_teacher: bool = False  # loads teacher.model (checked up front by preflight)
    # an interrupted attempt resumes only on the same workers / CPUs / GPUs (checkpoints shaped by them)
    resume_needs_same_resources: bool = False
    ignores: tuple[str, ...] = ()  # dotted keys of its sections that only later stages read


def _registry() -> dict[str, Stage]:
    # Imported here so `tgd --help` and config validation stay fast.
    from pipeline import graphs, ingest, transfer
    from trainers.teacher import crossfit as teacher_folds
    from trainers.teacher import finetune as teacher_finetune
    from trainers.teacher import outputs as teacher_logits

    stages = [
        Stage("ingest", "read + validate the corpus; accepted rows in shards, refused rows in rejects.parquet",
              (), ("data",), ingest.run, source_fingerprint=ingest.source_fingerprint),
        Stage("graphs", "spaCy parse + text graphs per document on a Ray Data actor pool; training vocabulary",
              ("ingest",), ("graph",), graphs.run, needs_ray=True),
        Stage("transfer", "transfer set: augmented copies of the training graphs (mask, POS-guided replacement, "
              "n-gram windows) for the teacher to label", ("graphs",), ("transfer",), transfer.run),
        Stage("teacher-finetune",
              "fine-tune the teacher (DeepSpeed ZeRO on Ray Train); best checkpoint as a HF directory",
              ("ingest",), ("teacher",), teacher_finetune.run, needs_ray=True,
              source_fingerprint=teacher_finetune.source_fingerprint, uses_teacher=True,
              resume_needs_same_resources=True,  # DeepSpeed's per-rank checkpoint is cut for its world size
              ignores=("teacher.folds",)),
        Stage("teacher-folds", "fold teachers (teacher.folds > 1): the chosen recipe fine-tuned on all training folds "
              "but one, for cross-fitted teacher outputs on the training documents",
              ("teacher-finetune",), ("teacher",), teacher_folds.run, needs_ray=True, uses_teacher=True,
              resume_needs_same_resources=True),
        Stage("teacher-logits", "precompute teacher outputs per document, ZeRO-3 sharded across Ray Train workers",
              ("teacher-folds", "graphs", "transfer"), ("teacher",), teacher_logits.run, needs_ray=True,
              uses_teacher=True),
        Stage("distill", "train the GNN student on Ray Train (DDP) with the three-stage curriculum and graph sampling",
              ("graphs", "teacher-logits"), ("student", "distill"), _distill, needs_ray=True, uses_teacher=True),
        Stage("evaluate", "test-split table: teacher, distilled, GNN without teacher, bag-of-words, ablations; plots",
              ("distill",), ("student", "distill", "evaluate"), _evaluate, needs_ray=True, uses_teacher=True),
        Stage("tune", "search student + distillation settings on validation (Ray Tune, ASHA); writes the best as "
              "a run config, tune/best.yaml (not part of `tgd run`)",
              ("graphs", "teacher-logits"), ("student", "distill", "tune"), _tune, needs_ray=True, uses_teacher=True),
    ]
    return {s.name: s for s in stages}


def _tune(cfg: RunConfig, out: Path) -> dict[str, Any]:
    from trainers.distill import tune

    return tune.run(cfg, out)


def _distill(cfg: RunConfig, out: Path) -> dict[str, Any]:
    from trainers.distill import loop as distill

    return distill.run(cfg, out)


def _evaluate(cfg: RunConfig, out: Path) -> dict[str, Any]:
    from serving.predictor import Predictor
    from trainers.evaluate import report as evaluate

    return evaluate.run(cfg, out, Predictor)


STAGE_NAMES = ("ingest", "graphs", "transfer", "teacher-finetune", "teacher-folds", "teacher-logits", "distill",
               "evaluate")
COMMANDS = (*STAGE_NAMES, "tune")  # stages with a subcommand; `tgd run` runs STAGE_NAMES


def get_stage(name: str) -> Stage:
    return _registry()[name]


def _wanted(cfg: RunConfig, stage: Stage) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for dep in stage.deps:
        m = read_manifest(cfg, dep)
        inputs[dep] = m["fingerprint"] if m else None
    if stage.source_fingerprint is not None:
        inputs["source"] = stage.source_fingerprint(cfg)
    return {"schema_version": SCHEMA_VERSION, "config_hash": cfg.section_hash(*stage.sections, ignore=stage.ignores),
            "inputs": inputs}


def _matches(record: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    """``record`` (a manifest or an attempt) was made for ``want``."""
    return record is not None and all(record.get(k) == v for k, v in want.items())


def is_up_to_date(cfg: RunConfig, name: str) -> bool:
    stage = get_stage(name)
    return _matches(read_manifest(cfg, name), _wanted(cfg, stage))


def closure(targets: tuple[str, ...] | list[str]) -> list[str]:
    """``targets`` and everything they depend on, dependencies first."""
    seen: list[str] = []

    def visit(name: str) -> None:
        for dep in get_stage(name).deps:
            visit(dep)
        if name not in seen:
            seen.append(name)

    for t in targets:
        visit(t)
    return seen


def preflight(cfg: RunConfig, targets: tuple[str, ...] | list[str] = STAGE_NAMES, writable: bool = True) -> None:
    """Up-front checks before any of ``targets`` (or their dependencies) runs, or before ``tgd status``
    fingerprints the teacher: run_dir writable (unless ``writable`` is false), teacher.model a
    complete checkpoint when one of the stages loads it. Raises ConfigError naming the key; loads no model."""
    from tgd.config import check_run_dir, check_teacher

    if writable:
        check_run_dir(cfg)
    if any(get_stage(n).uses_teacher for n in closure(targets)):
        check_teacher(cfg)


def ensure(cfg: RunConfig, name: str, force: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Bring ``name`` and its dependencies up to date; return its manifest."""
    stage = get_stage(name)
    for dep in stage.deps:
        ensure(cfg, dep, log=log)
    want = _wanted(cfg, stage)
    manifest = read_manifest(cfg, name)
    if not force and _matches(manifest, want):
        log(f"[{name}] up to date, skipping ({stage_dir(cfg, name)})")
        return manifest

    out = stage_dir(cfg, name)
    attempt = out / "_attempt.json"
    # Resources are not in the fingerprint, but a partial attempt of a stage whose checkpoints depend on
    # them resumes only on the same ones (another worker count starts that stage over).
    tried = {**want, "resources": asdict(cfg.resources(name))} if stage.resume_needs_same_resources else want
    resumable = attempt.is_file() and _matches(json.loads(attempt.read_text()), tried) and not force
    if out.exists() and not resumable:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    attempt.write_text(json.dumps(tried, indent=2))
    if stage.needs_ray:
        from cluster.ray_session import ensure_ray

        ensure_ray(cfg.ray)
    log(f"[{name}] running{' (resuming)' if resumable else ''} -> {out}")
    t0 = time.time()
    result = stage.run(cfg.for_stage(name), out)
    manifest = {"stage": name, **want, **result, "seconds": round(time.time() - t0, 2),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode())
    manifest["fingerprint"] = digest.hexdigest()[:16]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    attempt.unlink()
    log(f"[{name}] done in {manifest['seconds']:.1f}s: " + ", ".join(
        f"{k}={v}" for k, v in result.items() if k.endswith("_rows")))
    return manifest
