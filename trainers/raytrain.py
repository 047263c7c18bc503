"""The one place that builds a Ray Train ``TorchTrainer`` for every training stage.

teacher-finetune, teacher-logits and distill differ in their worker loop, datasets and checkpoint
policy; scaling (workers, CPUs and GPUs per worker), storage and failure handling come from the run
config here, so a cluster change is a config change in one place: ``ray.stages.<stage>`` over the
``ray.*`` defaults (see ``RayConfig.resources``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def scaling_config(cfg, stage: str | None = None):
    """Ray Train's ``ScalingConfig`` for ``stage`` (None: the ``ray.*`` defaults)."""
    import ray.train

    r = cfg.resources(stage)
    per_worker = {"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if r.use_gpu else {})}
    return ray.train.ScalingConfig(num_workers=r.workers, use_gpu=r.use_gpu, resources_per_worker=per_worker)


def make_trainer(cfg, loop: Callable[[dict], None], loop_config: dict[str, Any], *, name: str, storage: Path,
                 datasets: dict[str, Any], dataset_config, checkpoint_config=None, max_failures: int = 0,
                 stage: str | None = None):
    """A ``TorchTrainer`` running ``loop(loop_config)`` on the workers ``stage`` asks for.

    ``stage``: ``teacher-finetune``, ``teacher-logits`` or ``distill`` (evaluate and tune train
    students: ``distill``); its ``ray.stages`` entry over the ``ray.*`` defaults; None: ``ray.*``.
    ``storage``: where Ray Train keeps checkpoints and results (resolved to an absolute path: Ray
    workers have their own working directory). ``max_failures``: worker failures survived by
    restarting from the latest checkpoint (``FailureConfig``)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        loop, train_loop_config=loop_config, scaling_config=scaling_config(cfg, stage),
        run_config=ray.train.RunConfig(name=name, storage_path=str(Path(storage).resolve()),
                                       checkpoint_config=checkpoint_config,
                                       failure_config=ray.train.FailureConfig(max_failures=max_failures)),
        datasets=datasets, dataset_config=dataset_config)
