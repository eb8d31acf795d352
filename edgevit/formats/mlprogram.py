"""Core ML ML Programs (``.mlpackage``), read with ``coremltools.utils.load_spec``.

Ops are the MIL operations of every function, the ``main`` function's first, each block's
ops in order with a nested block's ops right after the op that holds it (``graph`` is the
function's name, or ``function/op name`` inside a nested block). ``const`` ops are ops too;
their outputs are ``constant`` tensors, and an integer scalar's value is kept (a conv's
``groups`` argument names one). Tensors are keyed by name; ``params`` gives an op's inputs
by parameter name (``x``, ``weight``, ``gamma``), ``inputs`` all of them in that order
(immediate values, which have no name, are left out).

Example:
    >>> graph = read_ops("model.mlpackage")  # doctest: +SKIP
    >>> graph.opset, graph.version  # doctest: +SKIP
    ('CoreML7', 8)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevit.errors import require
from edgevit.formats.graph import Op, OpGraph, Tensor, TensorKey

FORMAT = "mlprogram"
MAIN = "main"
#: Core ML model specification version of each deployment target
SPEC_VERSIONS = {"iOS15": 6, "iOS16": 7, "iOS17": 8, "iOS18": 9}


def read_ops(path: str | Path) -> OpGraph:
    """The ops and tensors of the ML Program at ``path`` (``.mlpackage`` or ``.mlmodel``)."""
    ct = require("coremltools", "export", "reading Core ML files")
    return ops_of(ct.utils.load_spec(str(path)))


def ops_of(spec: Any) -> OpGraph:
    """The :class:`OpGraph` of a loaded Core ML ``Model`` spec (no ops unless it is an ML Program)."""
    functions = dict(spec.mlProgram.functions.items())
    main = MAIN if MAIN in functions or not functions else next(iter(functions))
    ops: list[Op] = []
    tensors: dict[TensorKey, Tensor] = {}
    for name in sorted(functions, key=lambda f: f != main):
        function = functions[name]
        for value in function.inputs:
            tensors[value.name] = _tensor(value)
        _read_block(function.block_specializations[function.opset], name, ops, tensors)
    function = functions.get(main)
    block = function.block_specializations[function.opset] if function is not None else None
    return OpGraph(
        FORMAT, tuple(ops), tensors, main=main,
        inputs=tuple(v.name for v in function.inputs) if function is not None else (),
        outputs=tuple(block.outputs) if block is not None else (),
        opset=function.opset if function is not None else None,
        version=int(spec.specificationVersion), raw=spec,
    )


def _read_block(block: Any, where: str, ops: list[Op], tensors: dict[TensorKey, Tensor]) -> None:
    for operation in block.operations:
        params = {param: tuple(a.name for a in argument.arguments if a.name)
                  for param, argument in operation.inputs.items()}
        name = _string(operation.attributes["name"]) if "name" in operation.attributes else ""
        for i, value in enumerate(operation.outputs):
            tensors[value.name] = _tensor(value, constant=operation.type == "const",
                                          scalar=_scalar(operation) if i == 0 else None)
        ops.append(Op(operation.type, name, tuple(k for keys in params.values() for k in keys),
                      tuple(v.name for v in operation.outputs), where, params,
                      _groups(operation, tensors), raw=operation))
        for nested in operation.blocks:
            _read_block(nested, f"{where}/{name}", ops, tensors)


def _tensor(value: Any, constant: bool = False, scalar: int | None = None) -> Tensor:
    if value.type.WhichOneof("type") != "tensorType":
        return Tensor(value.name, constant=constant)
    tensor_type = value.type.tensorType
    dims = [int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None
            for d in tensor_type.dimensions]
    shape = tuple(dims) if len(dims) == tensor_type.rank else (None,) * int(tensor_type.rank)
    return Tensor(value.name, shape, _dtype(tensor_type.dataType), constant, scalar)


def _dtype(data_type: int) -> str:
    from coremltools.proto import MIL_pb2

    try:
        return MIL_pb2.DataType.Name(data_type).lower()
    except ValueError:
        return ""


def _string(value: Any) -> str:
    strings = value.immediateValue.tensor.strings.values
    return strings[0] if strings else ""


def _scalar(operation: Any) -> int | None:
    """The value of a ``const`` op holding exactly one integer (read from the file, not a blob)."""
    if operation.type != "const" or "val" not in operation.attributes:
        return None
    tensor = operation.attributes["val"].immediateValue.tensor
    ints = list(tensor.ints.values) if tensor.HasField("ints") else []
    return int(ints[0]) if len(ints) == 1 else None


def _groups(operation: Any, tensors: dict[TensorKey, Tensor]) -> int:
    """A convolution's ``groups``: an immediate value or a named integer constant (1 if neither)."""
    arguments = operation.inputs["groups"].arguments if "groups" in operation.inputs else []
    for argument in arguments:
        if argument.name:
            known = tensors.get(argument.name)
            return known.value if known is not None and known.value is not None else 1
        if argument.value.immediateValue.tensor.HasField("ints"):
            return int(argument.value.immediateValue.tensor.ints.values[0])
    return 1
