"""DeepSpeed inside a Ray Train worker: accelerator choice, process group reuse, ZeRO configs.

Why a module of its own: DeepSpeed picks its accelerator when first imported, so the environment
must be set before any ``import deepspeed`` in the worker process; and on CPU its first
``init_distributed`` JIT-compiles a shared-memory comm op (~2.5 min) that gloo does not need.
"""
from __future__ import annotations

import os
import sys
from typing import Any


def setup_worker(use_gpu: bool, threads: int | None = None):
    """Prepare this Ray Train worker for DeepSpeed; returns the torch device to use.

    Reuses the process group Ray Train created (gloo on CPU, NCCL on GPU).
    """
    import warnings

    import torch

    # DeepSpeed 0.19 still calls torch's deprecated collective names; one warning per call floods the logs.
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.\w+` is deprecated", category=FutureWarning)
    if not use_gpu:
        os.environ["DS_ACCELERATOR"] = "cpu"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        torch.set_num_threads(max(int(threads), 1))
    import deepspeed
    import deepspeed.comm.torch  # noqa: F401  (the module object is patched through sys.modules below)

    if not use_gpu:
        # `from deepspeed.comm import torch as x` would bind another name; patch the live module.
        sys.modules["deepspeed.comm.torch"].build_shm_op = lambda *a, **k: None
    deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo")
    import ray.train.torch

    return ray.train.torch.get_device() if use_gpu else torch.device("cpu")


def zero3_inference_config(micro_batch: int) -> dict[str, Any]:
    """Parameters partitioned across workers (each holds 1/N); gathered layer by layer in forward."""
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "fp16": {"enabled": False},
        "bf16": {"enabled": False},
    }


def training_config(micro_batch: int, stage: int, lr: float, weight_decay: float, total_steps: int,
                    warmup_steps: int) -> dict[str, Any]:
    """Data-parallel fine-tuning with ZeRO ``stage``; torch's AdamW (no compiled fused op on CPU)."""
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "optimizer": {"type": "AdamW", "params": {"lr": lr, "weight_decay": weight_decay, "torch_adam": True}},
        "scheduler": {"type": "WarmupDecayLR", "params": {
            "total_num_steps": max(total_steps, warmup_steps + 1, 2), "warmup_min_lr": 0.0, "warmup_max_lr": lr,
            "warmup_num_steps": max(warmup_steps, 1), "warmup_type": "linear"}},
        "zero_optimization": {"stage": stage},
        "fp16": {"enabled": False},
        "bf16": {"enabled": False},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process (MiB); what ZeRO-3 sharding is meant to reduce."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
