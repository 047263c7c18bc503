"""`evaluate` on a tiny synthetic run (with a transfer set) produces the table with every row, seed
statistics and bootstrap intervals, and the plots; the int8 row holds the distilled student
quantised as `tgd export --quantize int8` does it, scored and timed like the float rows; the
fastText peer row is there, sized on disk and compared; the teacher check comes from the distill stage."""
from __future__ import annotations

import json

import pytest
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from serving.predictor import Predictor
from tests.conftest import make_config
from tests.fixtures.student_data import make_run
from tgd.schema import GRAPHS, read_table
from trainers.distill.loop import train_on_ray
from trainers.evaluate import report as evaluate
from trainers.student.checkpoint import load_student
from trainers.student.quantize import quantize_int8

EXPECTED = {"teacher", "distilled", "distilled_decomposed", "distilled_int8", "gnn", "bow", "no_bridge", "curriculum",
            "no_adaptive_t", "dependency_only", "cooccurrence_only", "distilled_small", "gnn_small", "fast_graph", "no_transfer",
            "fasttext", "model2vec"}


def test_evaluate_writes_table_with_all_rows(ray_local, tmp_path):
    cfg = make_config(tmp_path, student={"hidden": 16, "heads": 2, "pos_dim": 4, "vocab_min_count": 1},
                      distill={"epochs_align": 1, "epochs_fusion": 1, "epochs_adaptive": 1, "batch_size": 32,
                               "node_budget": 12, "pace_epochs": 1, "lr_schedule": "constant"},
                      evaluate={"ablations": ["no_bridge", "curriculum", "no_adaptive_t", "dependency_only",
                                              "cooccurrence_only", "small_data", "fast_graph", "no_transfer"],
                                "latency_docs": 8, "e2e_docs": 3, "bow_epochs": 2, "small_fraction": 0.3, "seeds": 2,
                                "bootstrap_resamples": 200},
                      ray={"num_workers": 1})
    make_run(cfg, n_docs=60, transfer_copies=1)
    summary = train_on_ray(cfg, tmp_path / "run" / "distill")
    # the distill stage's manifest carries its verdict on the teacher: evaluate reuses it (marked here) rather
    # than training the baseline behind it again; and the learning rate it chose on validation (here half the
    # configured one), which the retrained rows take
    check = {**summary["teacher_check"], "message": summary["teacher_check"]["message"] + " [from distill]"}
    chosen = cfg.distill.lr / 2
    search = [{"lr": chosen, "val_score": 0.75, "best_epoch": 2, "seconds": 3.0, "chosen": True},
              {"lr": cfg.distill.lr, "val_score": 0.7, "best_epoch": 1, "seconds": 3.0, "chosen": False}]
    (tmp_path / "run" / "distill" / "manifest.json").write_text(json.dumps({"teacher_check": check, "lr": chosen,
                                                                             "lr_search": search}))
    out = tmp_path / "run" / "evaluate"
    out.mkdir(parents=True)
    result = evaluate.run(cfg, out, Predictor)
    rows = json.loads((out / "metrics.json").read_text())
    assert {r["model"] for r in rows} == EXPECTED and result["output_rows"] == len(EXPECTED)
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1
        if r["model"] not in ("teacher", "distilled_decomposed"):
            assert r["params"] > 0 and r["latency_ms_b1"] > 0 and r["latency_ms_b64"] > 0
            assert r["e2e_latency_ms_b1"] > 0 and r["e2e_latency_ms_b64"] > 0 and r["docs_per_s"] > 0
    by = {r["model"]: r for r in rows}
    assert by["teacher"]["accuracy"] > 0.7  # the synthetic teacher is right ~90% of the time
    assert by["distilled_decomposed"]["docs_over_budget"] > 0
    # int8: the stage's student (seed 0) quantised, not retrained: no model of its own, the float
    # row's accuracy within one of the 6 test documents, and a paired interval against distilled
    int8, float_acc = by["distilled_int8"], by["distilled"]["accuracy_per_seed"][str(cfg.distill.seed)]
    assert int8["quantize"] == "int8" and int8["params"] == by["distilled"]["params"] and int8["graph"] == "spacy"
    assert abs(int8["accuracy"] - float_acc) <= 1 / 6 + 1e-9
    assert int8["ci95_vs_distilled"][0] <= int8["ci95_vs_distilled"][1]
    assert not any("int8" in d.name for d in (out / "models").iterdir())
    student = load_student(tmp_path / "run" / "distill" / "student.pt")[0]
    assert any(isinstance(m, DynamicQuantizedLinear) for m in quantize_int8(student).modules())
    assert by["distilled"]["params"] == by["no_bridge"]["params"]  # the bridge is training-only
    # the fast-graph row was trained and timed on graphs without a dependency parse
    assert by["fast_graph"]["graph"] == "fast" and by["distilled"]["graph"] == "spacy"
    fast = read_table(out / "graphs-fast", GRAPHS).column("graph").to_pylist()
    assert len(fast) == 60 and all(g["num_nodes"] > 0 and not g["dep_src"] and g["co_src"] for g in fast)
    # seeds: distilled (the stage's student + one), gnn and bow twice, every other row once
    assert {r["model"]: r["seeds"] for r in rows if r["model"] != "teacher"} == {
        **{name: 1 for name in EXPECTED - {"teacher"}}, "distilled": 2, "gnn": 2, "bow": 2}
    for name in ("distilled", "gnn", "bow"):
        per_seed = list(by[name]["accuracy_per_seed"].values())
        assert len(per_seed) == 2 and abs(by[name]["accuracy"] - sum(per_seed) / 2) < 1e-9
        assert abs(by[name]["accuracy_std"] - abs(per_seed[0] - per_seed[1]) / 2 ** 0.5) < 1e-9
    assert (tmp_path / "run/evaluate/models/distilled-seed1/student.pt").is_file()
    seen = {name: max(h["train_docs"] for h in json.loads((out / "models" / f"{name}-seed{s}" / "history.json").read_text()))
            for name, s in (("distilled", 1), ("no_transfer", 0), ("gnn", 0))}
    assert seen["distilled"] > seen["no_transfer"] == seen["gnn"]  # the transfer copies, for the distilled rows only
    rates = lambda name, s: {h["lr"] for h in json.loads((out / "models" / f"{name}-seed{s}" / "history.json").read_text())}
    assert rates("distilled", 1) == rates("no_bridge", 0) == {chosen} and rates("gnn", 0) == {cfg.evaluate.gnn_lr}
    for key in ("ci95_vs_gnn", "ci95_vs_bow"):
        low, high = by["distilled"][key]
        assert -1 <= low <= high <= 1
    assert by["no_bridge"]["ci95_vs_distilled"][0] <= by["no_bridge"]["ci95_vs_distilled"][1]
    assert set(result["differences"]) >= {"distilled - gnn", "distilled - bow", "distilled - fasttext",
                                          "distilled_small - gnn_small"}
    # the fastText peer (evaluate.peers, on by default for classification): trained on the bow row's documents,
    # its model file sized like the students' checkpoints, and distilled compared against it
    ft = by["fasttext"]
    assert ft["size_mb"] == (out / "peers" / "fasttext.bin").stat().st_size / 1e6
    assert by["distilled"]["size_mb"] == (tmp_path / "run" / "distill" / "student.pt").stat().st_size / 1e6
    assert ft["fasttext"]["val_score"] == max(g["val_score"] for g in ft["fasttext_grid"] if g["val_score"] is not None)
    assert ft["accuracy"] > 0.5 and -1 <= by["distilled"]["ci95_vs_fasttext"][0] <= by["distilled"]["ci95_vs_fasttext"][1]
    md = (out / "metrics.md").read_text()
    assert "| distilled | spacy | " in md and "| distilled_int8 | spacy | " in md and " ± " in md and "| distilled - bow |" in md
    assert "| size_mb |" in md and "| fasttext |  | " in md and "| distilled - fasttext |" in md
    # the model2vec peer: vectors distilled from the run's teacher, a classifier chosen on validation
    m2v = by["model2vec"]
    assert m2v["size_mb"] == sum((out / "peers" / f).stat().st_size
                                 for f in ("model2vec.npy", "model2vec_classifier.pkl")) / 1e6
    grid = m2v["model2vec"]["val_scores"]  # C -> validation accuracy (JSON keys)
    assert grid[str(m2v["model2vec"]["C"])] == max(grid.values())
    assert "distilled - model2vec" in result["differences"] and m2v["e2e_latency_ms_b1"] > 0
    assert "Teacher check: teacher stronger than bag-of-words" in md and "[from distill]" in md
    assert f"Student learning rate: {chosen:g}, chosen on validation (distill.lr_factors): {chosen:g}: 0.7500" in md
    # the distillation check compares the rows' own best validation scores, mean over seeds
    check = by["distilled"]["distillation_check"]
    val = lambda name, seeds: [load_student(out / "models" / f"{name}-seed{s}" / "student.pt")[2]["extra"]["val_accuracy"]
                               for s in seeds]
    gnn_val = sum(val("gnn", (0, 1))) / 2
    distilled_val = (load_student(tmp_path / "run" / "distill" / "student.pt")[2]["extra"]["val_accuracy"]
                     + val("distilled", (1,))[0]) / 2
    assert abs(check["gnn_val"] - gnn_val) < 1e-9 and abs(check["distilled_val"] - distilled_val) < 1e-9
    assert check["behind"] == (distilled_val <= gnn_val) and "Distillation check: " in md
    assert (out / "accuracy_latency_params.png").stat().st_size > 0 and (out / "learning_curves.png").is_file()
    # the cascade of the stage's student and the teacher: deferring nothing is that student's accuracy,
    # deferring everything the teacher's; the threshold chosen on validation is applied to test
    cascade = json.loads((out / "cascade.json").read_text())
    test_curve = cascade["curve"]["test"]
    assert test_curve[0]["deferred"] == 0 and test_curve[0]["accuracy"] == pytest.approx(float_acc, abs=1e-4)
    assert test_curve[-1]["deferred"] == 1 and test_curve[-1]["accuracy"] == pytest.approx(by["teacher"]["accuracy"], abs=1e-4)
    assert test_curve[-1]["cost_ms"] == pytest.approx(by["distilled"]["e2e_latency_ms_b1"]
                                                      + by["teacher"]["e2e_latency_ms_b1"])
    assert 0 <= cascade["threshold"] <= 1 and cascade["validation"]["deferred"] <= 0.3 + 1e-9
    assert cascade["test"]["ci95_vs_teacher"][0] <= cascade["test"]["ci95_vs_teacher"][1]
    assert result["cascade"]["threshold"] == cascade["threshold"] and "Cascade (student first" in md
    assert (out / "cascade.png").stat().st_size > 0


