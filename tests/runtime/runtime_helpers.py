"""A hand-built ONNX classifier with a manifest, for runtime and bench tests (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevit.artifact import Manifest, TensorSpec

TINY_CLASSES = 4
TINY_SIZE = 8


def write_tiny_onnx(
    folder: Path, batch: int | None = None, weights: np.ndarray | None = None, layout: str = "NCHW",
    precision: str = "fp32",
) -> Path:
    """A 3x8x8 -> 4-class ONNX model (global mean pool then MatMul) and its manifest (NCHW or NHWC input).

    ``precision`` "fp16" computes in float16 between float32 casts (as edgevit's fp16 exports do);
    "int8" is a QDQ graph: the input and the pooled features quantized to uint8, the weights to 7-bit
    int8 (|w| <= 63, edgevit's default format, exact on every CPU's int8 kernels).
    """
    import onnx
    from onnx import helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weights = np.arange(12, dtype=np.float32).reshape(3, TINY_CLASSES) / 10 if weights is None else weights
    dim = batch if batch is not None else "batch"
    image = [3, TINY_SIZE, TINY_SIZE] if layout == "NCHW" else [TINY_SIZE, TINY_SIZE, 3]
    spatial = [2, 3] if layout == "NCHW" else [1, 2]
    nodes, initializers = _tiny_graph(precision, weights)
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixel_values", onnx.TensorProto.FLOAT, [dim, *image])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [dim, TINY_CLASSES])],
        initializer=[*initializers, numpy_helper.from_array(np.array(spatial), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(folder / "model.onnx"))
    Manifest(
        model={"name": "tiny", "family": "test", "num_classes": TINY_CLASSES, "image_size": TINY_SIZE},
        target="onnx",
        precision=precision,
        model_file="model.onnx",
        inputs=(TensorSpec("pixel_values", (batch, *image), "float32", layout),),
        outputs=(TensorSpec("logits", (batch, TINY_CLASSES)),),
        preprocessing={"size": TINY_SIZE, "resize_mode": "warp", "interpolation": "bilinear"},
        labels=["cat", "dog", "fish", "bird"],
        files={"model.onnx": (folder / "model.onnx").stat().st_size},
        extra={"quantization": {"runtime_kernels": {"u8s8_saturation": {"free": True}}}} if precision == "int8" else {},
    ).write(folder)
    return folder


def _tiny_graph(precision: str, weights: np.ndarray) -> tuple[list, list]:
    """The tiny model's nodes and weights at ``precision`` (input ``pixel_values``, output ``logits``)."""
    from onnx import TensorProto, helper, numpy_helper

    def node(op: str, inputs: list[str], output: str, **attributes):
        return helper.make_node(op, inputs, [output], **attributes)

    if precision == "fp32":
        return ([node("ReduceMean", ["pixel_values", "axes"], "pooled", keepdims=0),
                 node("MatMul", ["pooled", "W"], "logits")], [numpy_helper.from_array(weights, "W")])
    if precision == "fp16":
        return ([node("Cast", ["pixel_values"], "x16", to=TensorProto.FLOAT16),
                 node("ReduceMean", ["x16", "axes"], "pooled", keepdims=0),
                 node("MatMul", ["pooled", "W"], "logits16"),
                 node("Cast", ["logits16"], "logits", to=TensorProto.FLOAT)],
                [numpy_helper.from_array(weights.astype(np.float16), "W")])
    if precision == "int8":
        scale_w = np.float32(np.abs(weights).max() / 63)
        quantized = np.round(weights / scale_w).astype(np.int8)
        constants = {"x_scale": np.float32(1 / 255), "x_zero": np.uint8(0), "p_scale": np.float32(1 / 255),
                     "p_zero": np.uint8(0), "w_scale": scale_w, "w_zero": np.int8(0)}
        return ([node("QuantizeLinear", ["pixel_values", "x_scale", "x_zero"], "xq"),
                 node("DequantizeLinear", ["xq", "x_scale", "x_zero"], "xd"),
                 node("ReduceMean", ["xd", "axes"], "pooled", keepdims=0),
                 node("QuantizeLinear", ["pooled", "p_scale", "p_zero"], "pq"),
                 node("DequantizeLinear", ["pq", "p_scale", "p_zero"], "pd"),
                 node("DequantizeLinear", ["Wq", "w_scale", "w_zero"], "W"),
                 node("MatMul", ["pd", "W"], "logits")],
                [numpy_helper.from_array(quantized, "Wq"),
                 *(numpy_helper.from_array(np.array(v), k) for k, v in constants.items())])
    raise ValueError(f"no tiny model at precision {precision!r}; fp32, fp16 or int8")
