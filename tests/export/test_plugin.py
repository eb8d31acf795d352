"""A target is one plugin: a fake one, registered from this file alone, exports end to end.

The ``affine`` target writes a Flatten + Linear module as an ``.npz`` of its weight and bias, and
the ``affine-numpy`` backend runs such a file with numpy (tinygrad's ``ops_null`` in spirit). No
edgevit file names them: registering a model suffix, a target and a backend is all it takes for
``edgevit.export`` (convert, inspect, verify, write) and ``edgevit.runtime.load`` to work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tolerances import NUMPY_BACKEND

from edgevit.artifact import MODEL_SUFFIXES, TensorSpec, register_model_suffix
from edgevit.errors import InvalidArgumentError, VerificationError
from edgevit.export import TARGETS, Piece, export
from edgevit.export.ops import OpReport
from edgevit.export.targets import INPUT_NAME, OUTPUT_NAME, Target
from edgevit.runtime import BACKENDS, Backend, BackendModel, load

IMAGE = 8
CLASSES = 5


class AffineTarget(Target):
    """A Flatten + Linear module as ``{weight, bias}`` in an .npz file."""

    name = "affine"
    precisions = ("fp32",)
    packages = ("numpy",)
    #: added to the bias when written: a broken converter, to see verification catch it
    bias_error = 0.0

    def convert(self, model, example, options, path: Path) -> None:
        linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        with open(path, "wb") as file:
            np.savez(file, weight=linear.weight.detach().numpy(),
                     bias=linear.bias.detach().numpy() + self.bias_error, shape=np.asarray(example.shape[1:]))

    def inspect(self, path: Path, options) -> OpReport:
        return OpReport.build({"Gemm": 1})


class AffineModel(BackendModel):
    def __init__(self, path: Path) -> None:
        with np.load(path) as data:
            self.weight, self.bias, shape = data["weight"], data["bias"], tuple(int(n) for n in data["shape"])
        self.input_specs = (TensorSpec(INPUT_NAME, (1, *shape), "float32"),)
        self.output_specs = (TensorSpec(OUTPUT_NAME, (1, len(self.bias)), "float32"),)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds[INPUT_NAME]
        return {OUTPUT_NAME: (x.reshape(len(x), -1) @ self.weight.T + self.bias).astype(np.float32)}


class AffineBackend(Backend):
    name = "affine-numpy"
    suffixes = (".affine",)
    extra = "core"

    def open(self, model_path: Path, threads: int | None) -> AffineModel:
        return AffineModel(model_path)


@pytest.fixture
def affine():
    register_model_suffix("affine", ".affine")
    TARGETS.register("affine", AffineTarget)
    BACKENDS.register("affine-numpy", AffineBackend)
    try:
        yield AffineTarget
    finally:
        TARGETS.unregister("affine")
        BACKENDS.unregister("affine-numpy")
        del MODEL_SUFFIXES["affine"]
        AffineTarget.bias_error = 0.0


def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * IMAGE * IMAGE, CLASSES)).eval()


def test_a_registered_target_exports_verifies_and_runs(affine, tmp_path):
    model = classifier()
    artifact = export(model, target="affine", image_size=IMAGE, out=tmp_path, quiet=True)
    assert artifact.path == tmp_path / "Sequential-affine-fp32"
    assert artifact.manifest.model_file == "model.affine"
    verification = artifact.manifest.verification
    assert verification["status"] == "passed" and verification["backend"] == "affine-numpy"
    assert verification["samples"]["random"] == 4 and len(verification["samples"]["photos"]) == 4
    x = np.random.default_rng(1).standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
    with load(artifact.path) as session:  # backend "auto" finds it by the suffix
        logits = next(iter(session.run({"input": x}).values()))
    NUMPY_BACKEND.check(logits, model(torch.from_numpy(x)).detach().numpy())


def test_a_registered_target_takes_pieces_too(affine, tmp_path):
    features = np.random.default_rng(0).standard_normal((6, 2, 16)).astype(np.float32)
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32, CLASSES)).eval()
    artifact = export(Piece(head, features, name="head"), target="affine", out=tmp_path, quiet=True)
    assert artifact.manifest.inputs[0].shape == (1, 2, 16)
    assert artifact.manifest.verification["samples"]["real"] == 6


def test_a_wrong_converter_is_caught_by_verification_and_writes_nothing(affine, tmp_path):
    affine.bias_error = 0.5
    with pytest.raises(VerificationError, match="does not match PyTorch"):
        export(classifier(), target="affine", image_size=IMAGE, out=tmp_path, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_a_precision_the_target_lacks_lists_what_it_has(affine, tmp_path):
    with pytest.raises(Exception, match=r"precision 'fp16' not supported by this target \(affine\): valid are fp32"):
        export(classifier(), target="affine", precision="fp16", image_size=IMAGE, out=tmp_path, quiet=True)


def test_a_suffix_is_registered_once():
    with pytest.raises(InvalidArgumentError, match="target 'onnx' already has model suffix '.onnx'"):
        register_model_suffix("mine", ".onnx")
    with pytest.raises(InvalidArgumentError, match="a model suffix is a dot and letters"):
        register_model_suffix("mine", "onnx")
    assert "mine" not in MODEL_SUFFIXES
