"""`tgd evaluate`: one comparison table on the test split, measured side by side in one process.

Rows: teacher (from its stored test logits; latency from the fine-tuned checkpoint), distilled
(the distill stage's student), gnn (same student, labels only), bow (TF-IDF MLP), the ablations of
``evaluate.ablations`` (each a retrained student), the small-data rows, ``fast_graph`` (a student
trained and served on ``graph.parser=fast`` graphs) and ``distilled_decomposed`` (the distilled
student predicting from sentence-window parts of at most ``distill.node_budget`` nodes) and, with
``evaluate.int8``, ``distilled_int8`` (the distilled student with dynamic int8 weights, as
`tgd export --quantize int8` ships it for TorchScript; quantised, not retrained) and, for
classification, the peers of ``evaluate.peers`` (``fasttext``: the cheap classifier a user would
deploy instead of the student, ``peers.py``; ``model2vec``, for pairs too: static vectors distilled
from the run's teacher, ``model2vec_peer.py``). ``size_mb``: the file a row deploys (a student's
checkpoint, the fastText model). The retrained students are independent, so they train side by
side as Ray tasks on one shared copy of the encoded graphs. Latency: single thread for every row,
per document at batch 1 and batch 64, model only (inputs prepared beforehand) and end to end from
the raw text (student: the serving Predictor, i.e. graph construction + encoding + model; teacher:
tokenisation + windows + model; bow: spaCy tokenizer + TF-IDF + model; fasttext: preprocessing +
predict). With the table, the cascade of the distill stage's student and the teacher (``cascade.py``:
accuracy and cost against the fraction deferred, the threshold chosen on validation) goes to
cascade.json. Writes metrics.json, metrics.md, cascade.json and PNG plots.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from tgd.errors import StageError
from tgd.schema import DOCUMENTS, read_manifest, read_table, stage_dir
from trainers.distill.data import prepare, unpack
from trainers.distill.loop import train_in_process
from trainers.distill.teacher_gate import ensure_teacher_check
from trainers.evaluate.baselines import gnn_baseline_config, train_baseline
from trainers.evaluate.cascade import cascade_report
from trainers.evaluate.cascade import markdown as cascade_markdown
from trainers.evaluate.cascade import plot as plot_cascade
from trainers.evaluate.latency import bow_latency, student_latency, teacher_latency
from trainers.evaluate.model2vec_peer import MODEL2VEC_TASKS, model2vec_row
from trainers.evaluate.pareto import COST, pareto_front, verdict
from trainers.evaluate.peers import PEER_TASKS, fasttext_row
from trainers.evaluate.statistics import (
    outcome,
    paired_bootstrap_ci,
    paired_bootstrap_rank_ci,
    seed_summary,
    spearman_rows,
)
from trainers.student.checkpoint import load_student
from trainers.student.model import count_params
from trainers.student.predict import metrics, predict
from trainers.student.quantize import quantize_int8
from trainers.tasks import get_task
from trainers.teacher.model import load_model, load_tokenizer, teacher_model_dir
from trainers.teacher.windows import Windower

ABLATIONS = {  # name -> (section, field, value)
    "no_bridge": ("distill", "bridge", False),
    "curriculum": ("distill", "curriculum", True),
    "no_adaptive_t": ("distill", "adaptive_temperature", False),
    "dependency_only": ("student", "edges", "dependency"),
    "cooccurrence_only": ("student", "edges", "cooccurrence"),
    "teacher_init": ("student", "init_from_teacher", True),
    "no_teacher_init": ("student", "init_from_teacher", False),
    "teacher_forward_init": ("student", "init_vectors", "teacher_forward"),
    "no_transfer": ("distill", "use_transfer", False),
}


# The teacher row times at most this many documents: its forward is an order of magnitude slower than
# the students', and the per-document figure is stable long before that.
TEACHER_LATENCY_DOCS = 64
SEEDED_ROWS = ("distilled", "gnn")  # trained evaluate.seeds times (bow too); the rest evaluate.ablation_seeds times


def _variant(cfg, section: str, **changes):
    """``cfg`` with ``section.key=value`` changes. A row trains one student, so its config lists no
    rows of its own (``evaluate.ablations`` empty)."""
    return cfg.with_changes({"evaluate.ablations": [], **{f"{section}.{k}": v for k, v in changes.items()}})


def row_configs(cfg) -> dict[str, list[Any]]:
    """name -> one config per seed of every retrained row: the distilled student's extra seeds (the
    distill stage trained ``distill.seed``), GNN without teacher, ablations, small data, fast graphs."""
    ev, gnn = cfg.evaluate, gnn_baseline_config(cfg)
    rows = {"distilled": [cfg], "gnn": [gnn]}
    for name in ev.ablations:
        if name == "small_data":
            rows["distilled_small"] = [_variant(cfg, "distill", train_fraction=ev.small_fraction)]
            rows["gnn_small"] = [_variant(gnn, "distill", train_fraction=ev.small_fraction)]
        elif name == "fast_graph":
            if cfg.graph.parser != "fast":  # else it is the distilled row itself
                rows[name] = [_variant(cfg, "graph", parser="fast")]
        else:
            section, field, value = ABLATIONS[name]
            rows[name] = [_variant(cfg, section, **{field: value})]
    seeded = {}
    for name, (base,) in rows.items():
        n = ev.seeds if name in SEEDED_ROWS else ev.ablation_seeds
        seeds = [cfg.distill.seed + k for k in range(n)]
        if name == "distilled":
            seeds = seeds[1:]
        seeded[name] = [_variant(base, "distill", seed=s) for s in seeds]
    return {name: cs for name, cs in seeded.items() if cs}


def graph_sets(cfg, rows: dict[str, Any], prepared, out_dir: Path, log=print) -> dict[str, Any]:
    """parser -> prepared graphs of every document: the graph stage's, plus graphs built with the
    other parser (by the graph stage's own code, into ``out_dir``) when a row needs them."""
    from pipeline import graphs

    sets = {cfg.graph.parser: prepared}
    for row in (c for cs in rows.values() for c in cs):
        parser = row.graph.parser
        if parser not in sets:
            gdir = out_dir / f"graphs-{parser}"
            gdir.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            graphs.run(row, gdir)
            log(f"[evaluate] {parser} graphs of every document built in {time.time() - t0:.1f}s")
            sets[parser] = prepare(row, use_teacher=True, edges="hybrid", graphs_dir=gdir)
    return sets


def _train_row(cfg, out_dir: Path, prepared) -> Path:
    train_in_process(cfg, out_dir, prepared)  # distill.threads_per_worker threads
    return out_dir / "student.pt"


def train_rows(rows: dict[str, Any], sets: dict[str, Any], models_dir: Path, log=print) -> dict[str, Path]:
    """Train every row's student side by side: one Ray task per row (``ray.cpus_per_worker`` CPUs
    each), reading its prepared graphs from the object store (put once, shared by the rows); Ray
    runs as many at once as the cluster has CPUs for. A row finished by an interrupted attempt of the
    stage is kept: the stage resumes only under the same config, and ``history.json`` is a row's
    last file, so it marks a finished one."""
    import ray

    done = {name: (models_dir / name).resolve() / "student.pt" for name in rows
            if (models_dir / name / "history.json").is_file()}
    if done:
        log(f"[evaluate] {len(done)} students kept from the interrupted attempt: {', '.join(done)}")
    todo = {name: c for name, c in rows.items() if name not in done}
    shared = {parser: ray.put(p) for parser, p in sets.items() if any(c.graph.parser == parser for c in todo.values())}
    t0 = time.time()
    if todo:
        log(f"[evaluate] training {len(todo)} students as parallel Ray tasks: {', '.join(todo)}")
    refs = {}
    for name, c in todo.items():
        task = ray.remote(num_cpus=c.ray.cpus_per_worker)(_train_row)
        refs[task.remote(c, (models_dir / name).resolve(), shared[c.graph.parser])] = name
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        name = refs[ready[0]]
        done[name] = ray.get(ready[0])
        log(f"[evaluate] row {name} trained ({len(done)}/{len(rows)}, {time.time() - t0:.0f}s)")
    return {name: done[name] for name in rows}


def teacher_rows(cfg, test: list, labels: list[str], texts: list[str], n_lat: int) -> dict[str, Any]:
    """Scores from the teacher's stored test outputs (decoded by the task onto each test graph);
    params and latency from the fine-tuned checkpoint."""
    task = get_task(cfg.data.task)
    gold, pred = (torch.cat(x).numpy() for x in zip(*(task.gold_and_teacher(d) for d in test)))
    row = {"model": "teacher", **metrics(pred, gold, pred, labels, False, task.name, [d.num_nodes for d in test]),
           "agreement": 1.0}

    path, t = teacher_model_dir(cfg), cfg.teacher
    tok, model = load_tokenizer(path), load_model(path, t.kind, task.teacher_head, labels).eval()
    row["params"] = count_params(model)
    win = Windower(tok, t.max_length, t.stride, t.max_windows)  # the windows the teacher stage uses
    return {**row, **teacher_latency(model, win, tok.pad_token_id, texts, n_lat)}


def plot_rows(rows: list[dict], path: Path, headline: str = "accuracy") -> None:
    """The headline metric vs end-to-end latency (what a deployment pays), the Pareto front as a line;
    each row its own marker in a legend (annotations overlapped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    pts = [r for r in rows if r.get(COST) and r.get("params")]
    markers = "osD^v<>pPX*h"
    for i, r in enumerate(pts):
        ax.errorbar(r[COST], r[headline], yerr=r.get(f"{headline}_std") or None,
                    fmt=markers[i % len(markers)],
                    ms=4 + 10 * (r["params"] / max(p["params"] for p in pts)) ** 0.5, alpha=0.75, capsize=2,
                    label=f"{r['model']} ({r['params'] / 1e6:.1f}M params, {r[headline]:.3f})")
    by_name = {r["model"]: r for r in pts}
    front = [by_name[n] for n in pareto_front(pts, headline)]
    if front:
        ax.step([r[COST] for r in front], [r[headline] for r in front], where="post", color="grey", lw=1,
                ls="--", label="Pareto front")
    ax.set_xscale("log"); ax.set_xlabel("end-to-end latency per document, batch 1 (ms, log; parse + model)")
    ax.set_ylabel(f"test {headline} (mean over seeds, bar: std)")
    ax.set_title(f"{headline} vs end-to-end latency (marker size ~ parameters)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


TASK_METRICS = ("token_accuracy", "entity_precision", "entity_recall", "entity_f1", "spearman", "pearson")


def distillation_check(val: dict[str, list[float]], headline: str = "accuracy") -> dict[str, Any] | None:
    """Did distilling beat training on labels alone, on validation (mean over seeds of each row's
    best validation score)? A teacher can be stronger than bag-of-words and still pull the student
    down when its KD weight is too high for the corpus: say so, and what to do."""
    if not val.get("distilled") or not val.get("gnn"):
        return None
    d, g = float(np.mean(val["distilled"])), float(np.mean(val["gnn"]))
    behind = d <= g
    if behind:
        msg = (f"on validation the GNN without teacher is level with or ahead of the distilled student "
               f"({headline} {g:.4f} "
               f"vs {d:.4f}): distillation does not help with these settings; search distill.alpha_kl (the KD "
               "weight) and the curriculum on validation with `tgd tune`, or deploy the GNN without teacher")
    else:
        msg = f"distilled ahead of the GNN without teacher on validation ({headline} {d:.4f} vs {g:.4f})"
    return {"distilled_val": d, "gnn_val": g, "behind": behind, "message": msg}


def recipe_line(recipe: dict) -> str:
    """The teacher's fine-tuning recipe and the search that chose it, in one paragraph."""
    chosen = next(c for c in recipe["candidates"] if c["lr"] == recipe["lr"])
    best = next(r for r in chosen["rounds"] if r["step"] == recipe["best_step"])
    text = (f"Teacher recipe: learning rate {recipe['lr']:g}, {recipe['steps']} optimizer steps per worker; best "
            f"validation score {best['val_score']:.4f} at step {best['step']} (epoch {best['epoch']:g})")
    if len(recipe["candidates"]) > 1:
        tried = ", ".join(f"{c['lr']:g}: {c['best_val_score']:.4f}"
                          + (f" (dropped at step {c['dropped_at']})" if c["dropped_at"] else " (chosen)")
                          for c in recipe["candidates"])
        text += (f". Chosen on validation by successive halving (rungs at steps "
                 f"{', '.join(map(str, recipe['rungs']))}): {tried}; the search trained {recipe['steps_trained']} "
                 f"steps per worker in {recipe['seconds']:.0f} s")
    return text + "."


def student_rate_line(lr_search: list[dict]) -> str:
    """The student's learning rate and the validation scores that chose it, in one line."""
    best = next(t for t in lr_search if t["chosen"])
    tried = ", ".join(f"{t['lr']:g}: {t['val_score']:.4f} (best epoch {t['best_epoch']}, {t['seconds']:.0f} s)"
                      for t in lr_search)
    return (f"Student learning rate: {best['lr']:g}"
            + (f", chosen on validation (distill.lr_factors): {tried}." if len(lr_search) > 1 else "."))


def static_path_line(gnn_share: float) -> str:
    """The distilled pair student's learned mix of its two similarities, in one line."""
    return (f"Static path (student.static_path): the distilled student's similarity is {gnn_share:.2f} x the GNN's "
            f"cosine + {1 - gnn_share:.2f} x the cosine of its static teacher vectors, a mix learned in training.")


def markdown(rows: list[dict], comparisons: list[dict] = (), teacher_check: dict | None = None,
             headline: str = "accuracy", distill_check: dict | None = None, teacher_recipe: dict | None = None,
             lr_search: list[dict] | None = None, static_mix: float | None = None) -> str:
    """The table (accuracy: mean over seeds ± std), the paired bootstrap intervals, the verdict, the
    teacher's recipe, the student's learning-rate choice and static-path mix, the teacher and
    distillation checks."""
    extra = [k for k in TASK_METRICS if k != headline and any(k in r for r in rows)]  # the task's own metrics
    cols = ["model", "graph", headline, "seeds", *extra, "macro_f1", "agreement", "params", "size_mb", "latency_ms_b1",
            "latency_ms_b64", "e2e_latency_ms_b1", "e2e_latency_ms_b64", "docs_per_s"]
    fmt = lambda v: ("" if v is None else f"{v:.4f}" if isinstance(v, float) and v < 10
                     else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))

    def cell(r, c):
        if c == headline and r.get("seeds", 1) > 1:
            return f"{r[c]:.4f} ± {r[f'{c}_std']:.4f}"
        return fmt(r.get(c))

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r, c) for c in cols) + " |" for r in rows]
    if comparisons:
        metric = "Spearman" if comparisons[0].get("metric") == "spearman" else "Accuracy"
        lines += ["", f"{metric} differences on the test split, paired bootstrap 95% interval over test documents "
                  "(each row averaged over its seeds; an interval above 0: better beyond test-set noise):", "",
                  "| comparison | difference | 95% interval |", "|---|---|---|"]
        lines += [f"| {c['row']} - {c['baseline']}"
                  f"{' (the student it was made from)' if c.get('baseline_first_seed') else ''} "
                  f"| {c['difference']:+.4f} | [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] |" for c in comparisons]
    lines += ["", verdict(rows, headline)]
    if teacher_recipe:
        lines += ["", recipe_line(teacher_recipe)]
    if lr_search:
        lines += ["", student_rate_line(lr_search)]
    if static_mix is not None:
        lines += ["", static_path_line(static_mix)]
    if teacher_check and teacher_check.get("weaker") is not None:
        warn = teacher_check["weaker"] or teacher_check.get("memorised")
        lines += ["", ("**WARNING** " if warn else "") + f"Teacher check: {teacher_check['message']}."]
    if distill_check:
        lines += ["", ("**WARNING** " if distill_check["behind"] else "")
                  + f"Distillation check: {distill_check['message']}."]
    return "\n".join(lines) + "\n"


