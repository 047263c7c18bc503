"""How Ray Train hands dataset shards to workers: equal shards for training, every row for inference.

Ray Train's default ``DataConfig`` splits with ``equal=True``, which drops up to N-1 rows so that
every worker gets the same count. Training wants that (data-parallel steps stay in lock step);
inference and validation must see every document exactly once, so those datasets split unequally.
"""
from __future__ import annotations


def split_config(equal: tuple[str, ...] = ()):
    import ray.train

    class Split(ray.train.DataConfig):
        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            out = [{} for _ in range(world_size)]
            for name, ds in datasets.items():
                ds = ds.copy(ds)
                ds.context.execution_options = self._resolve_execution_options(name)
                for i, part in enumerate(ds.streaming_split(world_size, equal=name in equal)):
                    out[i][name] = part
            return out

    return Split()
