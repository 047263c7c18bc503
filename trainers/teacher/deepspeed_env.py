"""DeepSpeed inside a Ray Train worker: accelerator choice, process group reuse, ZeRO configs, and
the memory sizing (checkpoint size, free device memory) that picks the ZeRO stage / parallelism.

Why a module of its own: DeepSpeed picks its accelerator when first imported, so the environment
must be set before any ``import deepspeed`` in the worker process; and on CPU its first
``init_distributed`` JIT-compiles a shared-memory comm op (~2.5 min) that gloo does not need.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
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


def checkpoint_bytes(path: Path) -> int:
    """Bytes of the checkpoint's weight files: what one worker must hold to replicate the teacher."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.suffix in (".safetensors", ".bin", ".pt", ".pth"))


def free_device_bytes(use_gpu: bool, device) -> float:
    """Free memory of this worker's device: the GPU's, or this node's RAM shared by its local workers."""
    if use_gpu:
        import torch

        return float(torch.cuda.mem_get_info(device)[0])
    import psutil
    import ray.train

    return psutil.virtual_memory().available / max(ray.train.get_context().get_local_world_size(), 1)


def checkpoint_parameters(path: Path) -> int:
    """Parameter count of a checkpoint without loading it: safetensors headers (element counts), else
    the weight files' bytes / 4 (a ``.bin`` pickle has no cheap header)."""
    import json
    import struct

    n = 0
    for f in sorted(Path(path).iterdir()):
        if f.suffix == ".safetensors":
            with f.open("rb") as fh:
                header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
            n += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
        elif f.suffix in (".bin", ".pt", ".pth"):
            n += f.stat().st_size // 4
    return n


# fp32 training with AdamW: weights 4 + gradients 4 + two moments 8 bytes per parameter. ZeRO-2 keeps
# whole weights on every worker and partitions gradients and moments; ZeRO-3 partitions all of it.
TRAIN_BYTES = {0: lambda p, n: 16 * p, 2: lambda p, n: 4 * p + 12 * p / n, 3: lambda p, n: 16 * p / n}


def choose_zero_stage(requested: int | str, params: int, free_bytes: float, workers: int,
                      safety: float) -> tuple[int, str]:
    """-> (ZeRO stage, why) for fine-tuning on one worker.

    ``auto``: 0 (plain data parallel: one gradient all-reduce per step, nothing gathered back) when
    parameters + gradients + AdamW state x ``safety`` fit the worker's free memory; else 2, else 3.
    """
    if requested != "auto":
        return int(requested), f"teacher.zero_stage={requested}"
    mib = 2**20
    for stage in (0, 2, 3):
        need = TRAIN_BYTES[stage](params, workers) * safety
        if need <= free_bytes or stage == 3:
            fits = "fit" if need <= free_bytes else "exceed (the largest saving there is)"
            return stage, (f"auto: {params / 1e6:,.1f} M parameters need {need / mib:,.0f} MiB per worker "
                           f"with ZeRO-{stage} "
                           f"(fp32 weights, gradients and AdamW moments x {safety:g}), which {fits} the worker's "
                           f"{free_bytes / mib:,.0f} MiB of free device memory"
                           + ("" if stage == 0 else f"; ZeRO-{stage - 1 if stage == 3 else 0} would not"))
    raise AssertionError("unreachable")


def training_config(micro_batch: int, stage: int, lr: float, weight_decay: float, total_steps: int,
                    warmup_steps: int) -> dict[str, Any]:
    """Data-parallel fine-tuning with ZeRO ``stage`` (0 = DeepSpeed's plain data parallel: one
    gradient all-reduce per step); torch's AdamW (no compiled fused op on CPU)."""
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        # fused: torch's one-kernel AdamW (CPU and CUDA), several times faster than its per-tensor default
        "optimizer": {"type": "AdamW", "params": {"lr": lr, "weight_decay": weight_decay, "torch_adam": True,
                                                  "fused": True}},
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
