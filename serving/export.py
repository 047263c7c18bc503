"""`tgd export`: a trained student as a self-contained package, and loading one back.

A package directory holds:
- ``encoder.pt`` + ``head.pt`` (TorchScript) or ``encoder.onnx`` + ``head.onnx`` (ONNX): the
  student split in two so that the predictor can run decomposed prediction on exported models
  too (node states per part, then one readout over the parts' core nodes). Encoder: (x_tok,
  x_pos, edge_index, edge_type, edge_weight) -> node states; head: (node states, batch,
  graphs) -> logits, where ``graphs`` is any tensor with one entry per graph (it carries the
  number of graphs through tracing); the token task's head reads only the node states and gives
  per-node logits, the pair head also reads ``side`` (0: side A, 1: side B per node) and gives per
  pair [similarity, label logits...]. package.json's ``head_inputs`` names what the head reads.
- ``encoding.json``: vocabulary, POS and relation lists, label names, edge kinds.
- ``package.json``: task, format, quantisation, graph-builder settings, spaCy pipeline name and
  version, the teacher it was distilled from, evaluate's metrics, node budget and hops.
- ``manifest.json``: sha256 and size of every other file; ``load_package`` refuses a package whose
  files do not match it, naming the file.
- with ``--with-teacher`` (``export(..., with_teacher=True)``): ``teacher/``, the run's fine-tuned
  teacher checkpoint (config, tokenizer, weights; every file in the manifest too), and package.json's
  ``teacher_package`` (its labels and windows), for the cascade (``serving.cascade``:
  ``load_package(..., defer_below=P)``, `tgd predict` / `tgd serve` ``--defer-below P``).

Loading needs neither the run config nor the training code: the model comes from the exported
file; Python only builds the graph (``pipeline.graph_builder``) and encodes it (``GraphEncoding``).

The head file is the student's head in its export form (``trainers.student.heads``: the same
head the PyTorch student runs, with export-friendly pooling). Both formats are traced (``torch.jit.trace`` /
``torch.onnx.export(dynamo=False)``): the student has no data-dependent control flow, and the
traced graphs are checked on graphs of other sizes than the example.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from serving.cascade import CascadePredictor
from serving.teacher import TeacherError, finetuned_teacher, load_packaged_teacher, package_teacher
from tgd.errors import UserError

PACKAGE_VERSION = 1
FORMATS = ("torchscript", "onnx")
MODEL_FILES = {"torchscript": ("encoder.pt", "head.pt"), "onnx": ("encoder.onnx", "head.onnx")}
ENCODER_INPUTS = ("x_tok", "x_pos", "edge_index", "edge_type", "edge_weight")
HEAD_INPUTS = ("h", "batch", "graphs")


class PackageError(UserError, RuntimeError):
    """A package that cannot be exported or loaded (missing, tampered or truncated file, ...)."""


# ---------------------------------------------------------------------------------------- modules
class _ExportEncoder(nn.Module):
    """The student's node states from plain tensors (eval mode: dropout is the identity)."""

    def __init__(self, student):
        super().__init__()
        self.word, self.pos, self.inp, self.layers = student.word, student.pos, student.inp, student.encoder.layers
        self.static = student.static

    def forward(self, x_tok, x_pos, edge_index, edge_type, edge_weight):
        h = self.inp(torch.cat([self.word(x_tok), self.pos(x_pos)], -1))
        for layer in self.layers:
            h = layer(h, edge_index, edge_type, edge_weight)
        return h if self.static is None else torch.cat([h, self.static(x_tok)], -1)  # as Student.node_states


HEAD_AXES = {"h": {0: "nodes"}, "batch": {0: "nodes"}, "graphs": {0: "graphs"}, "side": {0: "nodes"}}
OUTPUT_AXES = {"graph": {0: "graphs"}, "node": {0: "nodes"}, "pair": {0: "graphs"}}


