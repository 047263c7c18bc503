"""`tgd run` through the CLI, every stage, for the token task on a small CoNLL/BIO file written here
(no public NER corpus is reachable; any CoNLL/BIO file works the same way), with a tiny local BERT
teacher: the evaluate table has the token rows and entity-level scores."""
import json
import random

import pytest

from tests.fixtures.teacher_fixtures import tiny_bert
from tgd.cli import main

ENTITY = {"actor": "PER", "actors": "PER", "film": "WORK", "movie": "WORK", "story": "WORK"}
FILLER = "the a and of to is was were great dull fine good bad very but with for on in it this that not".split()


def conll_fixture(path, n: int = 90, seed: int = 0):
    """Sentences of filler words and entities: 'great actor' is a two-token PER span, a lone entity
    word a one-token span of its type, every other word O."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        for _ in range(rng.randint(3, 7)):
            r = rng.random()
            if r < 0.2:
                lines += ["great B-PER", "actor I-PER"]
            elif r < 0.45:
                w = rng.choice(list(ENTITY))
                lines.append(f"{w} B-{ENTITY[w]}")
            else:
                lines.append(f"{rng.choice(FILLER)} O")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow  # ~2 min; the token task's stages are also covered piecewise (test_tasks, test_serving_tasks)
def test_token_task_runs_every_stage_through_the_cli(ray_local, tmp_path, capsys):
    data, base = conll_fixture(tmp_path / "ner.conll"), tiny_bert(tmp_path / "teacher")
    cfg = tmp_path / "ner.yaml"
    cfg.write_text(json.dumps({
        "run_dir": str(tmp_path / "run"),
        "data": {"source": str(data), "task": "token", "split_fractions": [0.6, 0.2, 0.2]},
        "ray": {"num_workers": 2},
        "teacher": {"model": str(base), "epochs": 2, "min_steps": 1, "batch_size": 8, "lr": 0.003, "max_length": 32,
                    "stride": 8},
        "student": {"hidden": 32, "heads": 2, "pos_dim": 8},
        "distill": {"epochs_align": 1, "epochs_fusion": 2, "epochs_adaptive": 1, "batch_size": 16},
        "evaluate": {"seeds": 1, "ablations": [], "latency_docs": 5, "e2e_docs": 5, "bow_epochs": 3,
                     "bootstrap_resamples": 100},
    }))
    assert main(["run", str(cfg)]) == 0
    rows = {r["model"]: r for r in json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())}
    assert {"teacher", "distilled", "distilled_decomposed", "gnn", "bow"} <= set(rows)
    for name in ("teacher", "distilled", "gnn", "bow"):
        r = rows[name]
        assert 0.0 <= r["token_accuracy"] <= 1.0 and r["token_accuracy"] == r["accuracy"]
        assert {"entity_precision", "entity_recall", "entity_f1"} <= set(r)  # BIO tags: scored as entities
    # the pattern is learnable from the words alone: every trained row beats always-O by a margin
    gold = [line.split()[1] for line in data.read_text().splitlines() if line]
    always_o = gold.count("O") / len(gold)
    for name in ("distilled", "gnn", "bow"):
        assert rows[name]["token_accuracy"] > always_o + 0.05, (name, rows[name]["token_accuracy"], always_o)
    table = (tmp_path / "run" / "evaluate" / "metrics.md").read_text()
    assert "token_accuracy" in table and "entity_f1" in table
