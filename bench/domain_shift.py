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
--terms` (the default rule: term occurrences linked). Each package is scored with ``load_package``
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


def acc(x: tuple) -> float:
    return float(x[0].sum() / x[1].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/domain-shift", help="run directory and files of this measurement")
    ap.add_argument("--limit", type=int, default=4000, help="informative sentences the run trains on (data.limit)")
    ap.add_argument("--domain-rows", type=int, default=3000, help="unlabelled imaginative sentences to adapt on")
    ap.add_argument("--test-rows", type=int, default=1500, help="test sentences per domain")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "run.yaml"
    cfg.write_text(f"run_dir: {work / 'run'}\ndata:\n  source: brown-pos-informative\n  task: token\n"
                   f"  limit: {args.limit}\nray:\n  num_workers: 2\n")
    domain = work / "domain.jsonl"
    write_jsonl(domain, [{"tokens": r["tokens"]} for r in rows("brown-pos-imaginative", "train", args.domain_rows)])
    new_test = rows("brown-pos-imaginative", "test", args.test_rows)
    old_test = rows("brown-pos-informative", "test", args.test_rows)

    tgd("distill", str(cfg))
    runm = {s: json.loads((work / "run" / s / "manifest.json").read_text())["seconds"]
            for s in RUN_STAGES if (work / "run" / s / "manifest.json").is_file()}
    tgd("export", str(cfg), "--format", "torchscript", "--out", str(work / "pkg-run"))
    terms_s = tgd("terms", str(cfg), "--domain", str(domain), "--out", str(work / "terms"))
    plain_s = tgd("adapt", str(cfg), "--domain", str(domain), "--out", str(work / "pkg-adapted"))
    rules_s = tgd("adapt", str(cfg), "--domain", str(domain), "--terms", str(work / "terms" / "terms.parquet"),
                  "--out", str(work / "pkg-adapted-terms"))

    scored = {name: {"old": per_sentence(work / name, old_test), "new": per_sentence(work / name, new_test)}
              for name in ("pkg-run", "pkg-adapted", "pkg-adapted-terms")}
    base = scored["pkg-run"]
    full = sum(runm.values())
    out = {"run_seconds": runm, "full_run_seconds": round(full, 1), "terms_seconds": round(terms_s, 1),
           "test_sentences": len(new_test), "rows": {}}
    drop_before = acc(base["old"]) - acc(base["new"])
    print(f"\n{'package':<20} {'old domain':>10} {'new domain':>10}  new: after - before      old: after - before"
          f"      drop / before   seconds (x full run)")
    for name, seconds in (("pkg-run", None), ("pkg-adapted", plain_s), ("pkg-adapted-terms", rules_s + terms_s)):
        s = scored[name]
        row = {"old": acc(s["old"]), "new": acc(s["new"]), "drop": acc(base["old"]) - acc(s["new"])}
        if seconds is not None:
            row.update(new_gain=row["new"] - acc(base["new"]), new_gain_ci=cluster_ci(s["new"], base["new"]),
                       old_change=row["old"] - acc(base["old"]), old_change_ci=cluster_ci(s["old"], base["old"]),
                       drop_ratio=row["drop"] / drop_before if drop_before else None, seconds=round(seconds, 1),
                       cost_ratio=round(seconds / full, 3))
            print(f"{name:<20} {row['old']:>10.4f} {row['new']:>10.4f}  {100 * row['new_gain']:+.2f} "
                  f"[{100 * row['new_gain_ci'][0]:+.2f}, {100 * row['new_gain_ci'][1]:+.2f}]   "
                  f"{100 * row['old_change']:+.2f} [{100 * row['old_change_ci'][0]:+.2f}, "
                  f"{100 * row['old_change_ci'][1]:+.2f}]   {row['drop_ratio']:.2f}   {seconds:.0f} "
                  f"({row['cost_ratio']:.2f}x)")
        else:
            print(f"{name:<20} {row['old']:>10.4f} {row['new']:>10.4f}  (drop {100 * drop_before:.2f} points; full "
                  f"run {full:.0f}s)")
        out["rows"][name] = row
    for name in ("pkg-adapted", "pkg-adapted-terms"):
        out["rows"][name]["adapt"] = json.loads((work / name / "package.json").read_text()).get("lineage")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