@contextlib.contextmanager
def _onnx_friendly_softmax():
    """While exporting to ONNX, PyG's ``softmax`` (TransformerConv's attention) gets a max-scatter
    that exports correctly. PyG switches its max-scatter to a special path under ONNX export, and
    that path gives wrong node states with this torch (measured: up to 1.2 off in the encoder's
    output; ONNX Runtime also refused a single layer with "Incompatible dimensions"). The
    replacement is the plain ``scatter_reduce(amax)`` from a -max-float start, the same values."""
    import torch_geometric.utils._softmax as pyg_softmax

    original = pyg_softmax.scatter

    def scatter(src, index, dim=0, dim_size=None, reduce="sum"):
        if reduce != "max":
            return original(src, index, dim, dim_size=dim_size, reduce=reduce)
        dim = dim + src.dim() if dim < 0 else dim
        size = list(src.shape)
        size[dim] = dim_size
        shape = [1] * src.dim()
        shape[dim] = -1
        idx = index.view(shape).expand_as(src)
        start = src.new_full(size, -torch.finfo(src.dtype).max)
        return start.scatter_reduce(dim, idx, src, "amax", include_self=True)

    pyg_softmax.scatter = scatter
    try:
        yield
    finally:
        pyg_softmax.scatter = original


def _examples(enc, builder, task: str) -> tuple[tuple, dict]:
    """Example inputs for tracing: two real inputs of the task (edges of every kind the encoding
    has), built and encoded by the task adapter -> (encoder args, head feeds but ``h``)."""
    from torch_geometric.data import Batch

    from trainers.tasks import get_task

    adapter = get_task(task)
    rows = [{"text": "The film was a quiet delight, and the cast clearly enjoyed it.",
             "text_b": "A quiet film; the cast enjoyed it."},
            {"text": "I did not like it. Too long.", "text_b": "It was far too long and I did not like it at all."}]
    b = Batch.from_data_list([adapter.encode(enc, g) for g in adapter.build_inputs(builder, rows)])
    side = b.side if "side" in b else torch.zeros(b.num_nodes, dtype=torch.long)
    return (b.x_tok, b.x_pos, b.edge_index, b.edge_type, b.edge_weight), \
        {"batch": b.batch, "graphs": torch.zeros(b.num_graphs), "side": side}


def export_model(student, enc, builder, fmt: str, out: Path,
                 quantize: str | None = None) -> tuple[list[str], list[str]]:
    """Write the two model files of ``fmt`` into ``out``; returns their names and the head's input
    names (after ``h``: ``batch``, ``graphs``, ``side``, as the student's head kind needs)."""
    student = student.eval()
    kind = student.kind
    if quantize == "int8" and fmt == "torchscript":
        from trainers.student.quantize import quantize_int8

        student = quantize_int8(student)  # the model evaluate's distilled_int8 row scores
    head_inputs = student.task_head.export_inputs
    encoder, head = _ExportEncoder(student).eval(), student.task_head.export(student).eval()
    enc_args, feeds = _examples(enc, builder, student.task)
    with torch.no_grad():
        h = encoder(*enc_args)
    head_args = (h, *(feeds[k] for k in head_inputs[1:]))
    names = MODEL_FILES[fmt]
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(encoder, enc_args, check_trace=False), out / names[0])
            torch.jit.save(torch.jit.trace(head, head_args, check_trace=False), out / names[1])
    else:
        axes_e = {"x_tok": {0: "nodes"}, "x_pos": {0: "nodes"}, "edge_index": {1: "edges"}, "edge_type": {0: "edges"},
                  "edge_weight": {0: "edges"}, "h": {0: "nodes"}}
        axes_h = {k: HEAD_AXES[k] for k in head_inputs} | {"logits": OUTPUT_AXES[kind]}
        kw = dict(dynamo=False, opset_version=18, do_constant_folding=True)
        with torch.no_grad(), _onnx_friendly_softmax():
            torch.onnx.export(encoder, enc_args, str(out / names[0]), input_names=list(ENCODER_INPUTS),
                              output_names=["h"], dynamic_axes=axes_e, **kw)
            torch.onnx.export(head, head_args, str(out / names[1]), input_names=list(head_inputs),
                              output_names=["logits"], dynamic_axes=axes_h, **kw)
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            for name in names:
                tmp = out / f"{name}.fp32"
                (out / name).rename(tmp)
                quantize_dynamic(str(tmp), str(out / name), weight_type=QuantType.QInt8)
                tmp.unlink()
    return list(names), list(head_inputs)


