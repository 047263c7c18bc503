"""`tgd predict MODEL_DIR --input URI --output URI --ray`: batch prediction as a Ray Data pipeline.

Parquet in, Parquet out, through pyarrow filesystems (local paths, ``file://``, ``s3://``,
``gs://``), for corpora larger than memory: Ray Data streams the input; an actor pool holds the
spaCy pipeline and the exported student once per actor (``PredictActor``, the same ``Predictor``
as every other path); the driver writes one output shard per input file, ``part-00000.parquet``
for the first input file and so on, atomically (temporary name, then rename). A re-run skips
the shards that exist, so an interrupted job resumes where it stopped.

The rows carry the task's fields as `tgd predict` reads them (the text column; ``tokens``, a list
column, for the token task; ``text_b`` for pairs; ``columns`` renames the last two, as
``--tokens-column`` / ``--text-b-column`` do). Every input row gives one output row, in the
input order of its file: ``row`` (index in its input file), ``id`` (when the input has the id
column), ``record`` (the prediction record as JSON, the same as a `tgd predict` JSONL line without
the id) and ``error`` (null, or why the row could not be predicted).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from serving.rows import EXTRA_COLUMNS

OUTPUT_SCHEMA_FIELDS = ("row", "id", "record", "error")


def _filesystem(uri: str):
    """(pyarrow filesystem, path) for a URI or a local path (relative paths allowed)."""
    from pyarrow import fs

    if "://" in uri:
        return fs.FileSystem.from_uri(uri)
    return fs.LocalFileSystem(), str(Path(uri).resolve())


def _input_files(filesystem, path: str) -> list[str]:
    from pyarrow import fs

    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return [path]
    if info.type != fs.FileType.Directory:
        raise FileNotFoundError(f"--input {path}: no such file or directory")
    files = sorted(i.path for i in filesystem.get_file_info(fs.FileSelector(path, recursive=True))
                   if i.type == fs.FileType.File and i.path.endswith(".parquet"))
    if not files:
        raise FileNotFoundError(f"--input {path}: no .parquet files in it")
    return files


class _RowGroupReader:
    """Reads the row groups named by its input rows (``path``, ``row_group``) -> the text and id
    columns plus ``path``."""

    def __init__(self, input_uri: str, columns: list[str]):
        self.fs = _filesystem(input_uri)[0]
        self.columns = columns

    def __call__(self, batch: pa.Table) -> pa.Table:
        tables = []
        for item in batch.to_pylist():
            with self.fs.open_input_file(item["path"]) as fh:
                t = pq.ParquetFile(fh).read_row_group(item["row_group"], columns=self.columns)
            tables.append(t.append_column("path", pa.array([item["path"]] * t.num_rows, pa.string())))
        return pa.concat_tables(tables)


class PredictActor:
    """One per Ray actor: loads the package (checksums verified) and spaCy once, then predicts
    batches of rows. ``threads``: torch / ONNX Runtime threads, one per CPU the actor holds."""

    def __init__(self, model_dir: str, text_column: str, id_column: str, batch_size: int, threads: int,
                 node_budget: int | None = -1, max_chars: int | None = -1, columns: dict[str, str] | None = None,
                 defer_below: float | None = None):
        import torch

        from serving.export import load_package

        torch.set_num_threads(threads)
        self.predictor = load_package(Path(model_dir), node_budget=node_budget, max_chars=max_chars, threads=threads,
                                      defer_below=defer_below)
        self.text_column, self.id_column, self.batch_size = text_column, id_column, batch_size
        self.columns = dict(EXTRA_COLUMNS if columns is None else columns)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        inputs = [{"text": r.get(self.text_column), "id": r.get(self.id_column),
                   **{k: r[c] for k, c in self.columns.items() if c in r}} for r in rows]
        records = self.predictor.predict_records(inputs, batch_size=self.batch_size)
        errors = [r.get("error") for r in records]
        body = [None if e else json.dumps({k: v for k, v in r.items() if k != "id"}) for r, e in zip(records, errors)]
        cols: dict[str, Any] = {"path": batch.column("path"), "record": pa.array(body, pa.string()),
                                "error": pa.array(errors, pa.string())}
        if self.id_column in batch.column_names:
            cols["id"] = batch.column(self.id_column)
        return pa.table(cols)


def predict_ray(model_dir: Path, input_uri: str, output_uri: str, workers: int, batch_size: int,
                text_column: str = "text", id_column: str = "id", cpus_per_worker: float = 1.0,
                node_budget: int | None = -1, max_chars: int | None = -1, columns: dict[str, str] | None = None,
                log=print, defer_below: float | None = None) -> dict[str, Any]:
    """Predict every row of the Parquet input into Parquet shards at ``output_uri``; returns counts.
    ``columns``: task field -> its column (default ``EXTRA_COLUMNS``: ``tokens``, ``text_b``).
    ``defer_below``: the cascade (``serving.cascade``), in every actor."""
    import ray

    from serving.export import verify

    meta = verify(model_dir)  # refuse a broken package before any actor starts
    if defer_below is not None and not meta.get("teacher_package"):
        raise ValueError(f"--defer-below: {model_dir} carries no teacher; export it with `tgd export CONFIG ... "
                         "--with-teacher`")
    columns = dict(EXTRA_COLUMNS if columns is None else columns)
    fs_in, in_path = _filesystem(input_uri)
    fs_out, out_path = _filesystem(output_uri)
    files = _input_files(fs_in, in_path)
    fs_out.create_dir(out_path, recursive=True)
    shard = {f: f"{out_path}/part-{i:05d}.parquet" for i, f in enumerate(files)}
    from pyarrow import fs as pafs

    done = {f for f in files if fs_out.get_file_info(shard[f]).type == pafs.FileType.File}
    todo = [f for f in files if f not in done]
    log(f"[predict] {len(files)} input files, {len(done)} shards already written (skipped), {len(todo)} to predict")
    if not todo:
        return {"files": len(files), "skipped_shards": len(done), "rows": 0, "errors": 0, "seconds": 0.0}
    expected, pieces = {}, []
    for f in todo:
        with fs_in.open_input_file(f) as fh:
            pf = pq.ParquetFile(fh)
            expected[f] = pf.metadata.num_rows
            names = pf.schema_arrow.names
            pieces += [{"path": f, "row_group": g} for g in range(pf.metadata.num_row_groups)]
        if text_column not in names and columns.get("tokens") not in names:
            raise ValueError(f"{f}: no column {text_column!r} (columns: {', '.join(names)}; --text-column)")
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=True,
                 **({} if address else {"num_cpus": max(int(workers * cpus_per_worker) + 1, os.cpu_count() or 1)}))
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # rows of a file arrive in order: shards complete one by one
    cols = list(dict.fromkeys(c for c in (text_column, id_column, *columns.values()) if c in names))
    # The unit of work is one Parquet row group, read by a task of its own. (ray.data.read_parquet
    # sizes its blocks by bytes, and text is small in bytes: 8 files of 480 rows became one block,
    # so one actor did all the work and 2 workers were no faster than 1.)
    ds = ray.data.from_items(pieces, override_num_blocks=len(pieces))
    ds = ds.map_batches(_RowGroupReader, fn_constructor_args=(input_uri, cols), batch_size=1, batch_format="pyarrow",
                        concurrency=1, num_cpus=0.25)
    threads = max(1, int(cpus_per_worker))
    ds = ds.map_batches(PredictActor, batch_format="pyarrow", batch_size=batch_size, concurrency=workers,
                        num_cpus=cpus_per_worker,
                        fn_constructor_kwargs={"model_dir": str(Path(model_dir).resolve()), "text_column": text_column,
                                               "id_column": id_column, "batch_size": batch_size, "threads": threads,
                                               "node_budget": node_budget, "max_chars": max_chars,
                                               "columns": columns, "defer_below": defer_below})
    pending: dict[str, list[pa.Table]] = {}
    got = {f: 0 for f in todo}
    t0, rows, errors, written, first = time.time(), 0, 0, 0, None
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        if first is None:  # the first predictions: actors are up (start-up = spaCy + package load)
            first = (time.time(), batch.num_rows)
        for path in batch.column("path").unique().to_pylist():
            f = path
            part = batch.filter(pc.equal(batch.column("path"), path)).drop(["path"])
            pending.setdefault(f, []).append(part)
            got[f] += part.num_rows
            if got[f] == expected[f]:
                table = pa.concat_tables(pending.pop(f))
                table = table.add_column(0, "row", pa.array(range(table.num_rows), pa.int64()))
                table = table.select([c for c in OUTPUT_SCHEMA_FIELDS if c in table.column_names])
                tmp = shard[f] + ".tmp"
                with fs_out.open_output_stream(tmp) as out:
                    pq.write_table(table, out)
                fs_out.move(tmp, shard[f])
                n_err = table.num_rows - table.column("error").null_count
                rows, errors, written = rows + table.num_rows, errors + n_err, written + 1
                log(f"[predict] shard {written}/{len(todo)} {shard[f]}: {table.num_rows:,} rows ({n_err} errors), "
                    f"{rows / (time.time() - t0):,.1f} docs/s so far")
    missing = [f for f in todo if got[f] != expected[f]]
    if missing:
        raise RuntimeError(f"rows lost for {missing}: got {[got[f] for f in missing]}, expected "
                           f"{[expected[f] for f in missing]}; re-run to resume")
    end = time.time()
    seconds = end - t0
    return {"files": len(files), "skipped_shards": len(done), "rows": rows, "errors": errors,
            "seconds": round(seconds, 2), "docs_per_s": round(rows / max(seconds, 1e-9), 1),
            "first_output_s": round(first[0] - t0, 2) if first else None}
