"""`tgd adapt`: domain distillation and incremental training of a finished run's student.

A student trained on one corpus meets a new domain. Retraining from scratch repeats every stage; here
only the new texts are parsed and labelled:

1. the domain texts (``pipeline.domain_texts``: checked, rejects kept) become graphs with the run's
   graph builder, plus the declared graph rules (``adapt.rules``) over the domain terms when terms
   are given (``tgd terms``);
2. the run's teacher labels them (``trainers.teacher.outputs.label_in_process``: the stage's own
   inference path, label order and state projection);
3. domain words the student never saw get embedding rows in its trained space
   (``trainers.student.vocabulary.unseen_word_vectors``) instead of sharing ``<unk>``;
4. the student continues from its trained weights (``fit``, the distill stage's loop) on the domain
   texts with KD and the bridge (no gold labels: there are none), mixed with a replay sample of the
   run's labelled training documents (gold + teacher, with the same rules) so the old domain is not
   forgotten. The epoch kept is the best on a validation set of both: the run's validation split
   (gold labels) and held-out domain texts scored by agreement with the teacher (the only signal
   without domain labels).

Everything lands in ``RUN_DIR/adapt/<domain fingerprint>/`` (rejects, teacher outputs, the adapted
``student.pt``, ``adapt.json``); `tgd adapt` then exports it as a package whose ``package.json``
records the lineage. The graph config of that package carries the rules and terms, so prediction
builds the same graphs.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pipeline.domain_texts import DomainTexts
from pipeline.graph_builder import GraphBuilder
from pipeline.graph_rules import apply_rules
from pipeline.splits import hash_split
from tgd.config import RunConfig
from tgd.errors import StageError
from tgd.schema import GRAPHS, TEACHER, read_manifest, read_table, stage_dir, write_table
from trainers.distill.data import GRAPH_FIELDS, decode_teacher_table, encode_row, labels_of, teacher_view
from trainers.distill.fit import FitContext, fit
from trainers.distill.spec import FitSpec
from trainers.student.checkpoint import build_student, load_student, save_student, student_config
from trainers.student.features import GraphEncoding
from trainers.student.predict import metrics, predict
from trainers.student.vocabulary import grow_state
from trainers.tasks import get_task
from trainers.teacher.model import teacher_model_dir
from trainers.teacher.outputs import label_in_process


@dataclass
class Adapted:
    config: RunConfig  # the run's config with the graph rules and terms the adapted student reads
    work: Path  # rejects, adapt.json, the adapted student
    student_path: Path
    report: dict[str, Any]


def adapted_config(cfg: RunConfig, terms: list[str]) -> RunConfig:
    """The run's config with ``adapt.rules`` over ``terms`` in its graph section (validated like any
    config: a rule the task cannot take is refused here), or the run's own without terms."""
    if not terms or not cfg.adapt.rules:
        return cfg
    return cfg.with_changes({"graph.rules": [r.model_dump(mode="json") for r in cfg.adapt.rules],
                             "graph.terms": list(terms)})


def _domain_outputs(cfg: RunConfig, domain: DomainTexts, graphs: list[dict], cache: Path, log) -> Any:
    """The teacher's rows for the domain documents, kept in ``cache`` per graph settings (a re-run on the
    same texts, teacher and graphs reads them back instead of labelling again)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"teacher-{cfg.section_hash('graph')}.parquet"
    key = {"domain": domain.fingerprint, "teacher": read_manifest(cfg, "teacher-logits")["teacher_id"]}
    stamp = path.with_suffix(".json")
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key:
        log(f"[adapt] teacher outputs of the domain texts already in {path}")
        return read_table(path, TEACHER)
    table = label_in_process(cfg, domain.docs, graphs, log)
    write_table(table, path, TEACHER)
    stamp.write_text(json.dumps(key))
    return table


def _grow(state: dict[str, torch.Tensor], enc: GraphEncoding, trained_words: int, graphs: list[dict],
          min_count: int, model_dir: Path, log) -> tuple[GraphEncoding, dict[str, torch.Tensor], list[str]]:
    """The encoding with the domain words the student lacks (seen ``min_count`` times) appended, and
    the student's weights with an embedding row for each, mapped from the teacher's vectors by a fit
    on the student's first ``trained_words`` rows (those training shaped, not earlier mapped rows)."""
    counts = Counter(w for g in graphs for w in g["lower"])
    known = set(enc.vocab)
    new = [w for w, c in counts.most_common() if c >= min_count and w not in known]
    if not new:
        return enc, state, []
    grown = grow_state(state, enc.vocab, new, str(model_dir), fit_rows=trained_words)
    log(f"[adapt] {len(new):,} domain words new to the student (seen >= {min_count} times) get vectors mapped "
        f"from the teacher's: {', '.join(new[:8])}{' ...' if len(new) > 8 else ''}")
    return replace(enc, vocab=[*enc.vocab, *new]), grown, new


