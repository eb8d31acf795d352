"""An ML Program's ``main`` function, prepared once and executed op by op in numpy.

Loading (:class:`Program`) does all the checking: every op must have an implementation for
the function's opset (else :class:`~edgevit.errors.UnsupportedOpError` names it), every
name an op reads must be defined earlier, constants are read from the weight file, and ops
whose inputs are all constant (``constexpr_*`` decompression, shape arithmetic) are
evaluated right away. Running then only walks the remaining ops.

Precision rule: each op computes in float32 and its result is stored in the type the
program declares for it, so an fp16 program rounds (and overflows to inf) at every op
boundary as a device does; matrix products and reductions accumulate in float32.
Declared shapes are checked after every op; a difference raises instead of going on with
a wrong answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevit.artifact import TensorSpec
from edgevit.errors import ArtifactError, EdgeVitError, RuntimeInputError, UnsupportedOpError
from edgevit.runtime.backends.coreml_reference._proto import load_proto
from edgevit.runtime.backends.coreml_reference.ops import OPSETS, OpArgs, OpImpl, find_op
from edgevit.runtime.backends.coreml_reference.package import MLPackage
from edgevit.runtime.backends.coreml_reference.values import TensorType, decode_value, tensor_type

#: numpy names of the dtypes reported in input / output specs
SPEC_DTYPES = {"FLOAT16": "float16", "FLOAT32": "float32", "FLOAT64": "float64", "INT32": "int32",
               "INT8": "int8", "UINT8": "uint8", "INT16": "int16", "UINT16": "uint16", "INT64": "int64",
               "BOOL": "bool"}


@dataclass(frozen=True)
class Node:
    """One op to run: its implementation, input bindings and declared outputs.

    ``inputs`` maps each parameter to its bindings: ``(True, name)`` reads a variable,
    ``(False, value)`` is a constant.
    """

    op_type: str
    impl: OpImpl
    ios: int
    inputs: dict[str, tuple[tuple[bool, Any], ...]]
    outputs: tuple[tuple[str, TensorType | None], ...]

    @property
    def where(self) -> str:
        return f"op {self.op_type!r} producing {self.outputs[0][0]!r}" if self.outputs else f"op {self.op_type!r}"


class Program:
    """The ``main`` function of an ML Program, ready to run.

    Example:
        >>> program = Program(read_package("model.mlpackage"))
        >>> logits = program.run({"input": x})["logits"]
    """

    def __init__(self, package: MLPackage, function: str = "main") -> None:
        self._mil = load_proto("MIL_pb2")
        self._data_type = self._mil.DataType
        self._package = package
        programs = package.spec.mlProgram
        if function not in programs.functions:
            raise ArtifactError(f"{package.path.name} has no {function!r} function (it has "
                                f"{', '.join(programs.functions) or 'none'})")
        body = programs.functions[function]
        self.opset = body.opset
        if self.opset not in OPSETS:
            known = ", ".join(f"{name} (iOS{ios})" for name, ios in OPSETS.items())
            raise UnsupportedOpError(f"{package.path.name} uses MIL opset {self.opset!r}; the coreml-reference "
                                     f"executor implements opsets {known}")
        if self.opset not in body.block_specializations:
            raise ArtifactError(f"{package.path.name}: function {function!r} has no block for its opset {self.opset}")
        self.ios = OPSETS[self.opset]
        block = body.block_specializations[self.opset]
        self.inputs = tuple((item.name, self._tensor_type(item.type, f"input {item.name!r}")) for item in body.inputs)
        self.constants: dict[str, Any] = {}
        self.types: dict[str, TensorType | None] = {name: ttype for name, ttype in self.inputs}
        self.nodes: list[Node] = []
        #: every op type of the program with its count, including consts and folded ops
        self.op_counts: dict[str, int] = {}
        for operation in block.operations:
            self._add(operation)
        self.outputs = tuple(block.outputs)
        for name in self.outputs:
            if name not in self.types:
                raise ArtifactError(f"{package.path.name}: the output {name!r} is produced by no op")
        self._frees = self._plan_frees()

    # -- loading --------------------------------------------------------------------------------

    def _tensor_type(self, value_type: Any, where: str) -> TensorType:
        ttype = tensor_type(value_type, self._data_type)
        if ttype is None:
            raise UnsupportedOpError(f"{where} is a {value_type.WhichOneof('type')}; the coreml-reference executor "
                                     "runs tensor values only (no states, lists or dictionaries)")
        return ttype

    def _add(self, operation: Any) -> None:
        outputs = tuple((out.name, tensor_type(out.type, self._data_type)) for out in operation.outputs)
        produced = outputs[0][0] if outputs else "nothing"
        where = f"op {operation.type!r} producing {produced!r}"
        self.op_counts[operation.type] = self.op_counts.get(operation.type, 0) + 1
        if operation.type == "const":
            value = self._decode(operation.attributes["val"], where) if "val" in operation.attributes else None
            if value is None or len(outputs) != 1:
                raise ArtifactError(f"{self._package.path.name}: {where} has no value")
            self._define(outputs[0][0], outputs[0][1])
            self.constants[outputs[0][0]] = conform(value, outputs[0][1], where)
            return
        impl = find_op(operation.type, self.opset, produced)
        if len(operation.blocks):
            raise UnsupportedOpError(f"{where} holds nested blocks (control flow), which the coreml-reference "
                                     "executor does not run")
        inputs = {param: tuple(self._binding(b, where) for b in argument.arguments)
                  for param, argument in operation.inputs.items()}
        for param, value in operation.attributes.items():  # iOS16 constexpr ops keep inputs as attributes
            if param != "name" and param not in inputs:
                inputs[param] = ((False, self._decode(value, where)),)
        node = Node(operation.type, impl, self.ios, inputs, outputs)
        for name, ttype in outputs:
            self._define(name, ttype)
        if all(not is_var or ref in self.constants for bindings in inputs.values() for is_var, ref in bindings):
            for (name, _), value in zip(outputs, self._call(node, self.constants)):
                self.constants[name] = value
        else:
            self.nodes.append(node)

    def _binding(self, binding: Any, where: str) -> tuple[bool, Any]:
        if binding.WhichOneof("binding") == "name":
            if binding.name not in self.types:
                raise ArtifactError(f"{self._package.path.name}: {where} reads {binding.name!r}, which no earlier "
                                    "op or input defines; the program is corrupt")
            return True, binding.name
        return False, self._decode(binding.value, where)

    def _decode(self, value: Any, where: str) -> Any:
        return decode_value(value, self._data_type, self._package.weight_file, f"{self._package.path.name}: {where}")

    def _define(self, name: str, ttype: TensorType | None) -> None:
        if name in self.types:
            raise ArtifactError(f"{self._package.path.name}: {name!r} is defined twice; the program is corrupt")
        self.types[name] = ttype

    def _plan_frees(self) -> list[list[str]]:
        """For each node, the variables nothing after it reads (freed to bound memory)."""
        last: dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            for bindings in node.inputs.values():
                for is_var, ref in bindings:
                    if is_var and ref not in self.constants:
                        last[ref] = index
        frees: list[list[str]] = [[] for _ in self.nodes]
        for name, index in last.items():
            if name not in self.outputs:
                frees[index].append(name)
        return frees

    # -- running --------------------------------------------------------------------------------

    def _call(self, node: Node, env: dict[str, Any]) -> list[Any]:
        values = {param: [env[ref] if is_var else ref for is_var, ref in bindings]
                  for param, bindings in node.inputs.items()}
        args = OpArgs(node.op_type, node.outputs[0][0] if node.outputs else "nothing", node.ios, values)
        try:
            with np.errstate(all="ignore"):
                result = node.impl.function(args)
        except EdgeVitError:
            raise
        except (ValueError, IndexError, TypeError, ArithmeticError, MemoryError) as exc:
            shapes = {p: [np.shape(v) for v in vs] for p, vs in values.items()}
            raise UnsupportedOpError(
                f"{node.where} (iOS{node.ios}) failed on inputs with shapes {shapes}: {type(exc).__name__}: {exc}; "
                "the program uses this op in a way the coreml-reference executor does not implement"
            ) from exc
        results = list(result) if isinstance(result, tuple) else [result]
        if len(results) != len(node.outputs):
            raise UnsupportedOpError(f"{node.where} gave {len(results)} results; the program declares "
                                     f"{len(node.outputs)}")
        return [conform(value, ttype, node.where) for value, (_, ttype) in zip(results, node.outputs)]

    def run(self, feeds: dict[str, np.ndarray], profile: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """Execute on ``feeds`` (by input name); returns every output in its declared dtype.

        ``profile``, when given, accumulates seconds per op type.
        """
        env = dict(self.constants)
        for name, ttype in self.inputs:
            if name not in feeds:
                raise RuntimeInputError(f"missing input {name!r}; the model takes {self.describe_inputs()}")
            env[name] = conform_input(feeds[name], ttype, name)
        for node, frees in zip(self.nodes, self._frees):
            start = time.perf_counter() if profile is not None else 0.0
            for (name, _), value in zip(node.outputs, self._call(node, env)):
                env[name] = value
            if profile is not None:
                profile[node.op_type] = profile.get(node.op_type, 0.0) + time.perf_counter() - start
            for name in frees:
                del env[name]
        return {name: finalize(env[name], self.types[name]) for name in self.outputs}

    # -- description ----------------------------------------------------------------------------

    def input_specs(self) -> tuple[TensorSpec, ...]:
        return tuple(_spec(name, ttype) for name, ttype in self.inputs)

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return tuple(_spec(name, self.types[name]) for name in self.outputs)

    def op_histogram(self) -> dict[str, int]:
        """Op types run per call (constant-folded ops excluded), most frequent first."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def op_types(self) -> set[str]:
        """Every op type the program holds (consts and load-time folded ops included)."""
        return set(self.op_counts)

    def describe_inputs(self) -> str:
        return ", ".join(f"{name}: {ttype.describe()}" for name, ttype in self.inputs)


