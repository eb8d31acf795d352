"""Artifacts the runtime tests load.

* ``tiny_onnx``: a hand-built ONNX classifier (mean-pool + MatMul, dynamic batch) with a
  manifest, made with ``onnx.helper`` in milliseconds; used for the session's input checks,
  predict and batching.
* ``family_artifacts``: each family's ``test_*`` model exported to every format a Linux
  backend runs, once per test session, with the PyTorch output on one input to compare with.
* ``onnx_precisions``: each family's digits-trained ``test_*`` model as ONNX fp32, fp16 and int8
  (unverified: the tests compare backends with each other), once per test session.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import write_tiny_onnx

from edgevit.artifact import Manifest, TensorSpec, read_manifest


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    return write_tiny_onnx(tmp_path / "tiny-onnx-fp32")


def _test_models() -> list[str]:
    from edgevit.models import list_models

    return list_models("test_*")


@pytest.fixture(scope="session", params=_test_models())
def family_artifacts(request, tmp_path_factory):
    """``(model name, {target: artifact folder}, input, PyTorch logits)`` for one test model."""
    import torch

    from edgevit.models import create_model, model_info

    name = request.param
    folder = tmp_path_factory.mktemp(name)
    model = create_model(name).eval()
    x = torch.randn(1, *model_info(name).input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    artifacts = {target: _export(model, name, target, folder) for target in ("onnx", "tflite")}
    return name, artifacts, x.numpy(), expected


@pytest.fixture(scope="session", params=_test_models())
def onnx_precisions(request, tmp_path_factory):
    """``(model name, {precision: artifact folder or model file}, digits images)`` for one test model
    with its digits-trained weights (tests/quantize/data), so that int8 is judged on a model whose
    classes are separated: ONNX fp32 and fp16 exports, and the fp32 file quantized to int8 QDQ by
    edgevit's quantizer on 16 digits images (no sensitivity pass: the file, not the recipe, is tested)."""
    from edgevit.data.datasets import load_dataset
    from edgevit.data.preprocess import PreprocessSpec
    from edgevit.export import export
    from edgevit.quantize import Recipe, calibration_set, quantize

    name = request.param
    folder = tmp_path_factory.mktemp(f"{name}-onnx")
    weights = Path(__file__).parents[1] / "quantize" / "data" / f"{name}-digits.safetensors"
    files = {precision: Path(export(name, target="onnx", precision=precision, weights=weights, out=folder,
                                    verify=False, quiet=True).path) for precision in ("fp32", "fp16")}
    spec = PreprocessSpec.from_dict(read_manifest(files["fp32"]).preprocessing)
    files["int8"] = folder / "int8.onnx"
    quantize("onnx", files["fp32"] / "model.onnx", files["int8"], calibration_set("digits", 16, spec),
             Recipe("int8", calib_size=16), sensitivity=False)
    images = load_dataset("digits", "val").arrays(spec)[0][:16].astype(np.float32)
    return name, files, images


def _export(model, name: str, target: str, folder: Path) -> Path:
    """Export with ``edgevit.export`` when it exists; until then convert directly."""
    try:
        from edgevit.export import export
    except ImportError:
        return _convert_directly(model, name, target, folder)
    artifact = export(copy.deepcopy(model), target=target, out=folder, verify=False, quiet=True)
    return Path(getattr(artifact, "path", artifact))


def _convert_directly(model, name: str, target: str, folder: Path) -> Path:
    import torch

    from edgevit.data.preprocess import PreprocessSpec
    from edgevit.models import model_info

    info = model_info(name)
    model = copy.deepcopy(model).reparameterize()
    x = torch.zeros(1, *info.input_size)
    out = folder / f"{name}-{target}-fp32"
    out.mkdir()
    if target == "onnx":
        file = "model.onnx"
        torch.onnx.export(model, (x,), str(out / file), dynamo=True, input_names=["pixel_values"],
                          output_names=["logits"], verbose=False)
    else:
        import litert_torch

        file = "model.tflite"
        litert_torch.convert(model, (x,)).export(str(out / file))
    Manifest(
        model={"name": name, "family": info.family, "num_classes": info.num_classes},
        target=target,
        precision="fp32",
        model_file=file,
        inputs=(TensorSpec("pixel_values", (1, *info.input_size), "float32", "NCHW"),),
        outputs=(TensorSpec("logits", (1, info.num_classes)),),
        preprocessing=PreprocessSpec(size=info.input_size[-1]).to_dict(),
    ).write(out)
    return out
