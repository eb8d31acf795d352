"""The one shape every model format is read into: ops in execution order, and their tensors.

A reader (``edgevit.formats.<format>.read_ops``) turns a file into an :class:`OpGraph`; the
export op report and the quantizers both read files through it, so each format's file is
parsed in one place. Tensors are keyed the way the format refers to them: a TFLite file by
tensor index (names may be empty: edgevit strips them from int8 files), ONNX and ML Programs
by name. What only one format has stays on the op's ``raw`` object (ONNX attributes and
metadata, MIL attributes, the TFLite operator table).

Example:
    >>> graph = OpGraph("onnx", (Op("Conv", "conv0", ("x", "w"), ("y",)),),
    ...                 {"y": Tensor("y", (1, 8, 4, 4, 2), "float32")})
    >>> graph.counts()
    Counter({'Conv': 1})
    >>> graph.high_rank()
    {'y': 5}
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: how a format refers to a tensor: a TFLite index (``(subgraph, index)`` outside the first
#: subgraph) or an ONNX / MIL name
TensorKey = int | str | tuple[int, int]
#: ranks above this are slow or unsupported on mobile delegates and the Neural Engine
MAX_FAST_RANK = 4


@dataclass(frozen=True)
class Tensor:
    """A value of the graph.

    Attributes:
        name: the name written in the file (``""`` where it was stripped).
        shape: dimensions (``None`` for one the file leaves symbolic), or ``None`` when the
            value is not a tensor or its rank is unknown.
        dtype: numpy name (``"float32"``, ``"int8"``), or ``""`` when unknown.
        constant: stored in the file (weights, ONNX initializers, MIL ``const`` outputs).
        value: the value of an integer scalar constant (a conv's ``groups`` and the like),
            where the format needs it; ``None`` otherwise.
    """

    name: str
    shape: tuple[int | None, ...] | None = None
    dtype: str = ""
    constant: bool = False
    value: int | None = None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)


@dataclass(frozen=True)
class Op:
    """One operation, as the file stores it.

    Attributes:
        type: the format's op type (``Conv``, ``FULLY_CONNECTED``, ``CUSTOM:name``, ``linear``).
        name: its name in the file, or ``""``.
        inputs / outputs: tensor keys, in the op's order (absent optional inputs left out).
        graph: where it sits: the TFLite subgraph index, the ONNX graph (``""`` for the main
            graph, else the function or ``node/attribute`` subgraph), the MIL function (nested
            blocks as ``function/op name``).
        params: inputs by parameter name, where the format names them (MIL: ``weight``, ``x``...).
        groups: a convolution's groups (1 where the op has none).
        raw: the format's own object for this op (``onnx.NodeProto``, MIL ``Operation``
            proto, TFLite ``Operator``), for details only one format has.
    """

    type: str
    name: str = ""
    inputs: tuple[TensorKey, ...] = ()
    outputs: tuple[TensorKey, ...] = ()
    graph: int | str = 0
    params: Mapping[str, tuple[TensorKey, ...]] = field(default_factory=dict, hash=False)
    groups: int = 1
    raw: Any = field(default=None, compare=False, repr=False, hash=False)


@dataclass(frozen=True)
class OpGraph:
    """A model file's ops in execution order, with the tensors they read and write.

    Attributes:
        format: ``"onnx"``, ``"tflite"`` or ``"mlprogram"``.
        ops: every op of every graph, the main graph's first.
        tensors: ``{key: Tensor}`` for every tensor the file describes.
        main: the ``graph`` of the ops a model runs (TFLite subgraph 0, ONNX ``""``, MIL ``main``).
        inputs / outputs: the main graph's input and output keys.
        opset: the ONNX opset (default domain) or the MIL opset name (``CoreML7``); TFLite: None.
        version: the Core ML specification version, the ONNX IR version, the TFLite schema version.
        raw: the loaded file (``onnx.ModelProto``, Core ML ``Model`` spec, TFLite ``Model``).
    """

    format: str
    ops: tuple[Op, ...]
    tensors: Mapping[TensorKey, Tensor] = field(default_factory=dict, hash=False)
    main: int | str = 0
    inputs: tuple[TensorKey, ...] = ()
    outputs: tuple[TensorKey, ...] = ()
    opset: int | str | None = None
    version: int | None = None
    raw: Any = field(default=None, compare=False, repr=False, hash=False)

    @property
    def main_ops(self) -> tuple[Op, ...]:
        """The ops of the main graph (no function bodies, nested blocks or other subgraphs)."""
        return tuple(op for op in self.ops if op.graph == self.main)

    def counts(self, ops: Iterable[Op] | None = None) -> Counter[str]:
        """``{op type: count}`` over ``ops`` (every op by default)."""
        return Counter(op.type for op in (self.ops if ops is None else ops))

    def high_rank(self, limit: int = MAX_FAST_RANK, constants: bool = True) -> dict[str, int]:
        """``{tensor name: rank}`` of the tensors of rank above ``limit``, in the file's order
        (``constants=False`` leaves out the ones stored in the file)."""
        return {t.name: t.rank for t in self.tensors.values()
                if t.rank is not None and t.rank > limit and (constants or not t.constant)}

    def constants(self) -> set[TensorKey]:
        """Keys of the tensors stored in the file."""
        return {key for key, tensor in self.tensors.items() if tensor.constant}

    def consumers(self, ops: Iterable[Op] | None = None) -> dict[TensorKey, list[Op]]:
        """``{tensor key: the ops that read it}`` among ``ops`` (every op by default), in op order."""
        readers: dict[TensorKey, list[Op]] = defaultdict(list)
        for op in self.ops if ops is None else ops:
            for key in op.inputs:
                readers[key].append(op)
        return dict(readers)

    def names(self, keys: Iterable[TensorKey]) -> list[str]:
        """The names of the tensors ``keys`` (``""`` for one the file does not describe)."""
        return [self.tensors[k].name if k in self.tensors else "" for k in keys]
