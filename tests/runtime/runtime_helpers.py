"""A hand-built ONNX classifier with a manifest, for runtime and bench tests (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevit.artifact import Manifest, TensorSpec

TINY_CLASSES = 4
TINY_SIZE = 8


def write_tiny_onnx(
    folder: Path, batch: int | None = None, weights: np.ndarray | None = None, layout: str = "NCHW"
) -> Path:
    """A 3x8x8 -> 4-class ONNX model (global mean pool then MatMul) and its manifest (NCHW or NHWC input)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weights = np.arange(12, dtype=np.float32).reshape(3, TINY_CLASSES) / 10 if weights is None else weights
    dim = batch if batch is not None else "batch"
    image = [3, TINY_SIZE, TINY_SIZE] if layout == "NCHW" else [TINY_SIZE, TINY_SIZE, 3]
    spatial = [2, 3] if layout == "NCHW" else [1, 2]
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixel_values", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [dim, *image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [dim, TINY_CLASSES])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.array(spatial), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(folder / "model.onnx"))
    Manifest(
        model={"name": "tiny", "family": "test", "num_classes": TINY_CLASSES, "image_size": TINY_SIZE},
        target="onnx",
        precision="fp32",
        model_file="model.onnx",
        inputs=(TensorSpec("pixel_values", (batch, *image), "float32", layout),),
        outputs=(TensorSpec("logits", (batch, TINY_CLASSES)),),
        preprocessing={"size": TINY_SIZE, "resize_mode": "warp", "interpolation": "bilinear"},
        labels=["cat", "dog", "fish", "bird"],
        files={"model.onnx": (folder / "model.onnx").stat().st_size},
    ).write(folder)
    return folder
