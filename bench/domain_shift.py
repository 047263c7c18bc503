"""Domain shift on Brown, measured end to end: a POS tagger trained on informative prose, adapted with
`tgd adapt` to imaginative prose from unlabelled text only (not a test).

Brown's own division: the run trains on ``brown-pos-informative`` (news, editorial, reviews, religion,
hobbies, lore, belles-lettres, government, learned; ``data.limit`` sentences, default config
otherwise); the new domain is ``brown-pos-imaginative`` (fiction, mystery, science fiction, adventure,
romance, humor). From the imaginative half: ``--domain-rows`` training-split sentences as tokens
WITHOUT their tags (what `tgd adapt` gets) and ``--test-rows`` test-split sentences with tags (what it
is scored on; documents disjoint from the domain texts, Brown's splits are by file). The old domain
is scored on ``--test-rows`` informative test-split sentences (files the run never trained on).

Commands, all through the CLI: `tgd distill` + `tgd export` (the run: the full pipeline a new domain
would otherwise re-run), `tgd terms` on the domain texts, `tgd adapt` without terms, `tgd adapt
--terms` (the default rule: term occurrences linked), and a control: `tgd adapt` on as many unlabelled
texts of the OLD domain (informative sentences past the run's ``data.limit``), what continued
training with KD and replay gives without any new-domain text. Each package is scored with ``load_package``
(the predict path). Reported: token accuracy per package and domain, with 95% cluster-bootstrap
intervals over sentences of each difference that matters (after - before on the new domain, after -
before on the old one), the drops, and the time of each adaptation against the full run's stages.
The last printed line is one JSON object.

    .venv/bin/python bench/domain_shift.py                       # runs/domain-shift, 4,000 sentences
    .venv/bin/python bench/domain_shift.py --work /tmp/ds --limit 1000 --domain-rows 500 --test-rows 300
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.corpora import fetch  # noqa: E402
from serving.export import load_package  # noqa: E402
from tgd.config import load_config  # noqa: E402
from trainers.tasks.token import token_spans  # noqa: E402
from trainers.teacher.outputs import label_in_process  # noqa: E402

RUN_STAGES = ("ingest", "graphs", "transfer", "teacher-finetune", "teacher-folds", "teacher-logits", "distill")


def tgd(*args: str) -> float:
    """Run one CLI command (output streamed); its wall seconds."""
    t0 = time.time()
    print("$ tgd " + " ".join(args), flush=True)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "tgd.cli", *args], check=True, cwd=ROOT, env=env)
    return time.time() - t0


def rows(corpus: str, split: str, n: int) -> list[dict]:
    t = pq.read_table(fetch(corpus), columns=["id", "tokens", "tags", "split"]).to_pylist()
    return [r for r in t if r["split"] == split][:n]


def write_jsonl(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in items))


def per_sentence(pkg: Path, test: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(correct tokens, tokens) per test sentence for the package at ``pkg``."""
    predictor = load_package(pkg)
    records = predictor.predict_records([{"id": r["id"], "tokens": r["tokens"]} for r in test])
    right = np.array([sum(p == g for p, g in zip(rec["tags"], r["tags"])) for rec, r in zip(records, test)])
    return right, np.array([len(r["tags"]) for r in test])


