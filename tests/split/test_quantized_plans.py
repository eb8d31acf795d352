"""Quantized splits: every piece of an int8 plan (sub-models and the fusion head, the stages of a
pipeline) is really int8 in its file, says so in its manifest, was calibrated on the split's
training images and verified like any int8 export; a float plan stays float.

Before the split used the export pipeline, a fusion head or later stage asked for int8 was
written as float32 and labelled int8; the integer-weight count below is what catches that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tolerances import ARTIFACT

from edgevit.artifact import read_manifest
from edgevit.devices import equal_devices
from edgevit.errors import InvalidArgumentError
from edgevit.split import SplitOptions, split

FAST = SplitOptions(reduction=4, prune_steps=1, recover_epochs=2, fusion_epochs=20, measure_rounds=3,
                    timing="pytorch")


def weight_bytes_by_kind(model_file: Path) -> dict[str, int]:
    """Bytes of the constant tensors of a model file with at least 2 dimensions (weights, not
    biases or scales), split into ``integer`` and ``float``, and how many tensors of each."""
    if model_file.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        arrays = [numpy_helper.to_array(t) for t in onnx.load(str(model_file)).graph.initializer]
        sizes = [(a.dtype.kind in "iu", a.nbytes) for a in arrays if a.ndim >= 2]
    else:
        schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
        model = schema.Model.GetRootAs(model_file.read_bytes(), 0)
        graph, integer = model.Subgraphs(0), {schema.TensorType.INT8, schema.TensorType.UINT8}
        sizes = []
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            buffer = model.Buffers(tensor.Buffer())
            size = buffer.DataLength() or (buffer.Size() if hasattr(buffer, "Size") else 0)
            if size and tensor.ShapeLength() >= 2:
                sizes.append((tensor.Type() in integer, size))
    return {"integer": sum(n for is_int, n in sizes if is_int), "float": sum(n for is_int, n in sizes if not is_int),
            "integer_tensors": sum(1 for is_int, _ in sizes if is_int),
            "float_tensors": sum(1 for is_int, _ in sizes if not is_int)}


def assert_really_quantized(model_file: Path, quantization: dict, name: str) -> None:
    """The file holds an integer weight tensor for every conv and linear layer its manifest says
    was quantized, and the manifest says at least half of them were."""
    counts = {kind: tuple(int(n) for n in value.split("/")) for kind, value in quantization["units"]["by_kind"].items()
              if kind in ("conv", "dwconv", "linear")}
    quantized, total = sum(k for k, _ in counts.values()), sum(n for _, n in counts.values())
    weights = weight_bytes_by_kind(model_file)
    assert quantized >= max(1, total / 2), (name, quantization["units"])
    assert weights["integer_tensors"] >= quantized, (name, weights, quantization["units"])


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_every_piece_of_an_int8_classwise_plan_is_int8(target, base_vit, digits6, tmp_path):
    out = tmp_path / "plan"
    plan = split(base_vit, digits6, equal_devices(2, memory_mb=64), out, FAST.replace(target=target, precision="int8"),
                 progress=False)
    assert plan.precision == "int8"
    for piece in (*plan.pieces, plan.fusion):
        manifest = read_manifest(out / piece.artifact)
        assert manifest.precision == "int8" and manifest.target == target
        quantization = manifest.extra["quantization"]
        assert quantization["recipe"]["precision"] == "int8"
        assert "own calibration inputs" in quantization["recipe"]["calib_source"]
        assert manifest.verification["status"] == "passed", manifest.verification
        assert manifest.verification["tolerance"]["precision"] == "int8"
        assert_really_quantized(out / piece.artifact / manifest.model_file, quantization, piece.name)
        assert piece.info["verification"] == "passed"
    # a sub-model answers features (no classes): its top-1 agreement is reported, not judged
    sub = read_manifest(out / plan.pieces[0].artifact)
    assert sub.verification["tolerance"]["min_top1"] == 0.0
    fusion = read_manifest(out / plan.fusion.artifact)
    assert fusion.verification["tolerance"]["min_top1"] == ARTIFACT["int8"].min_top1 and fusion.labels == list(digits6[0].classes)
    exported = plan.accuracy["exported"]
    assert exported["top1"] > 100 / 6 + 40, exported  # far above chance (16.7%) after int8
    assert exported["agreement_with_pytorch"] >= ARTIFACT["int8"].min_top1


@pytest.mark.slow
def test_every_stage_of_an_int8_pipeline_is_int8(base_vit, digits6, tmp_path):
    out = tmp_path / "plan"
    plan = split(base_vit, digits6, equal_devices(2, memory_mb=64), out,
                 FAST.replace(strategy="pipeline", precision="int8"), progress=False)
    assert len(plan.pieces) == 2
    for piece in plan.pieces:
        manifest = read_manifest(out / piece.artifact)
        assert manifest.precision == "int8" and manifest.verification["status"] == "passed"
        assert_really_quantized(out / piece.artifact / manifest.model_file, manifest.extra["quantization"], piece.name)
    later = read_manifest(out / plan.pieces[1].artifact)
    assert later.inputs[0].layout is None and later.preprocessing == {}  # an intermediate tensor, not an image
    assert later.verification["samples"]["real"] > 0


def test_a_float_piece_has_no_integer_weights(tmp_path):
    from edgevit.export import Piece, export

    features = np.random.default_rng(0).standard_normal((4, 8, 32)).astype(np.float32)
    import torch

    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 32, 6))
    artifact = export(Piece(head, features, name="head"), target="onnx", out=tmp_path, quiet=True)
    assert artifact.manifest.precision == "fp32" and artifact.manifest.verification["status"] == "passed"
    assert weight_bytes_by_kind(artifact.path / "model.onnx")["integer"] == 0
    assert artifact.manifest.inputs[0].shape == (1, 8, 32) and artifact.manifest.inputs[0].layout is None


def test_a_tensor_piece_without_calibration_inputs_is_refused_at_int8(tmp_path, monkeypatch):
    import torch

    from edgevit.export import Piece, export
    from edgevit.export.targets.onnx import OnnxTarget

    def no_work(*args, **kwargs):
        raise AssertionError("converted before the request was refused")

    monkeypatch.setattr(OnnxTarget, "convert", no_work)  # refused before any work
    features = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    with pytest.raises(InvalidArgumentError, match=r"intermediate tensor \(32,\), so it cannot be calibrated on images"):
        export(Piece(torch.nn.Linear(32, 6), features, name="head"), target="onnx", precision="int8", out=tmp_path,
               quiet=True)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_an_int8_split_without_data_is_refused_before_any_work(base_vit, tmp_path):
    with pytest.raises(InvalidArgumentError, match="calibrates every piece on the training images; pass --data"):
        split(base_vit, None, equal_devices(2, memory_mb=64), tmp_path / "plan",
              FAST.replace(strategy="pipeline", precision="int8"), progress=False)
    assert not (tmp_path / "plan").exists()
