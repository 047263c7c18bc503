"""What one student's training needs, typed and frozen: built once by the driver from the run
config and the prepared graphs, handed as it is to every Ray Train worker, evaluate's row tasks and
tune's trials (Ray pickles it), and read by ``fit``."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from tgd.config import DistillConfig, RunConfig, StudentConfig
from tgd.schema import TRANSFER_SPLIT
from trainers.distill.data import Prepared, subsample, without_gold
from trainers.distill.teacher_gate import ensure_teacher_check, gate_active
from trainers.student.features import GraphEncoding
from trainers.student.heads import HEADS
from trainers.student.vocabulary import static_word_vectors, teacher_word_vectors
from trainers.tasks import get_task
from trainers.teacher.model import teacher_model_dir


@dataclass(frozen=True)
class FitSpec:
    """One student's training: settings, encoding and what the teacher provides.

    ``batch_size`` is per worker (the distill stage's ``distill.batch_size``; a single process gets
    the stage's global batch, so it takes the same optimizer steps). ``state_dim`` 0: no teacher
    node states. ``teacher_gate``: KD only where the teacher predicts the gold label.
    ``init_embeddings``: initial word embeddings (vocabulary x hidden) or None (random);
    ``static_vectors``: the static path's frozen table (vocabulary x hidden) where the student has one;
    ``init_state``: the whole student's weights to start from instead (incremental training)."""
    task: str
    distill: DistillConfig
    student: StudentConfig
    encoding: GraphEncoding
    has_teacher: bool
    teacher_gate: bool
    state_dim: int
    batch_size: int
    init_embeddings: np.ndarray | None = None
    static_vectors: np.ndarray | None = None
    init_state: dict | None = None  # a trained student's weights to continue from (`tgd adapt`)
    tb_dir: str | None = None  # TensorBoard logs (rank 0)
    resume_dir: str | None = None  # a checkpoint directory to continue from (an interrupted run)
    verbose: bool = True  # one log line per epoch

    @property
    def headline(self) -> str:
        """The metric that picks the best epoch (the task's, for these labels)."""
        return get_task(self.task).headline(self.encoding.labels)

    def with_resume(self, resume_dir: Path | None) -> "FitSpec":
        return replace(self, resume_dir=str(resume_dir) if resume_dir is not None else None)


def build_spec(cfg: RunConfig, prepared: Prepared, use_teacher: bool, out_dir: Path,
               workers: int = 1) -> tuple[FitSpec, pa.Table]:
    """The spec of one student (distilled or plain, per ``use_teacher``) and its training rows.

    ``workers``: the DDP workers it trains on; fewer than the stage's ``ray.num_workers`` (a single
    process) scales the batch up to the stage's global batch."""
    dcfg = cfg.distill
    train_tbl, unlabelled = subsample(prepared.splits["train"], dcfg.train_fraction, dcfg.seed)
    transfer = prepared.splits.get(TRANSFER_SPLIT)
    has_teacher = use_teacher and prepared.has_teacher
    if has_teacher:
        ensure_teacher_check(prepared, cfg)
    gate = has_teacher and gate_active(dcfg.teacher_gate, prepared.teacher_check)
    if has_teacher and not gate:
        # KD + bridge only (gold -1): the transfer set, and in a small-data run the training documents
        # beyond its labelled fraction, which the teacher labels as it labels the copies. Sorted by id,
        # each copy follows its original, so every worker's contiguous Ray Data shard mixes labelled
        # documents and teacher-only ones.
        extra = [without_gold(unlabelled, get_task(prepared.task))] if unlabelled.num_rows else []
        if dcfg.use_transfer and transfer is not None and transfer.num_rows:
            extra.append(transfer)
        if extra:
            train_tbl = pa.concat_tables([train_tbl, *extra]).sort_by("id")
    init = None
    if cfg.student.init_from_teacher:
        init = teacher_word_vectors(prepared.enc.vocab, str(teacher_model_dir(cfg)), cfg.student.hidden,
                                    cfg.student.init_vectors, dcfg.seed).numpy()
    static = None
    if cfg.student.static_path and HEADS[get_task(prepared.task).head].static_path:
        static = static_word_vectors(prepared.enc.vocab, prepared.word_counts, str(teacher_model_dir(cfg)),
                                     cfg.student.hidden, dcfg.seed).numpy()
    spec = FitSpec(
        task=prepared.task, distill=dcfg, student=cfg.student,
        encoding=replace(prepared.enc, edges=cfg.student.edges),  # prepared graphs carry every edge kind
        has_teacher=has_teacher, teacher_gate=gate, state_dim=prepared.state_dim if use_teacher else 0,
        batch_size=dcfg.batch_size * cfg.ray.num_workers // workers, init_embeddings=init, static_vectors=static,
        tb_dir=str(out_dir / "tensorboard"))
    return spec, train_tbl
