"""The sentence-pair task: hand-checked Spearman, the TF-IDF cosine baseline, the siamese student,
the derived pair set, refused combinations, and `tgd run` through the CLI on a small pair file with
a tiny local BERT as the sentence-embedding teacher (every stage; metrics rows and keys)."""
import json
import math
import random

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from tests.fixtures.teacher_fixtures import tiny_bert
from tgd.cli import main
from trainers.evaluate.pair_baselines import TfidfCosine
from trainers.tasks import get_task
from trainers.tasks.pair import rank_correlations


def test_spearman_hand_checked_on_a_tiny_example():
    pred, gold = [0.1, 0.2, 0.3, 0.4, 0.5], [1, 3, 2, 5, 4]
    # ranks of gold: 1 3 2 5 4 against 1 2 3 4 5: d^2 = 0+1+1+1+1 = 4, rho = 1 - 6*4 / (5 * (25 - 1)) = 0.8
    s = rank_correlations(pred, gold)
    assert s["spearman"] == pytest.approx(0.8) == pytest.approx(spearmanr(pred, gold).statistic)
    # ties get average ranks (gold 0.5 twice: ranks 2.5 each), as the library does
    pred, gold = [0.9, 0.1, 0.4, 0.3], [1.0, 0.0, 0.5, 0.5]
    assert rank_correlations(pred, gold)["spearman"] == pytest.approx(spearmanr(pred, gold).statistic)
    # through the adapter: pairs without a gold score are skipped; a constant prediction scores 0, not NaN
    task = get_task("pair")
    out = task.scores(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9]), np.array([1, 3, 2, 5, 4, math.nan]), None, [])
    assert out["spearman"] == pytest.approx(0.8) and set(out) == {"spearman", "pearson"}
    assert task.scores(np.zeros(3), np.array([0.0, 0.5, 1.0]), None, [])["spearman"] == 0.0


def test_tfidf_cosine_of_the_two_sides():
    bow = TfidfCosine(6, train_words=[(torch.tensor([2, 3]), torch.tensor([4, 5]))])
    x = bow.featurize([(torch.tensor([2, 3]), torch.tensor([3, 2])),   # same words: 1
                       (torch.tensor([2, 3]), torch.tensor([4, 5])),   # no shared word: 0
                       (torch.tensor([2, 1]), torch.tensor([2]))])     # <unk> (1) ignored: 1
    assert bow(x)[:, 0].tolist() == pytest.approx([1.0, 0.0, 1.0])
    assert sum(p.numel() for p in bow.parameters()) == 0  # nothing trained


def test_siamese_student_shares_weights_across_sides(tmp_path):
    """A pair is one graph of two disconnected sides: swapping the sides gives the same similarity."""
    from torch_geometric.data import Batch

    from tgd.config import StudentConfig
    from trainers.student.features import GraphEncoding
    from trainers.student.model import Student

    enc = GraphEncoding(["<pad>", "<unk>", "good", "film", "dull"], ["nsubj", "<other>"], [])
    g = lambda words: {"num_nodes": len(words), "lower": words, "pos": ["NOUN"] * len(words), "sent": [0] * len(words),
                       "dep_src": [0], "dep_dst": [1], "dep_rel": ["nsubj"], "co_src": [0], "co_dst": [1], "co_weight": [1.0]}
    task = get_task("pair")
    ab = task.encode(enc, {"graph": g(["good", "film"]), "graph_b": g(["dull", "film", "film"]), "score": 0.25})
    ba = task.encode(enc, {"graph": g(["dull", "film", "film"]), "graph_b": g(["good", "film"]), "score": 0.25})
    assert ab.side.tolist() == [0, 0, 1, 1, 1] and ab.sent.tolist() == [0, 0, 1, 1, 1]
    assert set(ab.edge_index[:, 4:].flatten().tolist()) == {2, 3}  # side B's edges shifted past side A's nodes
    torch.manual_seed(0)
    model = Student(len(enc.vocab), len(enc.pos), enc.num_edge_types, 0, StudentConfig(hidden=16, heads=2, pos_dim=4, dropout=0.3),
                    "pair").eval()
    out = model(Batch.from_data_list([ab, ba]))[0]
    assert out.shape == (2, 1) and out[0, 0].item() == pytest.approx(out[1, 0].item(), abs=1e-6)
    assert task.predictions(out).shape == (2,)


