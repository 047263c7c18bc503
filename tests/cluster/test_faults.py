"""Fault injection, for real: worker nodes of a multi-node Ray cluster are killed in the middle of
the graph stage and of distillation (Ray's own ``ray.cluster_utils.Cluster``: a head and worker
nodes, each with its own raylet, on this machine), and the driver of `tgd` is SIGKILLed in the
middle of teacher-finetune and of distill and the command re-run.

What must hold afterwards: the graph stage's output has every accepted row exactly once; a killed
training node makes Ray Train restart the workers from the latest checkpoint and the run ends with
the same history as an uninterrupted one; a re-run after a killed driver continues from the last
epoch checkpoint (nothing before it is redone) and finishes every epoch exactly once.
"""
from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.fixtures.driver_process import kill_driver, run_to_end, start_tgd, wait_for
from tests.fixtures.teacher_fixtures import review_corpus, tiny_bert

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]


# ---------------------------------------------------------------- killed worker nodes
@pytest.fixture(scope="module")
def cluster():
    """A head (1 CPU) and two worker nodes (1 CPU each); this test process is the driver. The
    session's local Ray is put back afterwards (other tests share it)."""
    import ray
    from ray.cluster_utils import Cluster

    had_local = ray.is_initialized()
    ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(2):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield c
    ray.shutdown()
    c.shutdown()
    if had_local:
        ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)


def _worker_nodes(c):
    return [n for n in c.list_all_nodes() if n is not c.head_node]


def _kill_node_running(c, class_name: str):
    """SIGKILL the raylet of a worker node (not the head) that hosts a live actor of ``class_name``,
    then add a fresh node in its place, as an autoscaler or KubeRay would."""
    import ray

    hosts = {a["Address"]["NodeID"] for a in ray._private.state.actors().values()
             if class_name in a.get("ActorClassName", "") and a["State"] == "ALIVE"}
    workers = _worker_nodes(c)  # prefer a node with a live actor (none: the actors sit on the head or are between tasks)
    victim = next((n for n in workers if n.node_id in hosts), workers[0])
    c.remove_node(victim, allow_graceful=False)
    c.add_node(num_cpus=1)
    return victim.node_id