def test_distillation_check_warns_when_the_plain_gnn_is_level_or_ahead():
    ahead = evaluate.distillation_check({"distilled": [0.81, 0.83], "gnn": [0.80, 0.80]})
    assert not ahead["behind"] and abs(ahead["distilled_val"] - 0.82) < 1e-9 and "ahead of the GNN" in ahead["message"]
    behind = evaluate.distillation_check({"distilled": [0.93], "gnn": [0.93, 0.95]}, "token_accuracy")
    assert behind["behind"] and "distill.alpha_kl" in behind["message"] and "tgd tune" in behind["message"]
    assert "**WARNING** Distillation check: " in evaluate.markdown([{"model": "gnn", "accuracy": 0.9}], distill_check=behind)
    assert evaluate.distillation_check({"distilled": [0.9]}) is None  # no GNN row: nothing to compare


def test_rows_finished_by_an_interrupted_attempt_are_kept(tmp_path):
    """A resumed evaluate (same config) does not train again a row whose student finished: its
    ``history.json``, written last, is there. The row's config is None: training it would raise."""
    row = tmp_path / "models" / "gnn-seed0"
    row.mkdir(parents=True)
    (row / "student.pt").write_bytes(b"finished"); (row / "history.json").write_text("[]")
    logs: list[str] = []
    kept = evaluate.train_rows({"gnn-seed0": None}, {}, tmp_path / "models", logs.append)
    assert kept == {"gnn-seed0": (row / "student.pt").resolve()}
    assert logs == ["[evaluate] 1 students kept from the interrupted attempt: gnn-seed0"]


