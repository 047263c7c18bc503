"""Words a trained student never saw, chosen on validation (``student.unseen_words``).

Before a distilled student is saved, the teacher's whole words it lacks can get rows mapped into its
trained space (``trainers.student.vocabulary.with_teacher_vocabulary``). Whether that helps depends
on the task and corpus: a word's POS is in what the teacher's static vectors say about it, a
review's sentiment can ride on a rare word whose mapped vector points the wrong way where ``<unk>``
stayed neutral. So with ``auto`` the run scores the student on its validation split both ways (the
validation graphs encoded with each vocabulary) and keeps the teacher's rows only if they score at
least as well; ``teacher_vocabulary`` and ``unk`` force one.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyarrow.compute as pc
import torch

from tgd.schema import GRAPHS, read_table, stage_dir
from trainers.distill.data import GRAPH_FIELDS, encode_row
from trainers.student.checkpoint import build_student
from trainers.student.features import GraphEncoding
from trainers.student.predict import metrics, predict
from trainers.student.vocabulary import with_teacher_vocabulary
from trainers.tasks import get_task
from trainers.teacher.model import teacher_model_dir


def _validation_score(cfg, enc: GraphEncoding, state: dict[str, torch.Tensor], rows: list[dict]) -> float:
    task = get_task(cfg.data.task)
    student = build_student(enc, cfg.student, task.name)
    student.load_state_dict(state)
    datas = [encode_row(enc, {"score": r["score"], **{side: r[side] and {k: r[side][k] for k in GRAPH_FIELDS}
                                                       for side in ("graph", "graph_b")}},
                        r["label"], r["tags"], None, 0, task) for r in rows]
    pred, gold, teach = predict(student.eval(), datas)
    return metrics(pred, gold, teach, enc.labels, False, task.name, [d.num_nodes for d in datas])[
        task.headline(enc.labels)]


def choose(cfg, enc: GraphEncoding, state: dict[str, torch.Tensor], log=print
           ) -> tuple[GraphEncoding, dict[str, torch.Tensor], dict[str, Any]]:
    """The encoding and weights to save for a distilled student, and what was chosen (and the two
    validation scores under ``auto``)."""
    mode = cfg.student.unseen_words
    if mode == "unk":
        return enc, state, {"unseen_words": "unk"}
    vocab, grown = with_teacher_vocabulary(enc.vocab, state, str(teacher_model_dir(cfg)))
    grown_enc = replace(enc, vocab=vocab)
    info: dict[str, Any] = {"unseen_words": "teacher_vocabulary", "teacher_words": len(vocab) - len(enc.vocab)}
    if mode == "teacher_vocabulary":
        return grown_enc, grown, info
    table = read_table(stage_dir(cfg, "graphs"), GRAPHS)
    rows = table.filter(pc.equal(table.column("split"), "validation")).select(
        ["label", "tags", "score", "graph", "graph_b"]).to_pylist()
    if not rows:
        return enc, state, {"unseen_words": "unk", "reason": "no validation documents to choose on"}
    unk, teacher = _validation_score(cfg, enc, state, rows), _validation_score(cfg, grown_enc, grown, rows)
    keep = teacher >= unk
    log(f"[distill] words unseen in training: <unk> {unk:.4f}, the teacher's {info['teacher_words']:,} whole words "
        f"mapped {teacher:.4f} on validation -> {'teacher_vocabulary' if keep else 'unk'} (student.unseen_words=auto)")
    chosen = {**info, "unseen_words": "teacher_vocabulary" if keep else "unk",
              "validation": {"unk": unk, "teacher_vocabulary": teacher}}
    return (grown_enc, grown, chosen) if keep else (enc, state, chosen)
