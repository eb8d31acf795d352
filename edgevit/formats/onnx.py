"""ONNX files, read with ``onnx`` (shapes filled in by ONNX shape inference).

Ops are the main graph's nodes in order, then the bodies of the local functions they call
(each function once, however often it is called; the call itself is not an op) and the
subgraphs of control-flow nodes. Tensors are keyed by name: the values whose type the file
or shape inference knows (intermediate values, then the inputs, then the outputs), then the
initializers (``constant``). External weight data is not loaded: only names, shapes and
types are read.

Example:
    >>> graph = read_ops("model.onnx")  # doctest: +SKIP
    >>> graph.opset, graph.counts()["MatMul"]  # doctest: +SKIP
    (18, 24)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevit.errors import require
from edgevit.formats.graph import Op, OpGraph, Tensor, TensorKey

FORMAT = "onnx"
MAIN = ""


def read_ops(path: str | Path) -> OpGraph:
    """The ops and tensors of the ``.onnx`` file at ``path`` (weights stored beside it are not read)."""
    onnx = require("onnx", "export", "reading ONNX files")
    return ops_of(onnx.load(str(path), load_external_data=False))


def ops_of(model: Any) -> OpGraph:
    """The :class:`OpGraph` of a loaded ``onnx.ModelProto`` (shape inference runs on a copy; the
    ops' ``raw`` nodes are ``model``'s own)."""
    onnx = require("onnx", "export", "reading ONNX files")
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    graph = inferred.graph
    tensors: dict[TensorKey, Tensor] = {}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        tensors.setdefault(value.name, _value(value, onnx))
    for init in graph.initializer:
        tensors[init.name] = Tensor(init.name, tuple(int(d) for d in init.dims),
                                    _dtype(init.data_type, onnx), constant=True)
    return OpGraph(
        FORMAT, tuple(_nodes(model)), tensors, main=MAIN,
        inputs=tuple(i.name for i in graph.input), outputs=tuple(o.name for o in graph.output),
        opset=_opset(model), version=int(model.ir_version), raw=model,
    )


def _nodes(model: Any):
    """Every node: the main graph's, then those of the functions and subgraphs they reach."""
    functions = {(f.domain, f.name): f for f in model.functions}
    seen: set[tuple[str, str]] = set()
    stack = [(MAIN, model.graph)]
    while stack:
        where, graph = stack.pop()
        for node in graph.node:
            key = (node.domain, node.op_type)
            if key in functions:
                if key not in seen:
                    seen.add(key)
                    stack.append((f"{node.domain}:{node.op_type}" if node.domain else node.op_type, functions[key]))
                continue
            yield _op(node, where)
            for attr in node.attribute:
                if attr.g is not None and len(attr.g.node):
                    stack.append((f"{node.name}/{attr.name}", attr.g))
                stack.extend((f"{node.name}/{attr.name}", g) for g in attr.graphs)


def _op(node: Any, where: str) -> Op:
    groups = next((int(a.i) for a in node.attribute if a.name == "group"), 1)
    return Op(node.op_type, node.name, tuple(i for i in node.input if i), tuple(node.output), where,
              groups=groups, raw=node)


def _value(value: Any, onnx: Any) -> Tensor:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return Tensor(value.name)
    shape = None
    if tensor_type.HasField("shape"):
        shape = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    return Tensor(value.name, shape, _dtype(tensor_type.elem_type, onnx))


def _dtype(elem_type: int, onnx: Any) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, TypeError, ValueError):
        return ""


def _opset(model: Any) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None
