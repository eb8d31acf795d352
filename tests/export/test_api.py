"""The public API beyond the matrix: options that change the artifact, re-export, reports, imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import edgevit
from edgevit.export import PRECISIONS, TARGETS, Artifact
from edgevit.export.verify import TOLERANCES


def test_every_target_precision_has_a_tolerance_row():
    for name in TARGETS.names():
        target = TARGETS.get(name)
        assert set(target.precisions) <= set(PRECISIONS.names())
    assert set(PRECISIONS.names()) <= set(TOLERANCES)


def test_importing_export_imports_no_torch():
    code = "import sys, edgevit.export, edgevit.export.pipeline; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dynamic_batch_onnx_with_weights(tmp_path):
    weights = tmp_path / "vit.pth"
    torch.save(edgevit.create_model("test_vit").state_dict(), weights)
    artifact = edgevit.export("test_vit", target="onnx", batch="dynamic", weights=weights, out=tmp_path)
    manifest = artifact.manifest
    assert manifest.inputs[0].shape == (None, 3, 32, 32) and manifest.outputs[0].shape == (None, 10)
    assert manifest.weights["sha256"] == __import__("hashlib").sha256(weights.read_bytes()).hexdigest()
    assert manifest.verification["status"] == "passed"
    with artifact.load(backend="onnxruntime") as session:
        assert session.run({"input": np.zeros((3, 3, 32, 32), np.float32)})["logits"].shape == (3, 10)

    again = edgevit.export("test_vit", target="onnx", weights=weights, out=tmp_path, verify=False)
    assert again.path == artifact.path and again.manifest.inputs[0].shape == (1, 3, 32, 32)
    assert again.manifest.verification == {"status": "skipped"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_vit-onnx-fp32", "vit.pth"]


def test_channels_last_tflite_takes_nhwc(tmp_path):
    artifact = edgevit.export("test_vit", target="tflite", channels_last=True, out=tmp_path)
    spec = artifact.manifest.inputs[0]
    assert (spec.shape, spec.layout) == ((1, 32, 32, 3), "NHWC")
    assert artifact.manifest.preprocessing["layout"] == "NHWC"
    assert artifact.manifest.verification["status"] == "passed"
    assert artifact.manifest.ops["details"]["xnnpack_delegated"].split("/")[0] == \
        artifact.manifest.ops["details"]["xnnpack_delegated"].split("/")[1]
    reopened = Artifact.open(artifact.path)
    report = reopened.report()
    assert "NHWC" in report and "PASSED with litert" in report
    assert "runtime.load(" in reopened.usage()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tolerance_rows_are_ordered(precision):
    fp32, row = TOLERANCES["fp32"], TOLERANCES[precision]
    assert row.max_rel_err >= fp32.max_rel_err and row.min_cosine <= fp32.min_cosine


@pytest.mark.parametrize("precision", ["fp32", "w8"])
def test_a_core_ml_export_leaves_no_package_in_the_temp_folder(tmp_path, monkeypatch, precision):
    """coremltools converts into a package in the temp folder and deletes it only when the process
    exits; the exporter (and the quantizer, for w8) deletes it once the artifact is saved."""
    pytest.importorskip("coremltools")
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    artifact = edgevit.export("test_vit", "coreml", precision=precision, out=tmp_path / "out", verify=False)
    assert (artifact.path / "model.mlpackage").is_dir() or list(artifact.path.glob("*.mlpackage"))
    assert not list(temp.rglob("*.mlpackage")), "coremltools' temporary package left in the temp folder"