def _gold(task, datas) -> np.ndarray:
    """Gold targets of a list of graphs, one per prediction row (-1: unlabelled)."""
    return torch.cat([task.gold_and_teacher(d)[0] for d in datas]).numpy() if datas else np.zeros(0, np.int64)


def _score(model, data, labels) -> tuple[dict[str, float], np.ndarray]:
    """Test metrics of one student and its per-row outcome (``outcome``)."""
    pred, gold, teach = predict(model, data)
    return (metrics(pred, gold, teach, labels, True, model.task, [d.num_nodes for d in data]),
            outcome(get_task(model.task), pred, gold))


def int8_row(model, data, labels, texts, enc, builder, predictor: Callable, latency_docs: int):
    """The ``distilled_int8`` row: ``model`` dynamically quantised to int8 (``quantize_int8``, the
    export's own), scored on the test graphs and timed like the float rows; -> (row, per-row
    outcome)."""
    q = quantize_int8(model)
    m, ok = _score(q, data, labels)
    row = {"model": "distilled_int8", **m, "seeds": 1, "quantize": "int8",
           **student_latency(q, data[:latency_docs], texts, enc, builder, predictor)}
    return row, ok


def _seed_row(name: str, per_seed: list[dict[str, float]], seeds: list[int],
              headline: str = "accuracy") -> dict[str, Any]:
    """One table row from per-seed metrics: every metric is the mean over seeds, plus its std."""
    row: dict[str, Any] = {"model": name, "seeds": len(seeds)}
    for key in per_seed[0]:
        stats = seed_summary([m[key] for m in per_seed])
        row[key], row[f"{key}_std"] = stats["mean"], stats["std"]
    row[f"{headline}_per_seed"] = {str(s): m[headline] for s, m in zip(seeds, per_seed)}
    return row


