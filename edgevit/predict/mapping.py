"""An artifact's ops to kernels: one table per file format, from op type to a function that sizes it.

Each function gets the op and its graph and returns the op's :class:`Kernel` (shapes from the
file: ONNX after shape inference, TFLite as stored), or None when a shape it needs is unknown.
An op type in no table is *unknown*: the predictor counts and reports it, never drops it.
The precision of a kernel is that of the op's first non-constant input (``int8``/``uint8``:
``"int8"``, anything else ``"fp32"``).

Example:
    >>> sorted(ONNX_OPS)[:3]
    ['Abs', 'Add', 'And']
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import numpy as np

from edgevit.errors import require
from edgevit.formats import Op, OpGraph
from edgevit.predict.kernels import Kernel

__all__ = ["OPS", "ONNX_OPS", "TFLITE_OPS", "io_bytes", "kernel_of", "kernel_from_tensor", "op_dtype"]

Sizer = Callable[[Op, OpGraph, str], "Kernel | None"]


class _Unsized(Exception):
    """A shape the kernel needs is not known."""


def _shape(graph: OpGraph, key) -> tuple[int, ...]:
    tensor = graph.tensors.get(key)
    if tensor is None or tensor.shape is None or any(d is None for d in tensor.shape):
        raise _Unsized(key)
    return tuple(int(d) for d in tensor.shape)


def _constant(graph: OpGraph, key) -> bool:
    tensor = graph.tensors.get(key)
    return tensor is not None and tensor.constant


def _size(graph: OpGraph, key) -> int:
    return max(1, prod(_shape(graph, key)))


def op_dtype(op: Op, graph: OpGraph) -> str:
    """``"int8"`` when the op's first non-constant input is an 8-bit integer, else ``"fp32"``."""
    for key in op.inputs:
        tensor = graph.tensors.get(key)
        if tensor is not None and not tensor.constant:
            return "int8" if tensor.dtype in ("int8", "uint8") else "fp32"
    return "fp32"


def io_bytes(graph: OpGraph) -> int:
    """Bytes of the main graph's inputs and outputs: what a runtime's ``run`` copies in and out
    around the kernels (a tensor of unknown shape or dtype counts 0).

    A call pays for them (LiteRT copies each input into the interpreter and each output out of
    it; onnxruntime allocates the outputs): on this project's AVX2 machine a 2-D transpose of
    37,824 floats took 0.012 ms in LiteRT's ``invoke`` and 0.050 ms as a whole call
    (``benchmarks/results/tflite_copies.md``), so a calibration model of a memory-bound kernel
    measures the call's copying as much as its kernel.
    """
    total = 0
    for key in (*graph.inputs, *graph.outputs):
        tensor = graph.tensors.get(key)
        if tensor is None or tensor.shape is None or any(d is None for d in tensor.shape):
            continue
        try:
            size = np.dtype(tensor.dtype).itemsize
        except TypeError:
            continue
        total += size * prod(int(d) for d in tensor.shape)
    return total


