"""`tgd export`: a trained student as a self-contained package, and loading one back.

A package directory holds:
- ``encoder.pt`` + ``head.pt`` (TorchScript) or ``encoder.onnx`` + ``head.onnx`` (ONNX): the
  student split in two so that the predictor can run decomposed prediction on exported models
  too (node states per part, then one readout over the parts' core nodes). Encoder: (x_tok,
  x_pos, edge_index, edge_type, edge_weight) -> node states; head: (node states, batch,
  graphs) -> logits, where ``graphs`` is any tensor with one entry per graph (it carries the
  number of graphs through tracing).
- ``encoding.json``: vocabulary, POS and relation lists, label names, edge kinds.
- ``package.json``: task, format, quantisation, graph-builder settings, spaCy pipeline name and
  version, the teacher it was distilled from, evaluate's metrics, node budget and hops.
- ``manifest.json``: sha256 and size of every other file; ``load_package`` refuses a package whose
  files do not match it, naming the file.

Loading needs neither the run config nor the training code: the model comes from the exported
file; Python only builds the graph (``pipeline.graph_builder``) and encodes it (``GraphEncoding``).

Why the readout is re-written here: PyG's ``global_max_pool`` / ``softmax`` take a different code
path under ONNX export that fails with this torch (``torch.full`` with a tensor fill value in
``torch_geometric.utils.scatter``), so ``_ExportReadout`` computes the same mean, max and
attention pooling with plain ``scatter_add`` / ``scatter_reduce``; the tests check the exported
logits against the PyTorch student. Both formats are traced (``torch.jit.trace`` /
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

    def forward(self, x_tok, x_pos, edge_index, edge_type, edge_weight):
        h = self.inp(torch.cat([self.word(x_tok), self.pos(x_pos)], -1))
        for layer in self.layers:
            h = layer(h, edge_index, edge_type, edge_weight)
        return h


class _ExportReadout(nn.Module):
    """``Readout`` (mean, max, optional attention pooling) + the head, in export-friendly ops."""

    def __init__(self, student):
        super().__init__()
        self.gate = student.readout.att.gate_nn if student.readout.att is not None else None
        self.head = student.head

    def forward(self, h, batch, graphs):
        num_graphs, width = graphs.size(0), h.size(1)
        idx = batch.unsqueeze(-1).expand_as(h)
        sums = h.new_zeros(num_graphs, width).scatter_add(0, idx, h)
        counts = h.new_zeros(num_graphs, 1).scatter_add(0, batch.unsqueeze(-1), torch.ones_like(h[:, :1]))
        mean = sums / counts.clamp(min=1.0)
        big = torch.finfo(h.dtype).max
        mx = h.new_full((num_graphs, width), -big).scatter_reduce(0, idx, h, "amax", include_self=True)
        parts = [mean, mx]
        if self.gate is not None:
            g = self.gate(h)
            gmax = g.new_full((num_graphs, 1), -big).scatter_reduce(0, batch.unsqueeze(-1), g, "amax", include_self=True)
            e = torch.exp(g - gmax[batch])
            den = g.new_zeros(num_graphs, 1).scatter_add(0, batch.unsqueeze(-1), e)
            a = e / (den[batch] + 1e-16)  # PyG's softmax adds the same epsilon
            parts.append(h.new_zeros(num_graphs, width).scatter_add(0, idx, a * h))
        return self.head(torch.cat(parts, -1))


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


def _examples(enc, builder) -> tuple[tuple, tuple]:
    """Example inputs for tracing: two real graphs (edges of every kind the encoding has)."""
    from torch_geometric.data import Batch

    graphs = builder.build(["The film was a quiet delight, and the cast clearly enjoyed it.",
                            "I did not like it. Too long."])
    b = Batch.from_data_list([enc.encode(g) for g in graphs])
    return (b.x_tok, b.x_pos, b.edge_index, b.edge_type, b.edge_weight), (b.batch, torch.zeros(b.num_graphs))


def _quantized(student):
    """Dynamic int8 quantisation of the student's ``nn.Linear`` layers (weights int8, activations
    quantised on the fly): smaller file, faster matmuls on CPU."""
    import copy

    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(student), {nn.Linear}, dtype=torch.qint8)


def export_model(student, enc, builder, fmt: str, out: Path, quantize: str | None = None) -> list[str]:
    """Write the two model files of ``fmt`` into ``out``; returns their names."""
    student = student.eval()
    if quantize == "int8" and fmt == "torchscript":
        student = _quantized(student)
    encoder, readout = _ExportEncoder(student).eval(), _ExportReadout(student).eval()
    enc_args, (batch, graphs) = _examples(enc, builder)
    with torch.no_grad():
        h = encoder(*enc_args)
    names = MODEL_FILES[fmt]
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(encoder, enc_args, check_trace=False), out / names[0])
            torch.jit.save(torch.jit.trace(readout, (h, batch, graphs), check_trace=False), out / names[1])
    else:
        axes_e = {"x_tok": {0: "nodes"}, "x_pos": {0: "nodes"}, "edge_index": {1: "edges"}, "edge_type": {0: "edges"},
                  "edge_weight": {0: "edges"}, "h": {0: "nodes"}}
        axes_h = {"h": {0: "nodes"}, "batch": {0: "nodes"}, "graphs": {0: "graphs"}, "logits": {0: "graphs"}}
        kw = dict(dynamo=False, opset_version=18, do_constant_folding=True)
        with torch.no_grad(), _onnx_friendly_softmax():
            torch.onnx.export(encoder, enc_args, str(out / names[0]), input_names=list(ENCODER_INPUTS),
                              output_names=["h"], dynamic_axes=axes_e, **kw)
            torch.onnx.export(readout, (h, batch, graphs), str(out / names[1]), input_names=list(HEAD_INPUTS),
                              output_names=["logits"], dynamic_axes=axes_h, **kw)
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            for name in names:
                tmp = out / f"{name}.fp32"
                (out / name).rename(tmp)
                quantize_dynamic(str(tmp), str(out / name), weight_type=QuantType.QInt8)
                tmp.unlink()
    return list(names)


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


def export(cfg, fmt: str, out: Path, quantize: str | None = None, log=print) -> dict[str, Any]:
    """Export the distill stage's student of run ``cfg`` as a package in ``out`` (replaced if it
    exists); returns package.json's content plus the size of each file."""
    import spacy

    from pipeline.graph_builder import GraphBuilder
    from tgd.schema import stage_dir
    from trainers.student.checkpoint import load_student

    if fmt not in FORMATS:
        raise PackageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    ckpt = stage_dir(cfg, "distill") / "student.pt"
    if not ckpt.is_file():
        raise PackageError(f"no trained student at {ckpt}: run `tgd run CONFIG` (or `tgd distill CONFIG`) first")
    student, enc, blob = load_student(ckpt)
    builder = GraphBuilder(cfg.graph)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.time()
    files = export_model(student, enc, builder, fmt, out, quantize)
    (out / "encoding.json").write_text(json.dumps(enc.state()))
    metrics_path = stage_dir(cfg, "evaluate") / "metrics.json"
    metrics = {}
    if metrics_path.is_file():
        keep = ("accuracy", "macro_f1", "agreement", "params", "e2e_latency_ms_b1", "e2e_latency_ms_b64")
        metrics = {r["model"]: {k: r[k] for k in keep if k in r} for r in json.loads(metrics_path.read_text())
                   if r["model"] in ("teacher", "distilled", "distilled_decomposed")}
    meta = {
        "package_version": PACKAGE_VERSION, "format": fmt, "quantize": quantize, "task": blob["task"],
        "labels": enc.labels, "model_files": files, "hops": len(student.encoder.layers),
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
    (out / "package.json").write_text(json.dumps(meta, indent=2))
    names = [*files, "encoding.json", "package.json"]
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
        self.encoder = torch.jit.load(str(pkg / enc_file), map_location="cpu").eval()
        self.head = torch.jit.load(str(pkg / head_file), map_location="cpu").eval()

    def node_states(self, d):
        return self.encoder(d.x_tok, d.x_pos, d.edge_index, d.edge_type, d.edge_weight)

    def readout(self, h, batch, num_graphs: int):
        return self.head(h, batch, torch.zeros(num_graphs))


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

    def node_states(self, d):
        feeds = {k: getattr(d, k).numpy() for k in ENCODER_INPUTS}
        return torch.from_numpy(self.encoder.run(None, feeds)[0])

    def readout(self, h, batch, num_graphs: int):
        feeds = {"h": h.numpy(), "batch": batch.numpy(), "graphs": torch.zeros(num_graphs).numpy()}
        return torch.from_numpy(self.head.run(None, feeds)[0])


class PackagedModel:
    """An exported student behind the predictor's model interface (``logits``, ``part_logits``,
    ``hops``, ``task``)."""

    def __init__(self, runner, meta: dict[str, Any]):
        self.runner, self.task, self.hops = runner, meta["task"], int(meta["hops"])

    @torch.no_grad()
    def logits(self, batch):
        num_graphs = int(getattr(batch, "num_graphs", 1) or 1)
        return self.runner.readout(self.runner.node_states(batch), batch.batch, num_graphs)

    @torch.no_grad()
    def part_logits(self, parts):
        h = torch.cat([self.runner.node_states(p)[p.core] if "core" in p else self.runner.node_states(p) for p in parts])
        return self.runner.readout(h, torch.zeros(h.shape[0], dtype=torch.long), 1)


def load_package(pkg: Path, node_budget: int | None = -1, max_chars: int | None = -1, threads: int | None = None,
                 log=None):
    """A ``Predictor`` from an exported package (checksums verified first). ``node_budget`` /
    ``max_chars``: -1 keeps the package's values (those of the run it came from), None lifts the
    limit. ``threads``: intra-op threads of the ONNX runtime (None: its default)."""
    from pipeline.graph_builder import GraphBuilder
    from serving.predictor import Predictor
    from tgd.config import GraphConfig
    from trainers.student.features import GraphEncoding

    pkg = Path(pkg)
    meta = verify(pkg)
    want = meta["spacy"].get("pipeline_version")
    have = _spacy_version(meta["spacy"]["pipeline"])
    if want and have and want != have and log:
        log(f"warning: the package was exported with spaCy pipeline {meta['spacy']['pipeline']} {want}, "
            f"{have} is installed: graphs may differ from training")
    runner = _TorchScriptRunner(pkg, meta) if meta["format"] == "torchscript" else _OnnxRunner(pkg, meta, threads)
    enc = GraphEncoding(**json.loads((pkg / "encoding.json").read_text()))
    builder = GraphBuilder(GraphConfig(**meta["graph"]))
    return Predictor(PackagedModel(runner, meta), enc, builder, task=meta["task"],
                     node_budget=meta["node_budget"] if node_budget == -1 else node_budget,
                     max_chars=meta["max_chars"] if max_chars == -1 else max_chars)
