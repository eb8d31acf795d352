"""Layout conversions a backend adds to a graph and the file does not show (pure).

onnxruntime's CPU provider, at its default optimisation level (``ORT_ENABLE_ALL``), runs float
convolutions in a blocked channel layout, NCHWc (``NchwcTransformer``,
onnxruntime/core/optimizer/nchwc_transformer.cc): channels in blocks of 8 on an x86 CPU
without AVX-512, 16 with it; not at all where MLAS has no NCHWc kernels (ARM builds by
default). Ops that cannot read that layout get their input converted back, and a convolution
whose input is in plain NCHW gets it converted forward: ``ReorderInput`` and ``ReorderOutput``
nodes, each a full copy of a tensor. A conv-heavy model with a GELU between its convolutions
(CAS-ViT, EfficientFormer) runs 42-181 of them, which the saved ONNX file does not hold, so
the predictor adds them as ``reorder`` kernels (timed by the probe's own calibration models:
a 1x1 max pool, which runs blocked, between two element-wise ops, which do not). onnxruntime's
profiler put them at 11% of CAS-ViT-XS's time and 5% of EfficientFormerV2-S0's on this project's
AVX2 machine.

The walk follows the transformer's rules as its source gives them (checked against
onnxruntime 1.32's optimised graphs of the zoo's models: the same count of both nodes on all
eight 224-px models tried, with 8-channel blocks on an AVX2 CPU and 16 on an AVX-512 one):

* a ``Conv`` with a constant 4-D float weight converts: ungrouped with any output channels
  (input channels below the block read NCHW directly, otherwise a multiple of 4), depthwise
  with output channels a multiple of 4, other groups with channels per group a multiple of
  the block; ``MaxPool`` / ``AveragePool`` when the channels are a multiple of the block. These
  reorder an input that is not blocked yet (once per tensor); a conv that reads NCHW directly
  needs a blocked input converted back (a stem's 8-channel conv feeding the next one with
  16-channel blocks: 8 < 16);
* ops whose every non-constant input is already blocked stay blocked: ``Relu``, ``Sigmoid``,
  ``Tanh``, ``Gelu``, ``BatchNormalization``, the global pools (channels a multiple of the
  block), ``Add`` / ``Sum`` / ``Mul`` of two blocked tensors of one channel count, and
  ``Concat`` on channels;
* a blocked tensor read by any other op, or a graph output, is reordered back once.

A QDQ (int8) convolution reads its weight through ``DequantizeLinear`` and runs as
``QLinearConv``, which is not blocked: an int8 file gets no reorders (as onnxruntime does).

Example:
    >>> nchwc_block(("avx2", "fma")), nchwc_block(("avx512f",)), nchwc_block(("neon",))
    (8, 16, 1)
"""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from edgevit.errors import require
from edgevit.formats import Op, OpGraph, TensorKey

__all__ = ["LAYOUTS", "Reorder", "nchwc_block", "nchwc_reorders", "onnxruntime_reorders"]

#: ops that keep a blocked input blocked (one input, or a per-channel constant beside it)
_KEEP = frozenset({"Relu", "Sigmoid", "Tanh", "Gelu", "BatchNormalization"})
_BINARY = frozenset({"Add", "Sum", "Mul"})
_GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool"})
_POOLS = frozenset({"MaxPool", "AveragePool"})
#: flags of an x86 CPU (MLAS has NCHWc kernels on every x86-64 CPU)
_X86 = frozenset({"sse2", "avx", "avx2"})


@dataclass(frozen=True)
class Reorder:
    """One layout conversion: ``ReorderInput`` before op ``op`` or ``ReorderOutput`` after it, of ``tensor``."""

    op: int
    tensor: TensorKey
    node: str
    elements: int


def nchwc_block(cpu_flags: tuple[str, ...] | frozenset[str]) -> int:
    """onnxruntime's NCHWc block on a CPU with these flags: 16 with AVX-512F, 8 on other x86 CPUs,
    1 (no blocked layout) elsewhere or when the flags are unknown."""
    flags = set(cpu_flags)
    if "avx512f" in flags:
        return 16
    return 8 if flags & _X86 else 1


def nchwc_reorders(graph: OpGraph, block: int) -> tuple[Reorder, ...]:
    """The reorders onnxruntime adds to ``graph`` (ONNX) with NCHWc blocks of ``block`` channels
    (1: none), in the order of the ops they belong to."""
    if block <= 1 or graph.format != "onnx":
        return ()
    ops = graph.main_ops
    blocked: dict[TensorKey, int] = {}  # tensor -> its channels
    converted: set[int] = set()
    reorders: list[Reorder] = []
    reordered_in: set[TensorKey] = set()
    reads_nchw: set[int] = set()  # converted convs that read plain NCHW (a blocked input goes back first)
    for i, op in enumerate(ops):
        channels = _converts(op, graph, blocked, block)
        if channels is None:
            continue
        if op.type == "Conv" or op.type in _POOLS:
            x = op.inputs[0]
            if _reads_nchw(op, graph, block):
                reads_nchw.add(i)
            elif x not in blocked and x not in reordered_in:
                reordered_in.add(x)
                reorders.append(Reorder(i, x, "ReorderInput", _elements(graph, x)))
        blocked[op.outputs[0]] = channels
        converted.add(i)
    readers: dict[TensorKey, list[int]] = defaultdict(list)
    for i, op in enumerate(ops):
        for key in op.inputs:
            readers[key].append(i)
    producer = {key: i for i, op in enumerate(ops) for key in op.outputs}
    for key in blocked:
        if key in graph.outputs or any(j not in converted or j in reads_nchw for j in readers[key]):
            reorders.append(Reorder(producer[key], key, "ReorderOutput", _elements(graph, key)))
    return tuple(sorted(reorders, key=lambda r: (r.op, r.node != "ReorderInput")))


