"""TFLite (LiteRT) flatbuffers, read with the schema ``ai-edge-litert`` ships (no interpreter).

Ops are every subgraph's operators in the file's order (the order the interpreter runs
subgraph 0 in), named like the interpreter names them: the builtin operator
(``FULLY_CONNECTED``) or ``CUSTOM:<custom code>``. Tensors are keyed by their index in
subgraph 0 and by ``(subgraph, index)`` in the others; names may be empty (edgevit's int8
files keep only the input and output names). Absent optional inputs (index -1) are left out.

Example:
    >>> graph = read_ops("model.tflite")  # doctest: +SKIP
    >>> graph.counts()["FULLY_CONNECTED"]  # doctest: +SKIP
    17
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from edgevit.errors import require
from edgevit.formats.graph import Op, OpGraph, Tensor, TensorKey

FORMAT = "tflite"


def read_ops(path: str | Path) -> OpGraph:
    """The ops and tensors of the ``.tflite`` file at ``path``."""
    schema = _schema()
    data = Path(path).read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    op_names = _op_names(model)
    ops: list[Op] = []
    tensors: dict[TensorKey, Tensor] = {}
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        key = _keys(s)
        for t in range(subgraph.TensorsLength()):
            tensors[key(t)] = _tensor(model, subgraph.Tensors(t))
        for i in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(i)
            ops.append(Op(op_names[operator.OpcodeIndex()], "", _indices(operator.InputsAsNumpy(), key),
                          _indices(operator.OutputsAsNumpy(), key), s, raw=operator))
    first = model.Subgraphs(0) if model.SubgraphsLength() else None
    return OpGraph(
        FORMAT, tuple(ops), tensors, main=0,
        inputs=_indices(first.InputsAsNumpy(), _keys(0)) if first else (),
        outputs=_indices(first.OutputsAsNumpy(), _keys(0)) if first else (),
        version=int(model.Version()), raw=model,
    )


@cache
def _schema() -> Any:
    return require("ai_edge_litert.schema_py_generated", "litert", "reading TFLite files")


@cache
def _builtin_names() -> dict[int, str]:
    return {value: key for key, value in vars(_schema().BuiltinOperator).items() if not key.startswith("_")}


@cache
def _dtype_names() -> dict[int, str]:
    return {value: key.lower() for key, value in vars(_schema().TensorType).items() if not key.startswith("_")}


def _op_names(model: Any) -> list[str]:
    """The name of each operator code: the builtin's, or ``CUSTOM:<code>``."""
    names = _builtin_names()
    out = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # codes above 127 live in the new field
        if names.get(builtin) == "CUSTOM":
            out.append(f"CUSTOM:{(code.CustomCode() or b'').decode(errors='replace')}")
        else:
            out.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return out


def _tensor(model: Any, tensor: Any) -> Tensor:
    signature = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else None
    shape = tuple(int(d) for d in (tensor.ShapeAsNumpy() if tensor.ShapeLength() else ()))
    if signature is not None and len(signature) == len(shape):
        shape = tuple(None if int(s) < 0 else d for s, d in zip(signature, shape))
    return Tensor((tensor.Name() or b"").decode(errors="replace"), shape,
                  _dtype_names().get(tensor.Type(), str(tensor.Type())), _stored(model, tensor.Buffer()))


def _stored(model: Any, index: int) -> bool:
    """Whether buffer ``index`` holds data (in the flatbuffer, or after it at an offset)."""
    if index <= 0 or index >= model.BuffersLength():  # buffer 0 is the empty sentinel
        return False
    buffer = model.Buffers(index)
    return buffer.DataLength() > 0 or buffer.Offset() > 1


def _keys(subgraph: int):
    return (lambda t: int(t)) if subgraph == 0 else (lambda t: (subgraph, int(t)))


def _indices(array: Any, key) -> tuple[TensorKey, ...]:
    return tuple(key(i) for i in (array if not isinstance(array, int) else ()) if i >= 0)