def run(cfg, out_dir: Path, predictor: Callable, log=print) -> dict[str, Any]:
    """The stage; ``predictor``: the deployed inference path (``serving.predictor.Predictor``) for
    the end-to-end latency columns."""
    from pipeline.graph_builder import GraphBuilder

    torch.set_num_threads(1)
    ev = cfg.evaluate
    distilled = read_manifest(cfg, "distill") or {}
    if distilled.get("lr", cfg.distill.lr) != cfg.distill.lr:  # the rate the distill stage chose on validation
        log(f"[evaluate] retrained rows use the distill stage's learning rate {distilled['lr']:g}")
        cfg = cfg.with_changes({"distill.lr": distilled["lr"]})
    prepared = prepare(cfg, use_teacher=True, edges="hybrid")  # every row's edges are a subset of these
    # The distill stage's verdict on the teacher, when it made one: its student was trained under it, so every
    # retrained row is too, and the baseline behind it is not trained again (minutes on a large corpus).
    prepared.teacher_check = distilled.get("teacher_check")
    ensure_teacher_check(prepared, cfg)  # once, shared by every row
    test_ids = sorted(prepared.splits["test"].column("id").to_pylist())
    if not test_ids:
        counts = {k: v.num_rows for k, v in prepared.splits.items()}
        raise StageError(f"the test split has no documents ({counts}): nothing to evaluate. With data.limit the first "
                         "rows of a corpus with its own split column may all be train/validation rows: "
                         "raise data.limit, or drop the split column so data.split_fractions assigns splits")
    labels = prepared.enc.labels
    headline = get_task(cfg.data.task).headline(labels)  # leads the table: accuracy, or spearman for pair scores
    docs = read_table(stage_dir(cfg, "ingest") / "documents", DOCUMENTS).select(["id", "text", "text_b"]).to_pylist()
    text_of = {r["id"]: r["text"] for r in docs}
    text_b_of = {r["id"]: r["text_b"] for r in docs}
    texts = [text_of[i] for i in test_ids[: ev.e2e_docs]]

    rows_cfg = row_configs(cfg)
    sets = graph_sets(cfg, rows_cfg, prepared, out_dir, log)
    tests = {parser: [d for _, _, d in unpack(p.splits["test"])] for parser, p in sets.items()}
    builders = {c.graph.parser: GraphBuilder(c.graph) for c in [cfg, *(c for cs in rows_cfg.values() for c in cs)]}
    flat = {f"{name}-seed{c.distill.seed}": c for name, cs in rows_cfg.items() for c in cs}
    trained = train_rows(flat, sets, out_dir / "models", log)
    models: dict[str, list[tuple[int, Path, str]]] = {  # name -> (seed, student, parser) per seed
        "distilled": [(cfg.distill.seed, stage_dir(cfg, "distill") / "student.pt", cfg.graph.parser)]}
    for name, cs in rows_cfg.items():
        models.setdefault(name, []).extend((c.distill.seed, trained[f"{name}-seed{c.distill.seed}"], c.graph.parser)
                                           for c in cs)

    test = tests[cfg.graph.parser]
    val = [d for _, _, d in unpack(prepared.splits["validation"])]
    cascade = None
    rows = [teacher_rows(cfg, test, labels, texts, min(ev.latency_docs, TEACHER_LATENCY_DOCS))]
    outcomes: dict[str, np.ndarray] = {}  # name -> (seeds x test rows) ``outcome``: right, or the predicted score
    val_scores: dict[str, list[float]] = {}  # name -> best validation score per seed
    for name, runs in models.items():
        per_seed, right = [], []
        for k, (seed, path, parser) in enumerate(runs):
            model, enc, blob = load_student(path)
            val_scores.setdefault(name, []).append(blob["extra"]["val_accuracy"])
            data = [enc.restrict(d) for d in tests[parser]]
            m, ok = _score(model, data, labels)
            per_seed.append(m); right.append(ok)
            if k == 0:  # size, latency and the decomposed row: from the first seed's student
                first = {"params": count_params(model), "best_epoch": blob["extra"].get("best_epoch"), "graph": parser,
                         "size_mb": path.stat().st_size / 1e6,
                         **student_latency(model, data[: ev.latency_docs], texts, enc, builders[parser], predictor)}
                if name == "distilled":
                    cascade = cascade_report(model, [enc.restrict(d) for d in val], data, first.get(COST),
                                             rows[0].get(COST), ev.cascade_within, ev.cascade_max_deferred,
                                             ev.bootstrap_resamples, cfg.distill.seed)
                    pred_d, g, teach_d = predict(model, data, node_budget=cfg.distill.node_budget)
                    decomposed = {"model": "distilled_decomposed",
                                  **metrics(pred_d, g, teach_d, labels, True, model.task, [d.num_nodes for d in data]),
                                  "params": first["params"], "parts_budget": cfg.distill.node_budget, "seeds": 1,
                                  "docs_over_budget": int(sum(d.num_nodes > cfg.distill.node_budget for d in data))}
                    if ev.int8:
                        int8, outcome_int8 = int8_row(model, data, labels, texts, enc, builders[parser], predictor,
                                                      ev.latency_docs)
                        int8.update(params=first["params"], graph=parser)  # quantised Linear weights are no Parameters
        outcomes[name] = np.stack(right)
        rows.append({**_seed_row(name, per_seed, [r[0] for r in runs], headline), **first})
        if name == "distilled":
            rows.append(decomposed)
            if ev.int8:
                rows.append(int8)
                outcomes["distilled_int8"] = outcome_int8[None]  # paired interval vs distilled, like every row

    log(f"[evaluate] training the non-graph baseline ({ev.seeds} seeds)")
    train = [d for _, _, d in unpack(prepared.splits["train"])]
    task = get_task(cfg.data.task)
    gold, teach = (torch.cat(x).numpy() for x in zip(*(task.gold_and_teacher(d) for d in test)))
    per_seed, right = [], []
    for k in range(ev.seeds):
        bow, _ = train_baseline(task.name, train, val, len(prepared.enc.vocab), labels, ev.bow_hidden, ev.bow_epochs,
                                cfg.distill.seed + k)
        with torch.no_grad():
            pred = task.predictions(bow(bow.featurize([task.words(d) for d in test]))).numpy()
        per_seed.append(metrics(pred, gold, teach, labels, True, task.name, [d.num_nodes for d in test]))
        right.append(outcome(task, pred, gold))
        if k == 0:
            row = {"params": count_params(bow),
                   **bow_latency(bow, [task.words(d) for d in test[: ev.latency_docs]], texts,
                                 prepared.enc.vocab, builders[cfg.graph.parser].nlp.tokenizer)}
    outcomes["bow"] = np.stack(right)
    rows.append({**_seed_row("bow", per_seed, [cfg.distill.seed + k for k in range(ev.seeds)], headline), **row})
    splits = {}  # the peers train on the bow row's documents and labels
    for split, datas in (("train", train), ("validation", val), ("test", test)):
        ids = sorted(prepared.splits[split].column("id").to_pylist())  # unpack's order: by id
        splits[split] = {"text": [text_of[i] for i in ids], "gold": _gold(task, datas),
                         "text_b": [text_b_of[i] or "" for i in ids] if task.name == "pair" else None}
    if "fasttext" in ev.peers and task.name in PEER_TASKS:
        peer, ok = fasttext_row(task, labels, *((splits[s]["text"], splits[s]["gold"]) for s in
                                                ("train", "validation", "test")),
                                teach, texts, ev.latency_docs, out_dir / "peers", log)
        rows.append(peer)
        outcomes["fasttext"] = ok[None]
    if "model2vec" in ev.peers and task.name in MODEL2VEC_TASKS:  # vectors from the run's (fine-tuned) teacher
        peer, ok = model2vec_row(task, labels, str(teacher_model_dir(cfg)), splits, teach, ev.latency_docs, texts,
                                 out_dir / "peers", cfg.distill.seed, log)
        rows.append(peer)
        outcomes["model2vec"] = ok[None]
    for r in rows:
        if r.get("latency_ms_b64"):
            r["docs_per_s"] = 1000.0 / r["latency_ms_b64"]
    comparisons = differences(outcomes, ev.bootstrap_resamples, cfg.distill.seed,
                              gold if headline == "spearman" else None)
    by_name = {r["model"]: r for r in rows}
    for c in comparisons:
        by_name[c["row"]][f"ci95_vs_{c['baseline']}"] = c["ci95"]
    if prepared.teacher_check:
        by_name["distilled"]["teacher_check"] = prepared.teacher_check
    distill_check = distillation_check(val_scores, headline)
    if distill_check:
        by_name["distilled"]["distillation_check"] = distill_check
        if distill_check["behind"]:
            log(f"[evaluate] WARNING: {distill_check['message']}")
    (out_dir / "metrics.json").write_text(json.dumps(rows, indent=2))
    recipe = (read_manifest(cfg, "teacher-finetune") or {}).get("recipe")
    if recipe:
        by_name["teacher"]["recipe"] = recipe
    table = markdown(rows, comparisons, prepared.teacher_check, headline, distill_check, recipe,
                     distilled.get("lr_search"), distilled.get("static_mix"))
    if cascade:
        (out_dir / "cascade.json").write_text(json.dumps(cascade, indent=2))
        plot_cascade(cascade, out_dir / "cascade.png", headline)
        table += cascade_markdown(cascade) + "\n"
    (out_dir / "metrics.md").write_text(table)
    plot_rows(rows, out_dir / "accuracy_latency_params.png", headline)
    _learning_curves({name: runs[0][1] for name, runs in models.items()}, out_dir / "learning_curves.png", headline)
    log("\n" + table)
    return {"input_rows": len(test), "output_rows": len(rows),
            "rows": {r["model"]: round(r[headline], 4) for r in rows},
            "differences": {f"{c['row']} - {c['baseline']}": c["ci95"] for c in comparisons},
            "distillation_check": distill_check,
            "cascade": {k: cascade[k] for k in ("threshold", "test")} if cascade else None}