def _converts(op: Op, graph: OpGraph, blocked: dict[TensorKey, int], block: int) -> int | None:
    """The output's channels if the transformer runs ``op`` blocked, else None."""
    if op.type == "Conv":
        return _conv_channels(op, graph, block)
    if op.type in _POOLS:
        channels = _channels(graph, op.inputs[0])
        return channels if channels and channels % block == 0 and len(op.outputs) == 1 else None
    moving = [key for key in op.inputs if not _constant(graph, key)]
    if not moving or any(key not in blocked for key in moving) or len(op.outputs) != 1:
        return None
    channels = blocked[moving[0]]
    if op.type in _KEEP or (op.type in _GLOBAL_POOLS and channels % block == 0):
        return channels
    if op.type in _BINARY and len(moving) == len(op.inputs) >= 2 and len({blocked[k] for k in moving}) == 1:
        return channels
    if op.type == "Concat" and _attribute(op, "axis") == 1 and all(blocked[k] % block == 0 for k in moving):
        return sum(blocked[k] for k in moving)
    return None


def _conv_shape(op: Op, graph: OpGraph) -> tuple[int, int, int] | None:
    """``(output channels, input channels per group, groups)`` of a conv with a constant 4-D float
    weight, else None (a QDQ conv reads its weight through DequantizeLinear: QLinearConv, not blocked)."""
    weight = graph.tensors.get(op.inputs[1]) if len(op.inputs) > 1 else None
    if weight is None or not weight.constant or weight.shape is None or len(weight.shape) != 4:
        return None
    if weight.dtype not in ("", "float32") or any(d is None for d in weight.shape[:2]):
        return None
    return weight.shape[0], weight.shape[1], _attribute(op, "group") or 1


def _conv_channels(op: Op, graph: OpGraph, block: int) -> int | None:
    shape = _conv_shape(op, graph)
    if shape is None:
        return None
    out, per_group, groups = shape
    if groups == 1:
        ok = per_group < block or per_group % 4 == 0
    else:
        ok = out % 4 == 0 and ((per_group == 1 and out == groups)
                               or (per_group % block == 0 and (out // groups) % block == 0))
    return out if ok else None


def _reads_nchw(op: Op, graph: OpGraph, block: int) -> bool:
    """An ungrouped conv with fewer input channels than the block reads plain NCHW (no reorder)."""
    shape = _conv_shape(op, graph) if op.type == "Conv" else None
    return shape is not None and shape[2] == 1 and shape[1] < block


def _channels(graph: OpGraph, key: TensorKey) -> int | None:
    tensor = graph.tensors.get(key)
    if tensor is None or tensor.shape is None or len(tensor.shape) != 4:
        return None
    return tensor.shape[1]


def _elements(graph: OpGraph, key: TensorKey) -> int:
    tensor = graph.tensors.get(key)
    if tensor is None or tensor.shape is None or any(d is None for d in tensor.shape):
        return 0
    size = 1
    for d in tensor.shape:
        size *= d
    return size


def _constant(graph: OpGraph, key: TensorKey) -> bool:
    tensor = graph.tensors.get(key)
    return tensor is not None and tensor.constant


def _attribute(op: Op, name: str) -> int | None:
    for attribute in getattr(op.raw, "attribute", ()):
        if attribute.name == name:
            return attribute.i
    return None


#: layout walks by name (a :class:`~edgevit.predict.fusion.RuleSet`'s ``layout``): the reorders
#: for a graph on a CPU with the given flags
LAYOUTS = {"nchwc": lambda graph, cpu_flags: nchwc_reorders(graph, nchwc_block(cpu_flags))}


def onnxruntime_reorders(path: str | Path) -> Counter:
    """``ReorderInput`` / ``ReorderOutput`` nodes in onnxruntime's own optimised graph of the ONNX
    file at ``path`` on this machine (``ORT_ENABLE_ALL``, the CPU provider): what
    :func:`nchwc_reorders` predicts, as onnxruntime does it (needs onnxruntime and onnx)."""
    ort = require("onnxruntime", "onnxruntime", "asking onnxruntime for its layout reorders")
    onnx = require("onnx", "export", "reading onnxruntime's optimised graph")
    with tempfile.TemporaryDirectory(prefix="edgevit-nchwc-") as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.log_severity_level = 3  # its warning that an NCHWc graph is for this machine only
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        nodes = Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)
    return Counter({k: nodes[k] for k in ("ReorderInput", "ReorderOutput") if nodes[k]})
