"""Shared fixtures: one real local Ray instance per test session, small real corpora on disk."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray, started once; stages reuse it through ensure_ray. Sized like ensure_ray sizes a
    local instance: 2 training workers + 1 CPU for the Ray Data tasks that feed them (with none
    spare, Ray Data cannot schedule its read tasks while the workers hold every CPU)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def graph_builder():
    """The real spaCy pipeline, loaded once for the session."""
    from pipeline.graph_builder import GraphBuilder
    from tgd.config import GraphConfig

    return GraphBuilder(GraphConfig())


def make_config(tmp_path, **sections):
    """A RunConfig rooted in tmp_path; ``sections`` are dicts merged over the defaults."""
    from tgd.config import RunConfig

    raw = {"run_dir": str(tmp_path / "run"), "ray": {"num_workers": 2}}
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    return RunConfig.model_validate(raw)
