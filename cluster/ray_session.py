"""Connect to the configured Ray cluster, or start a local one (laptop default)."""
from __future__ import annotations

import os

from tgd.config import RayConfig


def ensure_ray(cfg: RayConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray Train v2 re-routes worker print() to a logger that also echoes to stdout, so every
    # progress line reached the console twice; plain print (forwarded by log_to_driver) shows once.
    # Ray Train propagates this variable from the driver to its workers.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    address = cfg.address or os.environ.get("RAY_ADDRESS")  # set inside a Ray Job
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # A local instance sized to the largest stage's workers x CPUs (ray.stages over ray.*) + 1 CPU
        # for the Ray Data tasks that feed them (Ray Data cannot schedule reads while training workers
        # hold every CPU), or to the machine when that is more. GPUs are detected by Ray. The dashboard
        # serves the state API that Ray Train's placement-group cleaner polls (and is handy to watch).
        ray.init(address="local", num_cpus=local_num_cpus(cfg), include_dashboard=True, log_to_driver=True)


def local_num_cpus(cfg: RayConfig) -> int:
    """CPUs of a local Ray instance for this config: every stage's workers fit, one CPU to spare."""
    return max(cfg.local_cpus(), os.cpu_count() or 1)