def _in_thread(fn):
    """Run ``fn`` in a thread (the main thread injects the fault: adding a node needs it)."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # re-raised in the test
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    return t, box


def test_graph_stage_completes_with_every_row_once_after_a_worker_node_is_killed(cluster, tmp_path):
    from tgd.schema import DOCUMENTS, GRAPHS, read_table
    from tgd.stages import ensure

    words = "the film was great and the actors were fine but the story dragged in the middle of a long night".split()
    src = tmp_path / "corpus.jsonl"
    rng = random.Random(0)  # 600 distinct documents (ingest drops duplicates) in ~30 shards
    src.write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(40)) + ".",
                                       "label": "a" if i % 2 else "b"}) + "\n" for i in range(600)))
    cfg = make_config(tmp_path, data={"source": str(src), "shard_words": 800, "labels": ["a", "b"]},
                      ray={"num_workers": 2, "address": cluster.address})
    ensure(cfg, "ingest", log=lambda _: None)
    out = tmp_path / "run" / "graphs"
    shards = len(list((tmp_path / "run" / "ingest" / "documents").glob("part-*.parquet")))
    t, box = _in_thread(lambda: ensure(cfg, "graphs", log=lambda _: None))
    wait_for(lambda: len(list(out.glob("part-*.parquet"))) >= 3 or not t.is_alive(), "the first graph shards")
    assert t.is_alive(), box.get("error")
    done_before = len(list(out.glob("part-*.parquet")))
    _kill_node_running(cluster, "ShardGraphWorker")
    t.join()
    assert "error" not in box, box.get("error")
    assert done_before < shards  # the node died with shards still to build
    m = box["result"]
    docs = read_table(tmp_path / "run" / "ingest" / "documents", DOCUMENTS).column("id").to_pylist()
    graphs = read_table(out, GRAPHS).column("id").to_pylist()
    assert m["output_rows"] == m["input_rows"] == len(docs) == 600
    assert sorted(graphs) == sorted(docs) and len(set(graphs)) == len(graphs)  # each accepted row exactly once
    assert not list(out.glob("*.tmp"))


def test_distill_restarts_from_its_checkpoint_after_a_training_node_is_killed(cluster, tmp_path):
    from tests.fixtures.student_data import make_run
    from trainers.distill.loop import train_on_ray

    d = {"epochs_align": 2, "epochs_fusion": 2, "epochs_adaptive": 2, "batch_size": 16, "node_budget": 16,
         "pace_epochs": 2, "max_failures": 1}
    cfg = make_config(tmp_path, student={"hidden": 32, "heads": 2, "pos_dim": 8, "vocab_min_count": 1}, distill=d,
                      ray={"num_workers": 2, "address": cluster.address})
    make_run(cfg, n_docs=200)
    clean = train_on_ray(cfg, tmp_path / "clean")

    out = tmp_path / "killed"
    checkpoints = lambda: [json.loads(f.read_text())["epoch"] for f in (out / "ray").glob("*/checkpoint_*/epoch.json")]
    t, box = _in_thread(lambda: train_on_ray(cfg, out))
    wait_for(lambda: checkpoints() or not t.is_alive(), "the first distill checkpoint")
    assert t.is_alive(), box.get("error")
    _kill_node_running(cluster, "RayTrainWorker")
    killed_after = max(checkpoints())
    t.join()
    assert "error" not in box, box.get("error")
    assert killed_after < 5  # the node died before the last epoch
    hist, ref = box["result"]["history"], clean["history"]
    assert [h["epoch"] for h in hist] == [h["epoch"] for h in ref] == list(range(6))  # every epoch once
    for h, r in zip(hist, ref):  # same result as the uninterrupted run
        assert h["train_docs"] == r["train_docs"] and h["stage"] == r["stage"]
        assert h["loss"] == pytest.approx(r["loss"], rel=1e-3, abs=1e-4)
        assert h["val_accuracy"] == pytest.approx(r["val_accuracy"], abs=0.03)


# ---------------------------------------------------------------- killed drivers
def _finetune_snapshot(run: Path) -> list[dict] | None:
    """The validation rounds of the newest checkpoint Ray Train's run snapshot of teacher-finetune
    records (what a re-run resumes from); one learning rate, so one training call's run."""
    for snap in (run / "teacher-finetune" / "_ray").glob("*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snap.read_text()).get("latest_checkpoint_result")
            return json.loads((snap.parent / latest["checkpoint_dir_name"] / "history.json").read_text())
        except (OSError, ValueError, TypeError, KeyError, IndexError):
            return None
    return None


def test_killed_driver_resumes_teacher_finetune_and_distill_from_their_checkpoints(tmp_path):
    run = tmp_path / "run"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({
        "run_dir": str(run),
        "data": {"source": str(review_corpus(tmp_path / "reviews.jsonl", n=100)), "labels": ["fresh", "rotten"],
                 "split_fractions": [0.6, 0.2, 0.2]},
        "ray": {"num_workers": 2},
        "transfer": {"copies": 0},
        "teacher": {"model": str(tiny_bert(tmp_path / "teacher")), "epochs": 4, "min_steps": 1, "batch_size": 8,
                    "lr": 0.003, "patience": None,
                    "max_length": 24, "stride": 4, "max_windows": 4, "state_dim": 8},
        "student": {"hidden": 32, "heads": 2, "pos_dim": 8},
        "distill": {"epochs_align": 2, "epochs_fusion": 2, "epochs_adaptive": 2, "batch_size": 16},
    }))
    logs = [tmp_path / f"tgd-{i}.log" for i in range(3)]

    # 1. Kill the driver once teacher-finetune has checkpointed a validation round, before it finishes.
    proc = start_tgd(["distill", str(cfg)], logs[0])
    try:
        wait_for(lambda: _finetune_snapshot(run) is not None or proc.poll() is not None,
                  "the first teacher-finetune checkpoint")
    finally:
        kill_driver(proc)
    before = _finetune_snapshot(run)  # what a re-run resumes from
    assert before is not None and before[-1]["round"] < 7, logs[0].read_text()[-3000:]
    assert not (run / "teacher-finetune" / "manifest.json").exists()
    killed_step = before[-1]["step"]

    # 2. Re-run: teacher-finetune resumes; kill again once distill has checkpointed an epoch.
    proc = start_tgd(["distill", str(cfg)], logs[1])
    distill_epochs = lambda: [json.loads(f.read_text())["epoch"] for f in (run / "distill").glob("lr-*/ray/*/checkpoint_*/epoch.json")
                              if (f.parent / "state.pt").is_file()]
    try:
        wait_for(lambda: distill_epochs() or proc.poll() is not None, "the first distill checkpoint")
    finally:
        kill_driver(proc)
    text = logs[1].read_text()
    assert f"[teacher-finetune] lr 0.003: continuing from the checkpoint of step {killed_step}" in text, text[-3000:]
    ft = json.loads((run / "teacher-finetune" / "manifest.json").read_text())
    rounds = -(-ft["recipe"]["steps"] // ft["recipe"]["round_steps"])
    next_step = killed_step + ft["recipe"]["round_steps"]
    assert f"[teacher-finetune] lr 0.003 step {next_step}/{ft['recipe']['steps']} validated: train loss" in text
    assert [h["round"] for h in ft["history"]] == list(range(rounds))  # every round once, none redone
    done = {h["round"]: h for h in before}
    same = lambda h: {k: v for k, v in h.items() if k not in ("seconds", "timing")}  # noqa: E731
    assert all(same(ft["history"][r]) == same(done[r]) for r in done)  # the rounds before the kill kept as they were
    # The log line above comes after DeepSpeed loaded the checkpoint (weights, optimizer, LR schedule);
    # the whole run, interrupted, still lowers the loss (single-step losses of the tiny model are too
    # noisy to compare the first step after the kill with the first step of all).
    assert ft["history"][-1]["train_loss"] < ft["history"][0]["first_loss"]
    assert (run / "teacher-finetune" / "model" / "config.json").is_file()
    assert not (run / "distill" / "manifest.json").exists()
    distill_killed_at = max(distill_epochs())
    assert distill_killed_at < 5

    # 3. Re-run: everything before distill is up to date; distill resumes at its checkpoint.
    text = run_to_end(["distill", str(cfg)], logs[2])
    for stage in ("ingest", "graphs", "teacher-finetune", "teacher-logits"):
        assert f"[{stage}] up to date" in text
    assert "[distill] found checkpoint" in text
    assert (run / "distill" / "manifest.json").is_file()
    history = json.loads((run / "distill" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(6))  # every epoch once