def _run_documents(cfg: RunConfig, splits: tuple[str, ...]) -> list[dict]:
    """The run's graph rows of ``splits`` (id, split, label, tags, score, graph, graph_b)."""
    table = read_table(stage_dir(cfg, "graphs"), GRAPHS)
    table = table.filter(pc.is_in(table.column("split"), value_set=pa.array(list(splits))))
    return table.select(["id", "split", "label", "tags", "score", "graph", "graph_b"]).to_pylist()


def _with_rules(row: dict, graph_cfg) -> dict:
    """A stored graph row rebuilt as the adapted graph builder would build it: the rules applied."""
    if not graph_cfg.rules:
        return row
    return {**row, **{side: apply_rules(row[side], graph_cfg.rules, graph_cfg.terms)
                      for side in ("graph", "graph_b") if row.get(side)}}


def _replay_and_validation(cfg: RunConfig, acfg: RunConfig, n_domain: int, encode) -> tuple[list, list]:
    """A seeded sample of ``adapt.replay`` x ``n_domain`` of the run's labelled training documents and
    its whole validation split, encoded with their gold labels and teacher outputs, as the adapted
    graph builder would build them (``acfg``'s rules)."""
    task = get_task(cfg.data.task)
    old_trows, _ = teacher_view(cfg, labels_of(cfg), task)
    run_rows = _run_documents(cfg, ("train", "validation"))
    train = [r for r in run_rows if r["split"] == "train"]
    k = min(len(train), int(round(cfg.adapt.replay * n_domain)))
    picked = np.sort(np.random.default_rng(cfg.adapt.seed).choice(len(train), k, replace=False))

    def one(r):
        return encode(_with_rules(r, acfg.graph), r["label"], r["tags"], old_trows[r["id"]])

    return [one(train[i]) for i in picked], [one(r) for r in run_rows if r["split"] == "validation"]


def _scores(student, old_val: list, dom_val: list, enc: GraphEncoding, task: str) -> dict[str, float | None]:
    """The headline metric on the run's validation split and the agreement with the teacher on the
    held-out domain texts."""
    return {"old_validation": _score(student, old_val, enc, task),
            "domain_agreement": _score(student, dom_val, enc, task) if dom_val else None}


def _score(student, datas: list, enc: GraphEncoding, task: str) -> float:
    pred, gold, teach = predict(student, datas)
    return metrics(pred, gold, teach, enc.labels, True, task, [d.num_nodes for d in datas])[
        get_task(task).headline(enc.labels)]


