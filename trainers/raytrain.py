"""The one place that builds a Ray Train ``TorchTrainer`` for every training stage.

teacher-finetune, teacher-logits and distill differ in their worker loop, datasets and checkpoint
policy; scaling (workers, CPUs per worker, GPU), storage and failure handling come from the run
config here, so a cluster change is a config change in one place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def make_trainer(cfg, loop: Callable[[dict], None], loop_config: dict[str, Any], *, name: str, storage: Path,
                 datasets: dict[str, Any], dataset_config, checkpoint_config=None, max_failures: int = 0):
    """A ``TorchTrainer`` running ``loop(loop_config)`` on ``cfg.ray.num_workers`` workers.

    ``storage``: where Ray Train keeps checkpoints and results (resolved to an absolute path: Ray
    workers have their own working directory). ``max_failures``: worker failures survived by
    restarting from the latest checkpoint (``FailureConfig``)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        loop, train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.ray.num_workers, use_gpu=cfg.ray.use_gpu,
                                               resources_per_worker={"CPU": cfg.ray.cpus_per_worker}),
        run_config=ray.train.RunConfig(name=name, storage_path=str(Path(storage).resolve()),
                                       checkpoint_config=checkpoint_config,
                                       failure_config=ray.train.FailureConfig(max_failures=max_failures)),
        datasets=datasets, dataset_config=dataset_config)
