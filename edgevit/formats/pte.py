"""ExecuTorch programs (``.pte``), read with the ``flatbuffers`` package alone (no torch, no executorch).

A ``.pte`` file is an ExecuTorch ``Program`` flatbuffer (``schema/program.fbs``, identifier
``ET12``) followed by data segments. Its first execution plan (``forward``) is a chain of
instructions: a *kernel call* runs one operator on the CPU (``aten::native_layer_norm.out``);
a *delegate call* hands a whole subgraph to a backend (``DELEGATE:XnnpackBackend``). An XNNPACK
delegate's payload is itself a flatbuffer (``XN01``, behind an ``XH00`` header); its nodes
are read too, so the op graph says what each delegated subgraph computes:

* ops of the main graph (``graph == "forward"``): the kernel and delegate calls in execution
  order; a kernel call's inputs are all its arguments and its output the last one (ExecuTorch
  runs out-variants, which take their output last); a delegate call's inputs and outputs are
  split as its subgraph declares them;
* ops of delegate ``i`` (``graph == "forward/delegate<i>"``): the XNNPACK nodes
  (``xnnpack:FullyConnected``...), without tensor keys;
* tensors: the plan's values that are tensors, keyed by value index (names are empty: a
  ``.pte`` stores none); ``constant`` for weights stored in the file.

``OpGraph.raw`` is a :class:`PteProgram` (delegates with their backend, node count and
quantized values); a delegate call's ``Op.raw`` is its :class:`Delegate`.

Example:
    >>> graph = read_ops("model.pte")  # doctest: +SKIP
    >>> delegated_subgraphs(graph), outside_delegates(graph)  # doctest: +SKIP
    (1, Counter())
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevit.errors import ArtifactError, require
from edgevit.formats.graph import Op, OpGraph, Tensor, TensorKey

FORMAT = "pte"
PROGRAM_IDENTIFIER = b"ET12"
XNNPACK_IDENTIFIER = b"XN01"
XNNPACK_HEADER = b"XH00"
DELEGATE_PREFIX = "DELEGATE:"
XNNPACK_PREFIX = "xnnpack:"

#: ExecuTorch ScalarType codes -> numpy names (schema/scalar_type.fbs)
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
                11: "bool", 12: "qint8", 13: "quint8", 14: "qint32", 15: "bfloat16", 27: "uint16", 28: "uint32",
                29: "uint64"}
#: XNodeUnion members in schema order (backends/xnnpack/serialization/schema.fbs); index 0 is NONE
XNNPACK_NODES = (
    "NONE", "Add", "FullyConnected", "Softmax", "Sigmoid", "StaticTranspose", "Clamp", "Conv2d", "Div",
    "StaticResizeBilinear2D", "StaticConstantPad", "AvgPooling2d", "Minimum", "DepthwiseConv2d", "MaxPooling2d",
    "Multiply", "Subtract", "Floor", "Convert", "GlobalAvgPooling2d", "StaticReshape", "ArgMaxPooling2d",
    "SquareRoot", "Ceiling", "Hardswish", "LeakyReLU", "Maximum", "Negate", "Square", "ELU", "Abs", "PReLU",
    "Concatenate2", "Concatenate3", "Concatenate4", "StaticSlice", "ScaledDotProductAttention",
    "BatchMatrixMultiply", "Concatenate5", "ConvTranspose2d", "ReciprocalSquareRoot", "Log", "Gelu", "Tanh",
    "Exp", "Sin", "Copy", "Cos",
)
#: XNNDatatype codes of quantized values (qint8, quint8, qint32, qcint8, qcint32, qdint8, qcint4, qbint4...)
XNNPACK_QUANTIZED = frozenset(range(3, 12))

# union type codes (program.fbs)
_TENSOR_VALUE = 5
_KERNEL_CALL, _DELEGATE_CALL = 1, 2
_SEGMENT = 1


@dataclass(frozen=True)
class Delegate:
    """One delegated subgraph: the backend it runs on and, for XNNPACK, what it holds.

    Attributes:
        index: its position in the plan's delegate table.
        backend: the backend id (``XnnpackBackend``).
        nodes: ``{XNNPACK node type: count}`` (empty for another backend's payload).
        quantized_values: values of a quantized XNNPACK datatype (int8 activations and weights).
        inputs / outputs: how many external inputs and outputs the subgraph declares (None: unknown).
    """

    index: int
    backend: str
    nodes: Counter = field(default_factory=Counter)
    quantized_values: int = 0
    inputs: int | None = None
    outputs: int | None = None


@dataclass(frozen=True)
class PteProgram:
    """What a ``.pte`` holds besides its ops: schema version, method names and delegates."""

    version: int
    methods: tuple[str, ...]
    delegates: tuple[Delegate, ...]


def read_ops(path: str | Path) -> OpGraph:
    """The ops and tensors of the first method (``forward``) of the ``.pte`` file at ``path``.

    Raises:
        ArtifactError: the file is not an ExecuTorch program.
    """
    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != PROGRAM_IDENTIFIER:
        raise ArtifactError(f"{str(path)!r} is not an ExecuTorch program (no {PROGRAM_IDENTIFIER.decode()} "
                            f"identifier at byte 4, found {data[4:8]!r}); export it again with --target executorch")
    try:
        return _read_program(data)
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as exc:  # a truncated or garbled flatbuffer
        raise ArtifactError(f"{str(path)!r} is a damaged ExecuTorch program ({type(exc).__name__}: {exc})") from exc


def delegated_subgraphs(graph: OpGraph) -> int:
    """How many delegate calls the main graph makes (each a subgraph a backend runs whole)."""
    return sum(1 for op in graph.main_ops if op.type.startswith(DELEGATE_PREFIX))


def outside_delegates(graph: OpGraph) -> Counter:
    """``{operator: count}`` of the main graph's kernel calls: the ops no backend took, which
    ExecuTorch runs with its portable or optimized CPU kernels."""
    return Counter(op.type for op in graph.main_ops if not op.type.startswith(DELEGATE_PREFIX))


def _read_program(data: bytes) -> OpGraph:
    program = _Table.root(data)
    plans = program.tables(1)
    if not plans:
        raise ValueError("the program has no execution plan")
    plan = plans[0]
    method = plan.string(0) or "forward"
    tensors = _tensors(plan)
    delegates = tuple(_delegate(i, entry, program, data) for i, entry in enumerate(plan.tables(7)))
    operators = [f"{op.string(0)}.{op.string(1)}" if op.string(1) else op.string(0) for op in plan.tables(6)]
    ops: list[Op] = []
    for chain in plan.tables(5):
        for instruction in chain.tables(2):
            kind, call = instruction.scalar(0, "uint8"), instruction.table(1)
            if call is None:
                continue
            if kind == _KERNEL_CALL:
                args = _keys(call.numbers(1, "int32"), tensors)
                ops.append(Op(operators[call.scalar(0, "int32")], "", args, args[-1:], method))
            elif kind == _DELEGATE_CALL:
                ops.append(_delegate_call(call, delegates, tensors, method))
    for delegate in delegates:
        graph = f"{method}/delegate{delegate.index}"
        for node, count in delegate.nodes.items():
            ops.extend(Op(XNNPACK_PREFIX + node, "", (), (), graph) for _ in range(count))
    return OpGraph(
        FORMAT, tuple(ops), tensors, main=method,
        inputs=_keys(plan.numbers(3, "int32"), tensors), outputs=_keys(plan.numbers(4, "int32"), tensors),
        version=program.scalar(0, "uint32"),
        raw=PteProgram(program.scalar(0, "uint32"), tuple(p.string(0) for p in plans), delegates),
    )


def _tensors(plan: _Table) -> dict[TensorKey, Tensor]:
    tensors: dict[TensorKey, Tensor] = {}
    for index, value in enumerate(plan.tables(2)):
        if value.scalar(0, "uint8") != _TENSOR_VALUE:
            continue
        tensor = value.table(1)
        shape = tuple(int(d) for d in tensor.numbers(2, "int32"))
        # data in the file and no memory-planned allocation: a constant (weights); mutable otherwise
        constant = tensor.scalar(5, "uint32") > 0 and tensor.table(6) is None
        tensors[index] = Tensor("", shape, SCALAR_TYPES.get(tensor.scalar(0, "int8"), ""), constant)
    return tensors


def _keys(indices: tuple[int, ...], tensors: dict[TensorKey, Tensor]) -> tuple[TensorKey, ...]:
    return tuple(i for i in indices if i in tensors)


def _delegate_call(call: _Table, delegates: tuple[Delegate, ...], tensors: dict[TensorKey, Tensor],
                   method: str) -> Op:
    delegate = delegates[call.scalar(0, "int32")]
    args = call.numbers(1, "int32")
    split = delegate.inputs if delegate.inputs is not None and delegate.inputs <= len(args) else len(args)
    return Op(DELEGATE_PREFIX + delegate.backend, f"delegate{delegate.index}", _keys(args[:split], tensors),
              _keys(args[split:], tensors), method, raw=delegate)


def _delegate(index: int, entry: _Table, program: _Table, data: bytes) -> Delegate:
    backend = entry.string(0)
    payload = _payload(entry.table(1), program, data)
    if payload is None:
        return Delegate(index, backend)
    graph = _xnnpack_graph(payload)
    if graph is None:
        return Delegate(index, backend)
    nodes = Counter()
    for node in graph.tables(1):
        kind = node.scalar(0, "uint8")
        nodes[XNNPACK_NODES[kind] if kind < len(XNNPACK_NODES) else f"node{kind}"] += 1
    quantized = 0
    for value in graph.tables(2):
        inner = value.table(1)
        if value.scalar(0, "uint8") == 2 and inner is not None:  # XNNQuantizedTensorValue
            inner = inner.table(0)
        if inner is not None and inner.scalar(0, "int16") in XNNPACK_QUANTIZED:
            quantized += 1
    return Delegate(index, backend, nodes, quantized, len(graph.numbers(4, "uint32")), len(graph.numbers(5, "uint32")))


def _payload(reference: _Table | None, program: _Table, data: bytes) -> bytes | None:
    """The bytes a backend was given: inline in the flatbuffer or in a segment after it."""
    if reference is None:
        return None
    location, index = reference.scalar(0, "int8"), reference.scalar(1, "uint32")
    if location == _SEGMENT:
        segments = program.tables(4)
        if index >= len(segments):
            return None
        base = _segment_base(data)
        start = base + segments[index].scalar(0, "uint64")
        return data[start:start + segments[index].scalar(1, "uint64")]
    inline = program.tables(3)
    return bytes(inline[index].numbers(0, "uint8")) if index < len(inline) else None


def _segment_base(data: bytes) -> int:
    """Where segments start: the extended header (``eh00`` after the identifier) says."""
    if data[8:12] != b"eh00":
        return 0
    return int.from_bytes(data[24:32], "little")


def _xnnpack_graph(payload: bytes) -> _Table | None:
    """The XNNGraph root of an XNNPACK payload (behind its ``XH00`` header, or bare), or None."""
    if payload[4:8] == XNNPACK_HEADER:
        offset = int.from_bytes(payload[10:14], "little")
        size = int.from_bytes(payload[14:18], "little")
        payload = payload[offset:offset + size]
    if payload[4:8] != XNNPACK_IDENTIFIER:
        return None
    return _Table.root(payload)


class _Table:
    """A flatbuffer table read by field index (``vtable slot = 4 + 2 * index``, schema order)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    @classmethod
    def root(cls, data: bytes) -> _Table:
        flatbuffers = require("flatbuffers", "executorch", "reading .pte files")
        from flatbuffers.table import Table

        start = flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0)
        return cls(Table(data, start))

    def _field(self, index: int) -> int:
        offset = self._table.Offset(4 + 2 * index)
        return offset + self._table.Pos if offset else 0

    def scalar(self, index: int, kind: str) -> int:
        from flatbuffers import number_types

        at = self._field(index)
        flags = getattr(number_types, kind.capitalize() + "Flags")
        return int(self._table.Get(flags, at)) if at else 0

    def string(self, index: int) -> str:
        at = self._field(index)
        return self._table.String(at).decode() if at else ""

    def table(self, index: int) -> _Table | None:
        from flatbuffers.table import Table

        at = self._field(index)
        return _Table(Table(self._table.Bytes, self._table.Indirect(at))) if at else None

    def tables(self, index: int) -> list[_Table]:
        from flatbuffers.table import Table

        at = self._field(index)
        if not at:
            return []
        start, count = self._table.Vector(at - self._table.Pos), self._table.VectorLen(at - self._table.Pos)
        return [_Table(Table(self._table.Bytes, self._table.Indirect(start + 4 * i))) for i in range(count)]

    def numbers(self, index: int, kind: str) -> tuple[int, ...]:
        from flatbuffers import number_types

        at = self._field(index)
        if not at:
            return ()
        flags = getattr(number_types, kind.capitalize() + "Flags")
        relative = at - self._table.Pos
        start, count = self._table.Vector(relative), self._table.VectorLen(relative)
        return tuple(int(self._table.Get(flags, start + i * flags.bytewidth)) for i in range(count))