# -- storing values in their declared types --------------------------------------------------------


def conform(value: Any, ttype: TensorType | None, where: str) -> Any:
    """``value`` rounded to the declared element type (held as float32 for fp16) and shape-checked."""
    if ttype is None or ttype.dtype == "STRING" or isinstance(value, (str, list)):
        return value
    array = np.asarray(value)
    with np.errstate(all="ignore"):
        if ttype.dtype == "FLOAT16":
            array = round_to_float16(array)
        elif ttype.dtype == "BFLOAT16":
            array = round_to_bfloat16(array)
        else:
            array = array.astype(ttype.numpy_dtype, copy=False)
    if ttype.shape is not None and (
        len(ttype.shape) != array.ndim or any(d is not None and d != s for d, s in zip(ttype.shape, array.shape))
    ):
        raise UnsupportedOpError(
            f"{where} computed a {list(array.shape)} tensor but the program declares {ttype.describe()}; the "
            "coreml-reference executor does not reproduce this op here, so it stops instead of going on"
        )
    return array


def conform_input(value: Any, ttype: TensorType, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise RuntimeInputError(f"input {name!r} must be a numeric array, got {array.dtype}")
    try:
        return conform(array, ttype, f"input {name!r}")
    except UnsupportedOpError:
        raise RuntimeInputError(f"input {name!r} has shape {list(array.shape)}, the model takes "
                                f"{ttype.describe()}") from None


def finalize(value: Any, ttype: TensorType | None) -> Any:
    if ttype is None or ttype.dtype not in ("FLOAT16",):
        return value
    return np.asarray(value).astype(np.float16)


def round_to_float16(array: np.ndarray) -> np.ndarray:
    """Round to the nearest float16 (ties to even, overflow to inf), held as float32.

    Bit arithmetic on the float32 pattern gives exactly ``array.astype(float16)`` but stays
    fast where numpy's scalar cast is slow (tiny values that become fp16 subnormals)."""
    x = np.asarray(array, np.float32)
    bits = x.view(np.uint32)
    rounded = (bits + (np.uint32(0x0FFF) + ((bits >> np.uint32(13)) & np.uint32(1)))) & np.uint32(0xFFFFE000)
    out = rounded.view(np.float32)
    tiny = np.abs(x) < np.float32(2.0**-14)  # fp16 subnormals: multiples of 2^-24
    if tiny.any():
        out = np.where(tiny, np.round(x * np.float32(2.0**24)) * np.float32(2.0**-24), out)
    beyond = ~(np.abs(out) <= np.float32(65504.0))  # overflow, inf and nan
    if beyond.any():
        out = np.where(beyond, np.where(np.isnan(x), x, np.copysign(np.float32(np.inf), x)), out)
    return out


def round_to_bfloat16(array: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), held as float32."""
    bits = np.asarray(array, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def _spec(name: str, ttype: TensorType | None) -> TensorSpec:
    if ttype is None or ttype.shape is None:
        return TensorSpec(name, (), "float32")
    return TensorSpec(name, tuple(ttype.shape), SPEC_DTYPES.get(ttype.dtype, ttype.dtype.lower()))