def test_brown_pairs_is_derived_and_balanced():
    import pyarrow.parquet as pq

    from pipeline import corpora

    assert "not a benchmark" in corpora.RECIPES["brown-pairs"].description
    t = pq.read_table(corpora.fetch("brown-pairs", log=lambda _: None))
    assert t.column_names == ["id", "text_a", "text_b", "score", "split"] and t.num_rows == 19890
    head = t.slice(0, 2000).to_pylist()  # rows are shuffled, so data.limit takes every level and split
    assert {r["score"] for r in head} == {0.0, 0.3333, 0.6667, 1.0} and {r["split"] for r in head} == {"train", "validation", "test"}


@pytest.mark.parametrize("overrides, message", [
    (["teacher.kind=causal-lm"], "teacher.kind=causal-lm gives no sentence embeddings"),
    (["evaluate.ablations=[no_adaptive_t]"], "evaluate.ablations has no_adaptive_t"),
])
def test_unworkable_pair_combinations_are_refused(tmp_path, capsys, overrides, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\ndata: {{task: pair}}\n")
    assert main(["run", str(cfg)] + [a for o in overrides for a in ("--set", o)]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


WORDS = "the film movie actor actors great dull fine good bad plot story review".split()


def pair_fixture(path, n: int = 90, seed: int = 0):
    """Canonical pair rows: side B keeps a random share of side A's words and fills the rest with
    other words; the score is that share (learnable from the words, so TF-IDF cosine tracks it)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = [rng.choice(WORDS) for _ in range(6)]
        keep = rng.randint(0, 6)
        b = a[:keep] + [rng.choice(WORDS) for _ in range(6 - keep)]
        rows.append({"id": f"p{i}", "text_a": " ".join(a) + " .", "text_b": " ".join(b) + " .", "score": keep / 6})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow  # ~2 min; the pair pieces are covered by the other tests here and test_serving_tasks
def test_pair_task_runs_every_stage_through_the_cli(ray_local, tmp_path):
    data, base = pair_fixture(tmp_path / "pairs.jsonl"), tiny_bert(tmp_path / "teacher")  # no head: embeddings
    cfg = tmp_path / "pair.yaml"
    cfg.write_text(json.dumps({
        "run_dir": str(tmp_path / "run"),
        "data": {"source": str(data), "task": "pair", "split_fractions": [0.6, 0.2, 0.2]},
        "ray": {"num_workers": 2},
        "teacher": {"model": str(base), "max_length": 32, "stride": 8},
        "student": {"hidden": 32, "heads": 2, "pos_dim": 8},
        "distill": {"epochs_align": 1, "epochs_fusion": 2, "epochs_adaptive": 1, "batch_size": 16},
        "evaluate": {"seeds": 1, "ablations": [], "latency_docs": 5, "e2e_docs": 5, "bootstrap_resamples": 100},
        "tune": {"num_samples": 2, "grace_epochs": 1, "space": {"distill.alpha_kl": [0.2, 0.7]}},
    }))
    assert main(["run", str(cfg)]) == 0
    rows = {r["model"]: r for r in json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())}
    assert {"teacher", "distilled", "gnn", "bow"} <= set(rows)
    for name in ("teacher", "distilled", "gnn", "bow"):
        assert {"spearman", "pearson"} <= set(rows[name]), name
        assert -1.0 <= rows[name]["spearman"] <= 1.0 and -1.0 <= rows[name]["pearson"] <= 1.0
    assert rows["bow"]["spearman"] > 0.5  # word overlap is the score here: TF-IDF cosine must see it
    table = (tmp_path / "run" / "evaluate" / "metrics.md").read_text()
    assert table.splitlines()[0].startswith("| model | graph | spearman |")
    mix = json.loads((tmp_path / "run" / "distill" / "manifest.json").read_text())["static_mix"]
    assert 0 < mix < 1 and f"similarity is {mix:.2f} x the GNN's cosine" in table  # the learned static-path mix
    history = json.loads((tmp_path / "run" / "distill" / "history.json").read_text())
    assert [h["stage"] for h in history] == ["align", "fusion", "fusion", "adaptive"]
    assert "loss_bridge" in history[0]  # the sentence-level bridge trains in the align stage
    # tune searches on the pair task's headline metric (validation Spearman)
    assert main(["tune", str(cfg)]) == 0
    trials = json.loads((tmp_path / "run" / "tune" / "trials.json").read_text())
    assert len(trials) == 2 and all(t["val_accuracy"] is not None and -1 <= t["val_accuracy"] <= 1 for t in trials)
