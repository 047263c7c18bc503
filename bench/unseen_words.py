"""Words the student never saw, at prediction time: ``<unk>`` (today) against vectors mapped from the
teacher's (``trainers.student.vocabulary.unseen_word_vectors``), side by side on one trained run (not a
test).

Three encodings of the same trained student, scored on the same graphs:
(a) ``unk``: its training vocabulary (a student saved with ``student.unseen_words: teacher_vocabulary``
    is cut back to it); every other word shares ``<unk>``;
(b) ``teacher_vocabulary``: plus every whole word of the teacher's tokenizer vocabulary, each with the
    vector the ridge map from the teacher's static vectors to the student's trained word vectors gives
    it: a static table a package could carry;
(c) ``input_words``: plus every word of the scored inputs: what a fallback computing the vector of each
    unseen input word on the fly would give (the upper bound of (b)).
Scored on the run's test split and, with ``--extra FILE`` (JSONL rows with the task's fields and gold:
``tokens`` + ``tags``, or ``text`` + ``label``), on other texts (a new domain, where more words are
new). Paired cluster-bootstrap intervals of (b) - (a) and (c) - (a) over documents. Last line: JSON.

    .venv/bin/python bench/unseen_words.py --config runs/ds-base.yaml --extra runs/domain-shift/domain_test.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.graph_builder import GraphBuilder  # noqa: E402
from tgd.config import load_config  # noqa: E402
from tgd.schema import GRAPHS, read_table, stage_dir  # noqa: E402
from trainers.distill.data import GRAPH_FIELDS, encode_row  # noqa: E402
from trainers.student.checkpoint import build_student, load_student, student_config  # noqa: E402
from trainers.student.predict import predict  # noqa: E402
from trainers.student.vocabulary import VOCAB_TABLES, grow_state, teacher_whole_words  # noqa: E402
from trainers.tasks import get_task  # noqa: E402
from trainers.teacher.model import teacher_model_dir  # noqa: E402


def per_doc(student, datas) -> tuple[np.ndarray, np.ndarray]:
    """(right, predictions) per document: node counts for node heads, 1 per graph otherwise."""
    pred, gold, _ = predict(student, datas)
    sizes = [int((d.node_y if hasattr(d, "node_y") else d.y).numel()) for d in datas]
    cuts = np.cumsum(sizes)[:-1]
    right = [(p == g)[g >= 0].sum() for p, g in zip(np.split(pred, cuts), np.split(gold, cuts))]
    n = [(g >= 0).sum() for g in np.split(gold, cuts)]
    return np.array(right), np.array(n)


def ci(a, b, resamples=2000, seed=0) -> list[float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a[1]), size=(resamples, len(a[1])))
    d = a[0][idx].sum(1) / a[1][idx].sum(1) - b[0][idx].sum(1) / b[1][idx].sum(1)
    return [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="a finished run's config")
    ap.add_argument("--extra", help="JSONL of other labelled texts to score too")
    args = ap.parse_args()
    cfg = load_config(args.config)
    task = get_task(cfg.data.task)
    if task.name == "pair":
        sys.exit("error: scored by accuracy per document: classification or token runs only")
    student, enc, blob = load_student(stage_dir(cfg, "distill") / "student.pt")
    scfg = student_config(blob)
    table = read_table(stage_dir(cfg, "graphs"), GRAPHS)
    test = table.filter(pc.equal(table.column("split"), "test")).to_pylist()
    sets = {"test": [(r["graph"], r["graph_b"], r["label"], r["tags"]) for r in test]}
    if args.extra:
        rows = [json.loads(line) for line in Path(args.extra).read_text().splitlines() if line.strip()]
        built = task.build_inputs(GraphBuilder(cfg.graph), rows)
        sets["extra"] = [(b["graph"], b.get("graph_b"), r.get("label"), r.get("tags")) for b, r in zip(built, rows)]
    # the training vocabulary (a student saved with student.unseen_words=teacher_vocabulary carries more)
    n = blob["extra"].get("training_vocabulary") or len(enc.vocab)
    enc = replace(enc, vocab=enc.vocab[:n])
    trained = {k: v[:n] if k in VOCAB_TABLES else v for k, v in student.state_dict().items()}
    known = set(enc.vocab)
    model_dir = str(teacher_model_dir(cfg))
    tok_vocab = [w for w in teacher_whole_words(model_dir) if w not in known]
    input_words = sorted({w for s in sets.values() for g, gb, _, _ in s for w in g["lower"] + (gb or {}).get(
        "lower", []) if w not in known})
    variants = {}
    for name, words in (("unk", []), ("teacher_vocabulary", tok_vocab), ("input_words", input_words)):
        enc2 = replace(enc, vocab=[*enc.vocab, *words])
        grown = build_student(enc2, scfg, blob["task"])
        grown.load_state_dict(grow_state(trained, enc.vocab, words, model_dir))
        variants[name] = (enc2, grown.eval())
    out = {"vocab": len(enc.vocab), "teacher_words_added": len(tok_vocab), "input_words_added": len(input_words)}
    for sname, items in sets.items():
        tokens = [w for g, gb, _, _ in items for w in g["lower"]]
        oov = sum(w not in known for w in tokens) / max(len(tokens), 1)
        scores = {}
        for vname, (e, m) in variants.items():
            datas = [encode_row(e, {"graph": {k: g[k] for k in GRAPH_FIELDS},
                                    "graph_b": gb and {k: gb[k] for k in GRAPH_FIELDS}}, label, tags, None, 0, task)
                     for g, gb, label, tags in items]
            scores[vname] = per_doc(m, datas)
        row = {"documents": len(items), "oov_rate": round(oov, 4)}
        for vname, s in scores.items():
            row[vname] = float(s[0].sum() / s[1].sum())
            if vname != "unk":
                row[f"{vname}_minus_unk_ci"] = ci(s, scores["unk"])
        out[sname] = row
        print(f"{sname}: {len(items)} documents, {100 * oov:.1f}% of words unseen; accuracy unk {row['unk']:.4f}, "
              f"teacher_vocabulary {row['teacher_vocabulary']:.4f} "
              f"[{100 * row['teacher_vocabulary_minus_unk_ci'][0]:+.2f}, "
              f"{100 * row['teacher_vocabulary_minus_unk_ci'][1]:+.2f}], input_words {row['input_words']:.4f} "
              f"[{100 * row['input_words_minus_unk_ci'][0]:+.2f}, {100 * row['input_words_minus_unk_ci'][1]:+.2f}]")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
