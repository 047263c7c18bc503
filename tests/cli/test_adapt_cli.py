"""`tgd terms` + `tgd adapt` through the CLI on a small real run: a classification run with a tiny
local BERT teacher (`tgd distill`: every stage up to the student), then a new domain of unlabelled
texts whose words the run never saw. The adapted package is a package like any other (`tgd predict`
takes it as it is), records its lineage and carries the graph rules; bad domain rows land in the
rejects with their reasons; a run without a student is refused with one `error:` line."""
import json
import random

import pyarrow.parquet as pq
import pytest

from tests.fixtures.serving_data import BAD, GOOD, NOUNS, corpus
from tests.fixtures.teacher_fixtures import tiny_bert
from tgd.cli import main

# the new domain: reviews of gadgets, not films; its nouns are words the run's texts never contain
GADGETS = ["battery", "screen", "charger", "keyboard", "speaker"]


def domain_texts(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"The {rng.choice(GADGETS)} was {rng.choice(GOOD + BAD)} and the {rng.choice(GADGETS)} of the "
            f"{rng.choice(NOUNS)} felt {rng.choice(GOOD + BAD)}." for _ in range(n)]


@pytest.fixture(scope="module")
def finished_run(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    data = root / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": ["neg", "pos"][y]}) + "\n" for t, y in corpus(120)))
    cfg = root / "run.yaml"
    cfg.write_text(json.dumps({
        "run_dir": str(root / "run"),
        "data": {"source": str(data), "task": "classification", "split_fractions": [0.6, 0.2, 0.2]},
        "ray": {"num_workers": 2},
        "teacher": {"model": str(tiny_bert(root / "teacher")), "epochs": 1, "min_steps": 1, "batch_size": 8,
                    "max_length": 32, "stride": 8, "lr": 0.003},
        "transfer": {"copies": 0},
        "student": {"hidden": 16, "heads": 2, "pos_dim": 8},
        "distill": {"epochs_align": 1, "epochs_fusion": 1, "epochs_adaptive": 1, "batch_size": 16},
        "adapt": {"epochs": 2},
    }))
    assert main(["distill", str(cfg)]) == 0
    return root, cfg


def test_terms_then_adapt_write_a_package_predict_takes(finished_run, capsys):
    root, cfg = finished_run
    domain = root / "gadgets.jsonl"
    rows = [{"text": t} for t in domain_texts(60)] + [{"text": "   "}, {"other": "no text column"}, {"text": 7}]
    domain.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")

    assert main(["terms", str(cfg), "--domain", str(domain), "--set", "terms.min_count=2"]) == 0
    terms = pq.read_table(root / "run" / "terms" / "terms.parquet").column("term").to_pylist()
    assert set(terms[:len(GADGETS)]) <= set(GADGETS) and set(GADGETS) <= set(terms)  # the domain's own words lead

    out = root / "pkg-adapted"
    assert main(["adapt", str(cfg), "--domain", str(domain), "--terms", str(root / "run" / "terms" / "terms.parquet"),
                 "--out", str(out)]) == 0
    meta = json.loads((out / "package.json").read_text())
    lineage = meta["lineage"]
    assert lineage["run_dir"] == str(root / "run") and len(lineage["domain_fingerprint"]) == 16
    assert [r["rule"] for r in lineage["rules"]] == ["link_terms"] and set(GADGETS) <= set(lineage["terms"])
    assert meta["graph"]["rules"] == lineage["rules"] and meta["graph"]["terms"] == lineage["terms"]
    vocab = json.loads((out / "encoding.json").read_text())["vocab"]
    assert set(GADGETS) <= set(vocab)  # new domain words got their own rows, not <unk>

    work = next(p.parent for p in (root / "run" / "adapt").rglob("adapt.json"))
    report = json.loads((work / "adapt.json").read_text())
    assert report["domain"]["input_rows"] == 64 and report["domain"]["accepted_rows"] == 60
    rejects = pq.read_table(work / "rejects.parquet").to_pylist()
    assert len(rejects) == 4 and all(r["reason"] for r in rejects)
    assert {"empty text", "missing text", "text is not text (got int)"} <= {r["reason"] for r in rejects}
    assert report["domain_train"] + report["domain_holdout"] == 60 and report["replay"] > 0
    assert len(report["history"]) == 2 and report["new_words"] >= len(GADGETS)

    texts = root / "new.txt"
    texts.write_text("\n".join(domain_texts(5, seed=9)) + "\n")
    preds = root / "preds.jsonl"
    assert main(["predict", str(out), "--input", str(texts), "--output", str(preds)]) == 0
    records = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(records) == 5 and all(r["label"] in ("neg", "pos") for r in records)


def test_adapt_refuses_a_run_without_a_student(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({"run_dir": str(tmp_path / "run")}))
    domain = tmp_path / "d.txt"
    domain.write_text("a text\n")
    assert main(["adapt", str(cfg), "--domain", str(domain), "--out", str(tmp_path / "pkg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "tgd run" in err[0]


def test_adapt_refuses_a_missing_terms_table(finished_run, tmp_path, capsys):
    root, cfg = finished_run
    domain = tmp_path / "d.txt"
    domain.write_text("The battery was great.\n")
    assert main(["adapt", str(cfg), "--domain", str(domain), "--terms", str(tmp_path / "nope.parquet"),
                 "--out", str(tmp_path / "pkg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --terms") and "tgd terms" in err[0]
