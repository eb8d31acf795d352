"""``--ort-format``: the ONNX artifact also carries ``model.ort`` (onnxruntime's ORT format, what its
mobile and minimal builds load), written from the finished ``model.onnx`` and verified against
PyTorch like it; the runtime opens the file by itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgevit
from edgevit import runtime
from edgevit.errors import ConversionError

PRECISIONS = ["fp32", pytest.param("int8", marks=pytest.mark.slow)]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_ort_file_is_written_verified_and_runs_like_the_onnx_file(precision, tmp_path):
    artifact = edgevit.export("test_vit", target="onnx", precision=precision, ort_format=True, out=tmp_path)
    folder = artifact.path
    ort_file = folder / "model.ort"
    assert ort_file.is_file() and ort_file.read_bytes()[4:8] == b"ORTM"  # flatbuffers file identifier
    manifest = json.loads((folder / "manifest.json").read_text())
    record = manifest["companions"]["model.ort"]
    assert record["backend"] == "onnxruntime" and record["format"] == "ORT"
    check = record["verification"]
    assert check["status"] == "passed" and check["numbers_checked"] and check["tolerance"]["precision"] == precision
    assert manifest["files"]["model.ort"] == ort_file.stat().st_size
    # what running model.onnx needs (the bench's model size) leaves the companion out
    assert artifact.manifest.model_files() == {"model.onnx": (folder / "model.onnx").stat().st_size}
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with runtime.load(folder) as onnx_session, runtime.load(ort_file) as ort_session:
        assert ort_session.backend == "onnxruntime" and ort_session.model_path == ort_file
        expected, got = onnx_session.run({"input": x})["logits"], ort_session.run({"input": x})["logits"]
    # the same graph and kernels, saved after optimization: the numbers may differ only in float rounding
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * float(np.abs(expected).max()))


def test_without_the_option_there_is_no_ort_file_and_no_verify_means_unchecked(tmp_path):
    plain = edgevit.export("test_vit", target="onnx", verify=False, out=tmp_path / "plain")
    assert not (plain.path / "model.ort").exists() and "companions" not in json.loads(
        (plain.path / "manifest.json").read_text())
    unchecked = edgevit.export("test_vit", target="onnx", verify=False, ort_format=True, out=tmp_path / "unchecked")
    record = json.loads((unchecked.path / "manifest.json").read_text())["companions"]["model.ort"]
    assert record["verification"] == {"status": "skipped"} and (unchecked.path / "model.ort").is_file()


def test_a_file_onnxruntime_cannot_save_is_a_conversion_error_naming_it(tmp_path):
    from edgevit.export.targets.onnx import write_ort

    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(ConversionError, match="onnxruntime could not save model.onnx in ORT format"):
        write_ort(broken, tmp_path / "model.ort")
    assert not (tmp_path / "model.ort").exists()