def adapt(cfg: RunConfig, domain: DomainTexts, terms: Sequence[str] = (), log=print) -> Adapted:
    """Adapt the run's student to ``domain`` (module docstring); writes into
    ``RUN_DIR/adapt/<domain fingerprint>/<hash of the graph and adapt settings>/``."""
    t0 = time.time()
    a, task = cfg.adapt, get_task(cfg.data.task)
    ckpt = stage_dir(cfg, "distill") / "student.pt"
    if not ckpt.is_file() or read_manifest(cfg, "teacher-logits") is None:
        raise StageError(f"no trained student at {ckpt}: `tgd adapt` continues a finished run; run `tgd run CONFIG` "
                         "first")
    acfg = adapted_config(cfg, list(terms))
    work = stage_dir(cfg, "adapt") / domain.fingerprint / acfg.section_hash("graph", "adapt")
    work.mkdir(parents=True, exist_ok=True)
    domain.write_rejects(work / "rejects.parquet")
    student, enc, blob = load_student(ckpt)
    labels = labels_of(cfg)

    t = time.time()
    rows = [{"text": d["text"], "tokens": d.get("tokens"), "text_b": d.get("text_b")} for d in domain.docs]
    built = task.build_inputs(GraphBuilder(acfg.graph), rows)
    parse_s = time.time() - t
    log(f"[adapt] {len(built):,} domain texts parsed in {parse_s:.0f}s"
        + (f" with rules {[r.rule for r in acfg.graph.rules]} over {len(acfg.graph.terms)} terms"
           if acfg.graph.rules else ""))
    t = time.time()
    m = read_manifest(cfg, "teacher-logits")
    trows = decode_teacher_table(_domain_outputs(acfg, domain, [b["graph"] for b in built], work.parent, log),
                                 list(m["labels"]), labels, task)
    teacher_s = time.time() - t
    state_dim = int(m.get("state_dim") or 0)

    held = [hash_split(d["id"], (1 - a.holdout, a.holdout, 0.0), f"adapt{a.seed}") == "validation"
            for d in domain.docs]
    trained_words = blob["extra"].get("training_vocabulary") or len(enc.vocab)
    enc2, state, new_words = _grow(student.state_dict(), enc, trained_words,
                                   [b["graph"] for b, h in zip(built, held) if not h], a.new_word_min_count,
                                   teacher_model_dir(cfg), log)

    def encode(grow: dict, label, tags, trow):
        row = {side: grow.get(side) and {k: grow[side][k] for k in GRAPH_FIELDS} for side in ("graph", "graph_b")}
        return encode_row(enc2, {**row, "score": grow.get("score")}, label, tags, trow, state_dim, task)

    dom_train, dom_val = [], []
    for doc, grow, h in zip(domain.docs, built, held):
        d = encode(grow, None, None, trows[doc["id"]])
        if h:
            task.teacher_as_gold(d)
        (dom_val if h else dom_train).append(d)
    replay, old_val = _replay_and_validation(cfg, acfg, len(dom_train), encode)

    scfg = student_config(blob)
    start = build_student(enc2, scfg, task.name)
    start.load_state_dict(state)
    before = _scores(start.eval(), old_val, dom_val, enc2, task.name)
    dcfg = cfg.distill.model_copy(update={"epochs_align": 0, "epochs_fusion": a.epochs, "epochs_adaptive": 0,
                                          "lr": a.lr, "curriculum": False, "seed": a.seed})
    spec = FitSpec(task=task.name, distill=dcfg, student=scfg, encoding=replace(enc2, edges=scfg.edges),
                   has_teacher=True, teacher_gate=False, state_dim=state_dim,
                   batch_size=dcfg.batch_size * cfg.ray.num_workers, init_state=state)
    train = dom_train + replay
    log(f"[adapt] training from the run's student: {len(dom_train):,} domain texts (teacher only) + {len(replay):,} "
        f"replayed training documents, {a.epochs} epochs; validation: {len(old_val):,} run documents + "
        f"{len(dom_val):,} held-out domain texts")
    t = time.time()
    result = fit(spec, train, np.zeros(len(train)), old_val + dom_val, FitContext(log=log))
    fit_s = time.time() - t
    best = result["best"]
    adapted = build_student(enc2, scfg, task.name)
    adapted.load_state_dict(best["state"])
    after = _scores(adapted.eval(), old_val, dom_val, enc2, task.name)
    log(f"[adapt] validation before -> after: run documents {before['old_validation']:.4f} -> "
        f"{after['old_validation']:.4f}" + (f", agreement with the teacher on held-out domain texts "
                                            f"{before['domain_agreement']:.4f} -> {after['domain_agreement']:.4f}"
                                            if dom_val else ""))
    out = work / "student.pt"
    save_student(out, best["state"], spec.encoding, scfg, task.name,
                 {"best_epoch": best["epoch"], "val_accuracy": best["accuracy"], "adapted": True,
                  "training_vocabulary": trained_words})
    report = {
        "domain": domain.summary(), "terms": len(acfg.graph.terms),
        "rules": [r.model_dump(mode="json") for r in acfg.graph.rules],
        "new_words": len(new_words), "domain_train": len(dom_train), "domain_holdout": len(dom_val),
        "replay": len(replay), "epochs": a.epochs, "best_epoch": best["epoch"], "val": best["accuracy"],
        "validation_before": before, "validation_after": after,
        "history": result["history"],
        "seconds": {"parse": round(parse_s, 1), "teacher": round(teacher_s, 1), "train": round(fit_s, 1),
                    "total": round(time.time() - t0, 1)},
        "lineage": {"run_dir": str(cfg.run_dir), "student_sha256": _sha256(ckpt),
                    "teacher_id": m["teacher_id"], "domain_fingerprint": domain.fingerprint,
                    "domain_source": domain.source, "terms": list(acfg.graph.terms),
                    "rules": [r.model_dump(mode="json") for r in acfg.graph.rules]},
    }
    (work / "adapt.json").write_text(json.dumps(report, indent=2, default=str))
    return Adapted(acfg, work, out, report)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