COMPARISONS = (("distilled", "gnn"), ("distilled", "bow"), ("distilled", "fasttext"), ("distilled", "model2vec"),
               ("distilled_small", "gnn_small"))
NOT_VS_DISTILLED = {"distilled", "gnn", "bow", "fasttext", "model2vec", "distilled_small",
                    "gnn_small"}  # baselines, not variants
# Rows made from the distilled row's first-seed student (not retrained): compared with that student, not with the
# mean over seeds, so the difference is what the change itself does (quantisation), free of seed spread.
FROM_FIRST_SEED = ("distilled_int8",)


def differences(outcomes: dict[str, np.ndarray], resamples: int, seed: int,
                rank_gold: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Paired bootstrap 95% intervals of headline differences: distilled vs gnn, bow and the peers,
    small data, and every other student row (ablations, fast graph) vs distilled. ``outcomes``: per
    row (seeds x test rows) ``outcome``; accuracy differences, or with ``rank_gold`` (the test gold
    scores) Spearman differences."""
    pairs = [p for p in COMPARISONS if p[0] in outcomes and p[1] in outcomes]
    pairs += [(name, "distilled") for name in outcomes if name not in NOT_VS_DISTILLED]
    out = []
    for a, b in pairs:
        base = outcomes[b][:1] if a in FROM_FIRST_SEED else outcomes[b]
        if rank_gold is None:
            diff, ci = (float(outcomes[a].mean() - base.mean()),
                        paired_bootstrap_ci(outcomes[a], base, resamples, seed))
        else:
            keep = np.isfinite(rank_gold)
            diff = float(spearman_rows(outcomes[a][:, keep], rank_gold[keep]).mean()
                         - spearman_rows(base[:, keep], rank_gold[keep]).mean())
            ci = paired_bootstrap_rank_ci(outcomes[a], base, rank_gold, resamples, seed)
        out.append({"row": a, "baseline": b, "difference": diff, "baseline_first_seed": a in FROM_FIRST_SEED,
                    "metric": "accuracy" if rank_gold is None else "spearman", "ci95": ci})
    return out


def _learning_curves(models: dict[str, Path], path: Path, headline: str = "accuracy") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, p in models.items():
        h = p.parent / "history.json"
        if h.is_file():
            hist = json.loads(h.read_text())
            ax.plot([r["epoch"] for r in hist], [r.get(f"val_{headline}") for r in hist], marker=".", label=name)
    ax.set_xlabel("epoch (stages: align -> fusion -> adaptive)"); ax.set_ylabel(f"validation {headline}")
    ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)