def kernel_from_tensor(kind: str, shape: tuple[int, ...], dtype: str) -> Kernel:
    """A row-wise (``softmax``, ``layernorm``) or element-wise kernel of ``kind`` over a tensor of ``shape``."""
    size = max(1, prod(shape))
    if kind in ("softmax", "layernorm"):
        cols = shape[-1] if shape else 1
        return Kernel.of(kind, dtype, ROWS=max(1, size // max(1, cols)), COLS=max(1, cols))
    return Kernel.of(kind, dtype, E=size, I=1)


# -- shared sizers -------------------------------------------------------------------------------------


def _elements(kind: str) -> Sizer:
    def sizer(op: Op, graph: OpGraph, dtype: str) -> Kernel:
        size = _size(graph, op.outputs[0])
        full = sum(1 for key in op.inputs if key in graph.tensors and graph.tensors[key].shape is not None
                   and not graph.tensors[key].constant and _size(graph, key) == size)
        return Kernel.of(kind, dtype, E=size, I=max(1, full))
    return sizer


def _rows(kind: str) -> Sizer:
    return lambda op, graph, dtype: kernel_from_tensor(kind, _shape(graph, op.inputs[0]), dtype)


def _reduce(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    return Kernel.of("reduce", dtype, E=_size(graph, op.inputs[0]), OUT=_size(graph, op.outputs[0]))


def _copy(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    return Kernel.of("copy", dtype, E=sum(_size(graph, key) for key in op.outputs))


def _free(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    return Kernel.of("free", dtype)


def _product(a: tuple[int, ...], out: tuple[int, ...], b_constant: bool, dtype: str, k: int | None = None) -> Kernel:
    """``A @ B`` with output ``out``: a ``linear`` kernel when B is constant, else a batched ``matmul``."""
    n, m = out[-1], out[-2] if len(out) > 1 else 1
    k = k if k is not None else (a[-1] * (a[-2] if len(a) > 1 else 1)) // max(1, m)
    if b_constant:
        return Kernel.of("linear", dtype, M=max(1, prod(out) // n), K=max(1, k), N=n)
    return Kernel.of("matmul", dtype, B=max(1, prod(out[:-2])), M=m, K=max(1, k), N=n)


def _conv(n: int, ih: int, iw: int, cin: int, oh: int, ow: int, cout: int, kh: int, kw: int, groups: int,
          dtype: str) -> Kernel:
    if groups == cin and groups > 1:
        kind = "dwconv"
    elif kh * kw == 1 and groups == 1:
        kind = "conv1x1"
    else:
        kind = "conv"
    return Kernel.of(kind, dtype, N=n, IH=ih, IW=iw, CIN=cin, OH=oh, OW=ow, COUT=cout, KH=kh, KW=kw, G=groups)


# -- ONNX ----------------------------------------------------------------------------------------------


def _onnx_matmul(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    a, b = _shape(graph, op.inputs[0]), _shape(graph, op.inputs[1])
    return _product(a, _shape(graph, op.outputs[0]), _constant(graph, op.inputs[1]) and len(b) == 2, dtype, k=a[-1])


def _onnx_gemm(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    return _product(_shape(graph, op.inputs[0]), _shape(graph, op.outputs[0]), _constant(graph, op.inputs[1]), dtype)


def _onnx_conv(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    x, w, y = _shape(graph, op.inputs[0]), _shape(graph, op.inputs[1]), _shape(graph, op.outputs[0])
    if len(x) != 4:
        raise _Unsized(op.inputs[0])  # 1-D and 3-D convolutions: not modelled yet
    return _conv(x[0], x[2], x[3], x[1], y[2], y[3], y[1], w[2], w[3], op.groups, dtype)


def _onnx_pool(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    x, y = _shape(graph, op.inputs[0]), _shape(graph, op.outputs[0])
    if op.type.startswith("Global"):
        kh, kw = x[2], x[3]
    else:
        window = next((list(a.ints) for a in getattr(op.raw, "attribute", ()) if a.name == "kernel_shape"), None)
        if not window or len(window) != 2:
            raise _Unsized(op.outputs[0])
        kh, kw = window
    return Kernel.of("pool", dtype, N=x[0], IH=x[2], IW=x[3], C=x[1], OH=y[2], OW=y[3], KH=kh, KW=kw)


def _onnx_resize(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    """A ``linear`` or ``cubic`` Resize interpolates (a ``resize`` kernel); ``nearest`` copies.

    TFLite's RESIZE_BILINEAR stays a copy: XNNPACK's took 0.087 ms where the copy of its output was
    priced 0.048 (1024 planes, 7x7 -> 14x14), and its calibration model carries the converter's
    layout transposes, which the fit prices high enough to leave the resize at 0."""
    mode = next((a.s for a in getattr(op.raw, "attribute", ()) if a.name == "mode"), b"nearest")
    x, y = _shape(graph, op.inputs[0]), _shape(graph, op.outputs[0])
    if mode == b"nearest" or len(x) != 4:
        return _copy(op, graph, dtype)
    return Kernel.of("resize", dtype, C=x[0] * x[1], IH=x[2], IW=x[3], OH=y[2], OW=y[3])


def _table(**groups: tuple[str, Sizer]) -> dict[str, Sizer]:
    return {name: sizer for names, sizer in groups.values() for name in names.split()}


#: ONNX op type -> sizer
ONNX_OPS: dict[str, Sizer] = _table(
    matmul=("MatMul FusedMatMul", _onnx_matmul),
    gemm=("Gemm", _onnx_gemm),
    conv=("Conv", _onnx_conv),
    pool=("AveragePool MaxPool GlobalAveragePool GlobalMaxPool", _onnx_pool),
    softmax=("Softmax", _rows("softmax")),
    layernorm=("LayerNormalization", _rows("layernorm")),
    gelu=("Gelu FastGelu BiasGelu", _elements("gelu")),
    elementwise=("Add Sub Mul Div Relu Clip Max Min Where Neg Abs LeakyRelu PRelu HardSigmoid HardSwish Cast "
                 "Equal Less Greater And Or Not Sum BatchNormalization", _elements("elementwise")),
    quantize=("QuantizeLinear", _elements("quantize")),
    dequantize=("DequantizeLinear", _elements("dequantize")),
    math=("Erf Exp Log Sqrt Reciprocal Sigmoid Tanh Pow Softplus Sin Cos", _elements("math")),
    reduce=("ReduceMean ReduceSum ReduceMax ReduceMin ReduceL2", _reduce),
    copy=("Transpose Concat Slice Split Gather GatherElements Expand Tile Pad DepthToSpace SpaceToDepth", _copy),
    resize=("Resize", _onnx_resize),
    free=("Reshape Squeeze Unsqueeze Flatten Identity Dropout Constant Shape Size", _free),
)


# -- TFLite --------------------------------------------------------------------------------------------


def _tflite_fully_connected(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    w, y = _shape(graph, op.inputs[1]), _shape(graph, op.outputs[0])
    n, k = w[0], w[1]
    return Kernel.of("linear", dtype, M=max(1, prod(y) // n), K=k, N=n)


def _tflite_batch_matmul(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    return _product(_shape(graph, op.inputs[0]), _shape(graph, op.outputs[0]), _constant(graph, op.inputs[1]), dtype)


def _tflite_conv(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    x, w, y = _shape(graph, op.inputs[0]), _shape(graph, op.inputs[1]), _shape(graph, op.outputs[0])
    if op.type == "DEPTHWISE_CONV_2D":  # weights (1, KH, KW, COUT)
        return _conv(x[0], x[1], x[2], x[3], y[1], y[2], y[3], w[1], w[2], x[3], dtype)
    return _conv(x[0], x[1], x[2], x[3], y[1], y[2], y[3], w[1], w[2], max(1, x[3] // w[3]), dtype)  # (COUT, KH, KW, CIN/G)


def _tflite_pool(op: Op, graph: OpGraph, dtype: str) -> Kernel:
    x, y = _shape(graph, op.inputs[0]), _shape(graph, op.outputs[0])
    schema = require("ai_edge_litert.schema_py_generated", "litert", "reading TFLite pooling options")
    table, options = op.raw.BuiltinOptions(), schema.Pool2DOptions()
    options.Init(table.Bytes, table.Pos)
    return Kernel.of("pool", dtype, N=x[0], IH=x[1], IW=x[2], C=x[3], OH=y[1], OW=y[2],
                     KH=options.FilterHeight(), KW=options.FilterWidth())


#: TFLite builtin op -> sizer
TFLITE_OPS: dict[str, Sizer] = _table(
    linear=("FULLY_CONNECTED", _tflite_fully_connected),
    matmul=("BATCH_MATMUL", _tflite_batch_matmul),
    conv=("CONV_2D DEPTHWISE_CONV_2D", _tflite_conv),
    pool=("AVERAGE_POOL_2D MAX_POOL_2D", _tflite_pool),
    softmax=("SOFTMAX", _rows("softmax")),
    gelu=("GELU", _elements("gelu")),
    elementwise=("ADD SUB MUL DIV SQUARED_DIFFERENCE MAXIMUM MINIMUM RELU RELU6 LEAKY_RELU HARD_SWISH PRELU ABS NEG "
                 "SELECT SELECT_V2 CAST", _elements("elementwise")),
    quantize=("QUANTIZE", _elements("quantize")),
    dequantize=("DEQUANTIZE", _elements("dequantize")),
    math=("RSQRT SQRT EXP LOG TANH LOGISTIC POW", _elements("math")),
    reduce=("MEAN SUM REDUCE_MAX REDUCE_MIN", _reduce),
    copy=("TRANSPOSE CONCATENATION SLICE STRIDED_SLICE SPLIT SPLIT_V GATHER PAD PADV2 TILE BROADCAST_TO "
          "RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR DEPTH_TO_SPACE SPACE_TO_DEPTH PACK UNPACK", _copy),
    free=("RESHAPE SQUEEZE EXPAND_DIMS", _free),  # XNNPACK elides static reshapes (no copy)
)

#: op tables by file format
OPS: dict[str, dict[str, Sizer]] = {"onnx": ONNX_OPS, "tflite": TFLITE_OPS}


def kernel_of(op: Op, graph: OpGraph) -> Kernel | None:
    """The kernel of ``op`` alone; None when its type is in no table or a shape it needs is unknown.

    Raises:
        KeyError: ``graph.format`` has no op table (only ``onnx`` and ``tflite`` have one).
    """
    sizer = OPS[graph.format].get(op.type)
    if sizer is None:
        return None
    try:
        return sizer(op, graph, op_dtype(op, graph))
    except (_Unsized, IndexError):
        return None
