"""The runtime trusts nothing in a manifest: every field is checked on load, with one ArtifactError
that says what is wrong (the agent accepts manifests over the network with the same check)."""

from __future__ import annotations

import json
import os

import pytest
from runtime_helpers import write_tiny_onnx

from edgevit.artifact import artifact_digest
from edgevit.errors import ArtifactError
from edgevit.runtime import load


def _edit(folder, **changes):
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            data[outer][inner] = value
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize(("changes", "message"), [
    ({"model_file": "../other/model.onnx"}, "model_file '../other/model.onnx' is not a plain file name"),
    ({"model_file": "/etc/passwd"}, "model_file '/etc/passwd' is not a plain file name"),
    ({"model_file": "model.tflite"}, "model_file 'model.tflite' does not end in '.onnx'"),
    ({"inputs": "abc"}, "inputs must be a list of 1..64 tensor descriptions, got 'abc'"),
    ({"inputs": [{"name": "x", "shape": [1, "3"]}]}, "inputs[0].shape must be a list of at most 8 positive"),
    ({"inputs": [{"name": "x", "shape": [1], "dtype": "object"}]}, "inputs[0].dtype must be one of float32"),
    ({"outputs": []}, "outputs must be a list of 1..64"),
    ({"preprocessing.size": 10**9}, "preprocessing.size must be an integer in 1..4096"),
    ({"preprocessing.mean": [0.5, 0.5]}, "preprocessing.mean must be 3 finite numbers"),
    ({"preprocessing.std": [0.2, 0.0, 0.2]}, "preprocessing.std must be positive"),
    ({"preprocessing.resize_mode": "stretch"}, "preprocessing.resize_mode must be one of crop, warp"),
    ({"target": "tensorrt"}, "target 'tensorrt' is not one of onnx, tflite, coreml"),
    ({"labels": "cat"}, "labels must be a list of strings"),
    ({"files": {"../x": 1}}, "files entry '../x' is not a relative path"),
])
def test_a_manifest_that_breaks_the_format_is_one_clear_error(tmp_path, changes, message):
    folder = _edit(write_tiny_onnx(tmp_path / "a"), **changes)
    with pytest.raises(ArtifactError) as error:
        load(folder)
    assert str(error.value).startswith("manifest is invalid: ") and message in str(error.value), str(error.value)


def test_a_model_file_that_links_out_of_the_folder_is_refused(tmp_path):
    outside = write_tiny_onnx(tmp_path / "outside")
    folder = write_tiny_onnx(tmp_path / "a")
    (folder / "model.onnx").unlink()
    os.symlink(outside / "model.onnx", folder / "model.onnx")
    with pytest.raises(ArtifactError, match="is a link; an artifact's files must be inside its folder"):
        load(folder)


def test_the_digest_depends_on_the_files_not_the_folder(tmp_path):
    a, b = write_tiny_onnx(tmp_path / "a"), write_tiny_onnx(tmp_path / "b")
    assert artifact_digest(a) == artifact_digest(b)
    (b / "model.onnx").write_bytes((b / "model.onnx").read_bytes() + b"\0")
    assert artifact_digest(a) != artifact_digest(b)