def cluster_ci(a: tuple, b: tuple, resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of token accuracy(a) - accuracy(b), resampling sentences (tokens of one sentence
    are not independent draws)."""
    (ra, n), (rb, _) = a, b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(n), size=(resamples, len(n)))
    d = ra[idx].sum(1) / n[idx].sum(1) - rb[idx].sum(1) / n[idx].sum(1)
    return [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))]


def teacher_per_sentence(cfg_path: Path, test: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(correct tokens, tokens) per test sentence for the run's teacher (its node logits, argmax)."""
    cfg = load_config(cfg_path)
    labels = json.loads((cfg.run_dir / "teacher-logits" / "manifest.json").read_text())["labels"]
    docs, graphs = [], []
    for r in test:
        start, end = token_spans(r["tokens"])
        docs.append({"id": r["id"], "split": "test", "text": " ".join(r["tokens"])})
        graphs.append({"start": start.tolist(), "end": end.tolist()})
    rows = label_in_process(cfg, docs, graphs, log=lambda line: None).to_pylist()
    right = []
    for row, r in zip(rows, test):
        pred = np.asarray(row["node_logits"]).reshape(len(r["tags"]), len(labels)).argmax(1)
        right.append(sum(labels[p] == g for p, g in zip(pred, r["tags"])))
    return np.array(right), np.array([len(r["tags"]) for r in test])


def acc(x: tuple) -> float:
    return float(x[0].sum() / x[1].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/domain-shift", help="run directory and files of this measurement")
    ap.add_argument("--limit", type=int, default=4000, help="informative sentences the run trains on (data.limit)")
    ap.add_argument("--domain-rows", type=int, default=3000, help="unlabelled imaginative sentences to adapt on")
    ap.add_argument("--test-rows", type=int, default=1500, help="test sentences per domain")
    ap.add_argument("--config", help="a finished run of brown-pos-informative to adapt instead of WORK/run (its "
                    "student is used as it is, `tgd distill` is not re-run)")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.config:
        cfg = Path(args.config).resolve()
    else:
        cfg = work / "run.yaml"
        cfg.write_text(f"run_dir: {work / 'run'}\ndata:\n  source: brown-pos-informative\n  task: token\n"
                       f"  limit: {args.limit}\nray:\n  num_workers: 2\n")
    domain = work / "domain.jsonl"
    write_jsonl(domain, [{"tokens": r["tokens"]} for r in rows("brown-pos-imaginative", "train", args.domain_rows)])
    # control: as many unlabelled texts of the OLD domain (informative training-split sentences past the run's
    # data.limit): what continued training with KD and replay gives without any new-domain text
    control = work / "control.jsonl"
    informative = pq.read_table(fetch("brown-pos-informative"), columns=["tokens", "split"]).to_pylist()[args.limit:]
    write_jsonl(control, [{"tokens": r["tokens"]} for r in informative if r["split"] == "train"][:args.domain_rows])
    new_test = rows("brown-pos-imaginative", "test", args.test_rows)
    old_test = rows("brown-pos-informative", "test", args.test_rows)

    if not args.config:
        tgd("distill", str(cfg))
    run_dir = load_config(cfg).run_dir
    runm = {s: json.loads((run_dir / s / "manifest.json").read_text())["seconds"]
            for s in RUN_STAGES if (run_dir / s / "manifest.json").is_file()}
    tgd("export", str(cfg), "--format", "torchscript", "--out", str(work / "pkg-run"))
    terms_s = tgd("terms", str(cfg), "--domain", str(domain), "--out", str(work / "terms"))
    plain_s = tgd("adapt", str(cfg), "--domain", str(domain), "--out", str(work / "pkg-adapted"))
    rules_s = tgd("adapt", str(cfg), "--domain", str(domain), "--terms", str(work / "terms" / "terms.parquet"),
                  "--out", str(work / "pkg-adapted-terms"))
    control_s = tgd("adapt", str(cfg), "--domain", str(control), "--out", str(work / "pkg-control"))

    names = ("pkg-run", "pkg-adapted", "pkg-adapted-terms", "pkg-control")
    scored = {name: {"old": per_sentence(work / name, old_test), "new": per_sentence(work / name, new_test)}
              for name in names}
    teacher = {"old": teacher_per_sentence(cfg, old_test), "new": teacher_per_sentence(cfg, new_test)}
    base = scored["pkg-run"]
    full = sum(runm.values())
    out = {"run_seconds": runm, "full_run_seconds": round(full, 1), "terms_seconds": round(terms_s, 1),
           "test_sentences": len(new_test), "rows": {}}
    drop_before = acc(base["old"]) - acc(base["new"])
    print(f"\n{'package':<20} {'old domain':>10} {'new domain':>10}  new: after - before      old: after - before"
          f"      drop / before   seconds (x full run)")
    print(f"{'teacher':<20} {acc(teacher['old']):>10.4f} {acc(teacher['new']):>10.4f}")
    out["teacher"] = {"old": acc(teacher["old"]), "new": acc(teacher["new"])}
    for name, seconds in (("pkg-run", None), ("pkg-adapted", plain_s), ("pkg-adapted-terms", rules_s + terms_s),
                          ("pkg-control", control_s)):
        s = scored[name]
        row = {"old": acc(s["old"]), "new": acc(s["new"]), "drop": acc(base["old"]) - acc(s["new"])}
        if seconds is not None:
            row.update(new_gain=row["new"] - acc(base["new"]), new_gain_ci=cluster_ci(s["new"], base["new"]),
                       old_change=row["old"] - acc(base["old"]), old_change_ci=cluster_ci(s["old"], base["old"]),
                       drop_ratio=row["drop"] / drop_before if drop_before else None, seconds=round(seconds, 1),
                       cost_ratio=round(seconds / full, 3))
            if name != "pkg-control":  # what the new-domain texts add over continued training alone
                row.update(new_vs_control=row["new"] - acc(scored["pkg-control"]["new"]),
                           new_vs_control_ci=cluster_ci(s["new"], scored["pkg-control"]["new"]),
                           old_vs_control=row["old"] - acc(scored["pkg-control"]["old"]),
                           old_vs_control_ci=cluster_ci(s["old"], scored["pkg-control"]["old"]))
            print(f"{name:<20} {row['old']:>10.4f} {row['new']:>10.4f}  {100 * row['new_gain']:+.2f} "
                  f"[{100 * row['new_gain_ci'][0]:+.2f}, {100 * row['new_gain_ci'][1]:+.2f}]   "
                  f"{100 * row['old_change']:+.2f} [{100 * row['old_change_ci'][0]:+.2f}, "
                  f"{100 * row['old_change_ci'][1]:+.2f}]   {row['drop_ratio']:.2f}   {seconds:.0f} "
                  f"({row['cost_ratio']:.2f}x)")
            if "new_vs_control" in row:
                print(f"{'':<20} vs the control: new {100 * row['new_vs_control']:+.2f} "
                      f"[{100 * row['new_vs_control_ci'][0]:+.2f}, {100 * row['new_vs_control_ci'][1]:+.2f}], old "
                      f"{100 * row['old_vs_control']:+.2f} [{100 * row['old_vs_control_ci'][0]:+.2f}, "
                      f"{100 * row['old_vs_control_ci'][1]:+.2f}]")
        else:
            print(f"{name:<20} {row['old']:>10.4f} {row['new']:>10.4f}  (drop {100 * drop_before:.2f} points; full "
                  f"run {full:.0f}s)")
        out["rows"][name] = row
    for name in names[1:]:
        lineage = json.loads((work / name / "package.json").read_text())["lineage"]
        out["rows"][name]["lineage"] = {k: v for k, v in lineage.items() if k != "terms"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