# ---------------------------------------------------------------------------------------- package
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _spacy_version(name: str) -> str | None:
    try:
        from spacy.util import get_package_version

        return get_package_version(name)
    except Exception:  # noqa: BLE001 - a pipeline given as a path has no package version
        return None


def export(cfg, fmt: str, out: Path, quantize: str | None = None, log=print,
           with_teacher: bool = False, student_path: Path | None = None,
           lineage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export the distill stage's student of run ``cfg`` as a package in ``out`` (replaced if it
    exists); returns package.json's content plus the size of each file. ``with_teacher``: the run's
    fine-tuned teacher goes into ``out/teacher/`` too (classification, encoder teachers).
    ``student_path``: another student of the run instead (`tgd adapt`'s, with ``cfg`` its graph
    settings), whose package carries ``lineage`` and not evaluate's metrics of the run's student."""
    import spacy

    from pipeline.graph_builder import GraphBuilder
    from tgd.schema import stage_dir
    from trainers.student.checkpoint import load_student

    if fmt not in FORMATS:
        raise PackageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    ckpt = Path(student_path) if student_path is not None else stage_dir(cfg, "distill") / "student.pt"
    if not ckpt.is_file():
        raise PackageError(f"no trained student at {ckpt}: run `tgd run CONFIG` (or `tgd distill CONFIG`) first")
    student, enc, blob = load_student(ckpt)
    if with_teacher:
        try:
            finetuned_teacher(cfg, enc.labels)  # refused before anything is written
        except TeacherError as e:
            raise PackageError(str(e)) from None
    builder = GraphBuilder(cfg.graph)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.time()
    files, head_inputs = export_model(student, enc, builder, fmt, out, quantize)
    (out / "encoding.json").write_text(json.dumps(enc.state()))
    teacher_files, teacher_meta = [], None
    if with_teacher:
        try:
            teacher_files, teacher_meta = package_teacher(cfg, out, enc.labels)
        except TeacherError as e:
            shutil.rmtree(out)  # no half package left behind
            raise PackageError(str(e)) from None
    metrics_path = stage_dir(cfg, "evaluate") / "metrics.json"
    metrics = {}
    if metrics_path.is_file() and student_path is None:
        keep = ("accuracy", "macro_f1", "agreement", "params", "e2e_latency_ms_b1", "e2e_latency_ms_b64")
        metrics = {r["model"]: {k: r[k] for k in keep if k in r} for r in json.loads(metrics_path.read_text())
                   if r["model"] in ("teacher", "distilled", "distilled_decomposed")}
    meta = {
        "package_version": PACKAGE_VERSION, "format": fmt, "quantize": quantize, "task": blob["task"],
        "labels": enc.labels, "model_files": files, "head_inputs": head_inputs, "hops": len(student.encoder.layers),
        "node_budget": cfg.distill.node_budget, "max_chars": cfg.data.max_chars,
        "graph": cfg.graph.model_dump(mode="json"),
        "spacy": {"pipeline": cfg.graph.spacy_model, "pipeline_version": _spacy_version(cfg.graph.spacy_model),
                  "spacy_version": spacy.__version__},
        "teacher": {"model": cfg.teacher.model, "kind": cfg.teacher.kind},
        "student": blob["student"], "best_epoch": blob["extra"].get("best_epoch"),
        "val_accuracy": blob["extra"].get("val_accuracy"), "metrics": metrics,
        "source": {"checkpoint_sha256": sha256_file(ckpt), "run_dir": str(cfg.run_dir)},
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch_version": torch.__version__,
    }
    if teacher_meta:
        meta["teacher_package"] = teacher_meta
    if lineage:
        meta["lineage"] = lineage
    (out / "package.json").write_text(json.dumps(meta, indent=2))
    names = [*files, "encoding.json", "package.json", *teacher_files]
    manifest = {"files": {n: {"sha256": sha256_file(out / n), "bytes": (out / n).stat().st_size} for n in names}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    sizes = {n: v["bytes"] for n, v in manifest["files"].items()}
    log(f"[export] {fmt}{' int8' if quantize else ''} package in {out} ({sum(sizes.values()) / 2**20:.2f} MiB, "
        f"{time.time() - t0:.1f}s)")
    return {**meta, "bytes": sizes}


def verify(pkg: Path) -> dict[str, Any]:
    """Check every file of the package against manifest.json; -> package.json. A missing,
    truncated or changed file is refused with its name."""
    pkg = Path(pkg)
    mpath = pkg / "manifest.json"
    if not mpath.is_file():
        raise PackageError(f"{pkg} is not a student package: no manifest.json (make one with `tgd export`)")
    try:
        files = json.loads(mpath.read_text())["files"]
    except (ValueError, KeyError) as e:
        raise PackageError(f"{mpath}: unreadable manifest ({e})") from None
    for name, want in files.items():
        path = pkg / name
        if not path.is_file():
            raise PackageError(f"package file {path} is missing")
        size = path.stat().st_size
        if size != want["bytes"]:
            raise PackageError(f"package file {path} has {size} bytes, the manifest says {want['bytes']}: "
                               "truncated or changed; re-export the package")
        if sha256_file(path) != want["sha256"]:
            raise PackageError(f"package file {path} does not match its sha256 in manifest.json: tampered or "
                               "corrupted; re-export the package")
    for needed in ("package.json", "encoding.json"):
        if needed not in files:
            raise PackageError(f"package file {needed} is not listed in {mpath}")
    meta = json.loads((pkg / "package.json").read_text())
    if meta.get("package_version") != PACKAGE_VERSION:
        raise PackageError(f"{pkg}/package.json: package version {meta.get('package_version')}, this code reads "
                           f"{PACKAGE_VERSION}; re-export the package")
    return meta


class _TorchScriptRunner:
    def __init__(self, pkg: Path, meta: dict[str, Any]):
        enc_file, head_file = meta["model_files"]
        self.head_inputs = meta.get("head_inputs", HEAD_INPUTS)
        self.encoder = torch.jit.load(str(pkg / enc_file), map_location="cpu").eval()
        self.head = torch.jit.load(str(pkg / head_file), map_location="cpu").eval()

    def node_states(self, d):
        return self.encoder(d.x_tok, d.x_pos, d.edge_index, d.edge_type, d.edge_weight)

    def readout(self, feeds: dict[str, torch.Tensor]):
        return self.head(*(feeds[k] for k in self.head_inputs))


class _OnnxRunner:
    def __init__(self, pkg: Path, meta: dict[str, Any], threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: shape-inference notes on the scatter outputs are noise
        if threads:
            opts.intra_op_num_threads = threads
        enc_file, head_file = meta["model_files"]
        self.encoder = ort.InferenceSession(str(pkg / enc_file), opts, providers=["CPUExecutionProvider"])
        self.head = ort.InferenceSession(str(pkg / head_file), opts, providers=["CPUExecutionProvider"])
        self.head_inputs = [i.name for i in self.head.get_inputs()]  # the exporter drops inputs the graph never reads

    def node_states(self, d):
        feeds = {k: getattr(d, k).numpy() for k in ENCODER_INPUTS}
        return torch.from_numpy(self.encoder.run(None, feeds)[0])

    def readout(self, feeds: dict[str, torch.Tensor]):
        return torch.from_numpy(self.head.run(None, {k: feeds[k].numpy() for k in self.head_inputs})[0])


class PackagedModel:
    """An exported student behind the predictor's model interface (``logits``, ``part_logits``,
    ``hops``, ``task``). The head is fed by name whatever it reads: node states ``h``, ``batch``,
    ``graphs`` (one entry per graph) and ``side`` (pairs; zeros for inputs without sides)."""

    def __init__(self, runner, meta: dict[str, Any]):
        self.runner, self.task, self.hops = runner, meta["task"], int(meta["hops"])

    @staticmethod
    def _side(d, n: int):
        return d.side if "side" in d else torch.zeros(n, dtype=torch.long)

    @torch.no_grad()
    def logits(self, batch):
        num_graphs = int(getattr(batch, "num_graphs", 1) or 1)
        h = self.runner.node_states(batch)
        return self.runner.readout({"h": h, "batch": batch.batch, "graphs": torch.zeros(num_graphs),
                                    "side": self._side(batch, h.shape[0])})

    @torch.no_grad()
    def part_logits(self, parts):
        """Decomposed prediction: the core nodes' states of every part (in node order), read out as
        one graph (the core nodes keep their ``side``)."""
        core = [p.core if "core" in p else torch.ones(p.num_nodes, dtype=torch.bool) for p in parts]
        h = torch.cat([self.runner.node_states(p)[c] for p, c in zip(parts, core)])
        side = torch.cat([self._side(p, p.num_nodes)[c] for p, c in zip(parts, core)])
        return self.runner.readout({"h": h, "batch": torch.zeros(h.shape[0], dtype=torch.long),
                                    "graphs": torch.zeros(1), "side": side})


def load_package(pkg: Path, node_budget: int | None = -1, max_chars: int | None = -1, threads: int | None = None,
                 log=None, defer_below: float | None = None):
    """A ``Predictor`` from an exported package (checksums verified first). ``node_budget`` /
    ``max_chars``: -1 keeps the package's values (those of the run it came from), None lifts the
    limit. ``threads``: intra-op threads of the ONNX runtime (None: its default). ``defer_below``:
    a ``serving.cascade.CascadePredictor`` instead, deferring rows the student is less confident
    about to the package's teacher (a package exported with ``--with-teacher``); None: the threshold
    the package carries (chosen by `tgd evaluate` on validation), or the student alone if none."""
    from pipeline.graph_builder import GraphBuilder
    from serving.predictor import Predictor
    from tgd.config import GraphConfig
    from trainers.student.features import GraphEncoding

    pkg = Path(pkg)
    if defer_below is not None and not 0.0 <= defer_below <= 1.0:
        raise PackageError(f"--defer-below {defer_below}: a confidence threshold between 0 and 1")
    meta = verify(pkg)
    want = meta["spacy"].get("pipeline_version")
    have = _spacy_version(meta["spacy"]["pipeline"])
    if want and have and want != have and log:
        log(f"warning: the package was exported with spaCy pipeline {meta['spacy']['pipeline']} {want}, "
            f"{have} is installed: graphs may differ from training")
    runner = _TorchScriptRunner(pkg, meta) if meta["format"] == "torchscript" else _OnnxRunner(pkg, meta, threads)
    enc = GraphEncoding(**json.loads((pkg / "encoding.json").read_text()))
    builder = GraphBuilder(GraphConfig(**meta["graph"]))
    max_chars = meta["max_chars"] if max_chars == -1 else max_chars
    student = Predictor(PackagedModel(runner, meta), enc, builder, task=meta["task"],
                        node_budget=meta["node_budget"] if node_budget == -1 else node_budget, max_chars=max_chars)
    if defer_below is None:
        defer_below = (meta.get("teacher_package") or {}).get("defer_below")  # evaluate's choice, if carried
    if defer_below is None:
        return student
    try:
        teacher = load_packaged_teacher(pkg, meta, max_chars)
    except TeacherError as e:
        raise PackageError(str(e)) from None
    return CascadePredictor(student, teacher, defer_below)