def test_int8_row_is_compared_with_the_student_it_was_made_from():
    """The int8 row quantises the first seed's student: its interval is against that student, not against
    the mean over seeds (a strong first seed would otherwise make quantisation look like a gain)."""
    import numpy as np

    first = np.array([1, 1, 1, 1, 0, 0, 1, 1], bool)
    others = np.array([0, 0, 1, 0, 0, 0, 1, 0], bool)
    correct = {"distilled": np.stack([first, others, others]), "distilled_int8": first[None],
               "no_bridge": first[None]}
    by = {c["row"]: c for c in evaluate.differences(correct, 200, 0)}
    assert by["distilled_int8"]["difference"] == 0 and by["distilled_int8"]["ci95"] == [0, 0]
    assert by["no_bridge"]["difference"] > 0.2  # a retrained row is compared with the mean over seeds
    assert "(the student it was made from)" in evaluate.markdown([], list(by.values()))


def test_pair_scores_get_paired_spearman_intervals():
    """Similarity scores have no per-pair correctness: the interval resamples the test pairs and
    recomputes each row's Spearman (mean over its seeds), checked against scipy on the full set."""
    import numpy as np
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    gold = rng.random(300)
    good = np.stack([gold + rng.normal(0, 0.2, 300) for _ in range(3)])  # three seeds of a good model
    weak = (gold + rng.normal(0, 1.0, 300))[None]
    scores = {"distilled": good, "model2vec": weak, "bow": weak + rng.normal(0, 1e-3, 300)}
    by = {c["baseline"]: c for c in evaluate.differences(scores, 300, 0, rank_gold=gold)
          if c["row"] == "distilled"}
    want = np.mean([spearmanr(g, gold).statistic for g in good]) - spearmanr(weak[0], gold).statistic
    assert abs(by["model2vec"]["difference"] - want) < 1e-9 and by["model2vec"]["metric"] == "spearman"
    low, high = by["model2vec"]["ci95"]
    assert 0 < low < want < high  # clearly better: the interval excludes 0
    same = evaluate.differences({"distilled": weak, "bow": weak}, 100, 0, rank_gold=gold)[0]
    assert same["difference"] == 0 and same["ci95"] == [0, 0]
    assert "Spearman differences on the test split" in evaluate.markdown([], list(by.values()), headline="spearman")
