"""`tgd export`: TorchScript and ONNX packages of a trained student, checked against PyTorch.

The exported model files must give the PyTorch student's logits (ONNX through onnxruntime) on
short and long documents (the long ones predicted from parts), the package must carry what a
deployment needs, and a tampered or truncated file must be refused with its name.
"""
from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from serving.export import PackageError, load_package
from serving.predictor import Predictor
from tests.fixtures import ROOT
from tests.fixtures.serving_data import NODE_BUDGET, corpus, document, export_package, small_run
from tgd.cli import main
from trainers.student.checkpoint import load_student


@pytest.fixture(scope="module")
def run_config(tmp_path_factory, graph_builder):
    return small_run(tmp_path_factory.getbasetemp() / "serving-run", graph_builder)


@pytest.fixture(scope="module")
def texts():
    import random

    rng = random.Random(5)
    longs = [document(rng, k % 2, 25, punctuation=k % 3 != 0) for k in range(4)]  # 250+ nodes: parts
    return [t for t, _ in corpus(12, seed=9)] + longs


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_logits_match_pytorch(fmt, run_config, texts, graph_builder):
    pkg = export_package(run_config, fmt)
    student, enc, _ = load_student(run_config.parent / "run" / "distill" / "student.pt")
    reference = Predictor(student, enc, graph_builder, node_budget=NODE_BUDGET).predict_logits(texts, batch_size=8)
    exported = load_package(pkg)
    assert exported.node_budget == NODE_BUDGET and exported.model.hops == 2
    # ONNX Runtime and TorchScript run the same graph with different kernels: a float tolerance
    torch.testing.assert_close(exported.predict_logits(texts, batch_size=8), reference, atol=1e-4, rtol=1e-4)


def test_package_contents(run_config):
    pkg = export_package(run_config, "onnx")
    meta = json.loads((pkg / "package.json").read_text())
    assert meta["task"] == "classification" and meta["labels"] == ["neg", "pos"] and meta["format"] == "onnx"
    assert meta["spacy"]["pipeline"] and meta["spacy"]["pipeline_version"] and meta["teacher"]["model"]
    assert meta["graph"]["window"] == 3 and meta["node_budget"] == NODE_BUDGET
    files = json.loads((pkg / "manifest.json").read_text())["files"]
    assert set(files) == {"encoder.onnx", "head.onnx", "encoding.json", "package.json"}
    assert set(p.name for p in pkg.iterdir()) == set(files) | {"manifest.json"}


def test_int8_package_predicts_close_to_float(run_config, texts):
    fp32 = load_package(export_package(run_config, "onnx")).predict_logits(texts)
    pkg = export_package(run_config, "onnx", "int8")
    int8 = load_package(pkg).predict_logits(texts)
    assert json.loads((pkg / "package.json").read_text())["quantize"] == "int8"  # (too small a model to shrink)
    assert (int8.argmax(-1) == fp32.argmax(-1)).float().mean() >= 0.9


def test_tampered_or_truncated_file_refused(run_config, tmp_path, capsys):
    pkg = tmp_path / "pkg"
    shutil.copytree(export_package(run_config, "torchscript"), pkg)
    data = (pkg / "encoder.pt").read_bytes()
    (pkg / "encoder.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(PackageError, match=r"encoder\.pt.*truncated"):
        load_package(pkg)
    assert main(["predict", str(pkg), "--input", "-"]) == 2
    assert "encoder.pt" in capsys.readouterr().err
    (pkg / "encoder.pt").write_bytes(data)
    enc = (pkg / "encoding.json").read_text()
    (pkg / "encoding.json").write_text(enc.replace('"neg"', '"NEG"'))  # same size, other bytes
    with pytest.raises(PackageError, match=r"encoding\.json.*sha256"):
        load_package(pkg)


def test_no_unsafe_torch_load_in_repo():
    """Every torch.load in the project restricts unpickling to tensors and plain containers."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        if any(part.startswith(".") or part in ("runs", "node_modules") for part in path.relative_to(ROOT).parts):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"torch\.load\(", line) and "weights_only=True" not in line and "re.search" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert not offenders, offenders
