"""Kernels: the units a device runs and a profile times, each a kind and its shape.

A *kernel* is what a backend executes as one unit after its graph optimisations (nn-Meter's
"maximal fusion unit"): a linear layer with its bias, a batched matmul, a softmax, one
element-wise op. Its cost depends on its kind and shape; :data:`KINDS` says, for every kind,
which shape parameters (*dims*) describe it and which *features* its cost is fitted on
(FLOPs, bytes moved, element and row counts), so the op mapping, the profile and the fit
all read one table.

Dims are integers named as in the literature: ``M, K, N`` for a ``(M, K) @ (K, N)`` product,
``B`` for a batch of them; convolutions ``N, IH, IW, CIN`` (input), ``OH, OW, COUT`` (output),
``KH, KW`` and ``G`` (groups); pools their input and window; a resize its planes ``C`` and
their sizes in and out; row-wise ops ``ROWS, COLS``;
element-wise ops ``E`` elements read from ``I`` full-size inputs.

Example:
    >>> k = Kernel.of("linear", M=197, K=192, N=576)
    >>> features(k)["flops"]
    43570944.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edgevit.errors import InvalidArgumentError

__all__ = ["DTYPES", "KINDS", "MAPPING_VERSION", "Kernel", "KernelKind", "features", "element_size"]

#: the version of the op-to-kernel mapping (the op table, each backend's fusion rules and layout
#: walks): the predictor version that last changed which kernels a graph maps to. A profile records
#: the one its probe mapped its calibration and reference models with; the kernels of a profile
#: mapped otherwise are not the ones this edgevit sees in the same files
#: (:func:`edgevit.predict.fit.mapping_note`). Version 8: onnxruntime's QDQ groups around a
#: DequantizeLinear that several ops read; 9: an ONNX bilinear resize is a ``resize`` kernel, not a copy
MAPPING_VERSION = 9

#: the precisions a kernel is timed in; an op's precision comes from its input tensor's dtype
DTYPES: dict[str, int] = {"fp32": 4, "int8": 1}


def element_size(dtype: str) -> int:
    """Bytes per element of ``dtype`` (``"fp32"`` or ``"int8"``)."""
    return DTYPES[dtype]


@dataclass(frozen=True)
class Kernel:
    """One kernel: its kind, its shape and its precision.

    Attributes:
        kind: a name of :data:`KINDS` (``"linear"``, ``"matmul"``, ``"softmax"``...).
        dims: ``((name, value), ...)`` in the kind's order (see :meth:`of`).
        dtype: ``"fp32"`` or ``"int8"``.
    """

    kind: str
    dims: tuple[tuple[str, int], ...] = ()
    dtype: str = "fp32"

    @classmethod
    def of(cls, kind: str, dtype: str = "fp32", **dims: int) -> Kernel:
        """Build and validate a kernel: ``Kernel.of("matmul", B=12, M=197, K=64, N=197)``.

        Raises:
            InvalidArgumentError: unknown kind or dtype, missing or extra dims, a dim below 1.
        """
        if kind not in KINDS:
            raise InvalidArgumentError(f"unknown kernel kind {kind!r}; known: {', '.join(KINDS)}")
        if dtype not in DTYPES:
            raise InvalidArgumentError(f"unknown kernel dtype {dtype!r}; known: {', '.join(DTYPES)}")
        names = KINDS[kind].dims
        if set(dims) != set(names):
            raise InvalidArgumentError(f"a {kind!r} kernel has dims {', '.join(names) or '(none)'}, got {', '.join(dims) or '(none)'}")
        bad = {name: value for name, value in dims.items() if not isinstance(value, int) or isinstance(value, bool) or value < 1}
        if bad:
            raise InvalidArgumentError(f"kernel dims must be positive integers, got {bad} for a {kind!r} kernel")
        return cls(kind, tuple((name, dims[name]) for name in names), dtype)

    def dim(self, name: str) -> int:
        return dict(self.dims)[name]

    def describe(self) -> str:
        """``linear[M=197,K=192,N=576] fp32``."""
        shape = ",".join(f"{name}={value}" for name, value in self.dims)
        return f"{self.kind}[{shape}] {self.dtype}"


@dataclass(frozen=True)
class KernelKind:
    """What a kind of kernel is measured by.

    Attributes:
        dims: the shape parameters, in order.
        features: ``dims, element size -> {feature: value}``; the cost model of the kind is
            ``ms = overhead + sum(coefficient * feature)`` (see :mod:`edgevit.predict.fit`).
        free: costs nothing on any backend (metadata only: a reshape); never fitted.
        about: one line for docs and reports.
    """

    dims: tuple[str, ...]
    features: Callable[[Mapping[str, int], int], dict[str, float]]
    free: bool = False
    about: str = ""


def _product(d: Mapping[str, int]) -> dict[str, float]:
    b = d.get("B", 1)
    return {"flops": 2.0 * b * d["M"] * d["K"] * d["N"]}


def _linear(d: Mapping[str, int], e: int) -> dict[str, float]:
    return {**_product(d), "bytes": float(e * (d["M"] * d["K"] + d["K"] * d["N"] + d["M"] * d["N"]))}


def _matmul(d: Mapping[str, int], e: int) -> dict[str, float]:
    return {**_product(d), "bytes": float(e * d["B"] * (d["M"] * d["K"] + d["K"] * d["N"] + d["M"] * d["N"]))}


def _conv(d: Mapping[str, int], e: int) -> dict[str, float]:
    outputs = d["N"] * d["OH"] * d["OW"] * d["COUT"]
    weights = d["COUT"] * (d["CIN"] // d["G"]) * d["KH"] * d["KW"]
    flops = 2.0 * outputs * (d["CIN"] // d["G"]) * d["KH"] * d["KW"]
    return {"flops": flops, "bytes": float(e * (d["N"] * d["IH"] * d["IW"] * d["CIN"] + weights + outputs))}


def _pool(d: Mapping[str, int], e: int) -> dict[str, float]:
    outputs = d["N"] * d["OH"] * d["OW"] * d["C"]
    return {"flops": float(outputs * d["KH"] * d["KW"]), "bytes": float(e * (d["N"] * d["IH"] * d["IW"] * d["C"] + outputs))}


def _rows(d: Mapping[str, int], e: int) -> dict[str, float]:
    return {"elements": float(d["ROWS"] * d["COLS"]), "rows": float(d["ROWS"])}


def _elements(d: Mapping[str, int], e: int) -> dict[str, float]:
    return {"elements": float(d["E"]), "bytes": float(e * d["E"] * (d["I"] + 1))}


def _reduce(d: Mapping[str, int], e: int) -> dict[str, float]:
    return {"elements": float(d["E"]), "outputs": float(d["OUT"])}


def _resize(d: Mapping[str, int], e: int) -> dict[str, float]:
    return {"elements": float(d["C"] * d["OH"] * d["OW"])}  # each output interpolates its own inputs


def _copy(d: Mapping[str, int], e: int) -> dict[str, float]:
    return {"bytes": float(2 * e * d["E"])}


def _none(d: Mapping[str, int], e: int) -> dict[str, float]:
    return {}


_CONV_DIMS = ("N", "IH", "IW", "CIN", "OH", "OW", "COUT", "KH", "KW", "G")

#: every kernel kind, by name (the one table the mapping, the profile and the fit read)
KINDS: dict[str, KernelKind] = {
    "run": KernelKind((), _none, about="one inference call of an empty model: the runtime's fixed cost"),
    "linear": KernelKind(("M", "K", "N"), _linear, about="(M,K) @ constant (K,N) weights, bias fused where the backend does"),
    "matmul": KernelKind(("B", "M", "K", "N"), _matmul, about="B products of two activations: attention's QK^T and AV"),
    "conv": KernelKind(_CONV_DIMS, _conv, about="KHxKW convolution (KH*KW > 1), groups G < CIN"),
    "conv1x1": KernelKind(_CONV_DIMS, _conv, about="pointwise convolution (1x1, one group)"),
    "dwconv": KernelKind(_CONV_DIMS, _conv, about="depthwise convolution (G == CIN)"),
    "pool": KernelKind(("N", "IH", "IW", "C", "OH", "OW", "KH", "KW"), _pool, about="average or max pooling, global included"),
    "softmax": KernelKind(("ROWS", "COLS"), _rows, about="softmax over the last axis"),
    "layernorm": KernelKind(("ROWS", "COLS"), _rows, about="layer normalisation over the last axis (fused)"),
    "gelu": KernelKind(("E", "I"), _elements, about="GELU (erf or tanh form), fused into one kernel"),
    "elementwise": KernelKind(("E", "I"), _elements, about="arithmetic on E elements (add, mul, relu...), I full-size inputs"),
    "math": KernelKind(("E", "I"), _elements, about="transcendental element-wise op (erf, exp, sqrt, sigmoid...)"),
    "quantize": KernelKind(("E", "I"), _elements, about="float to int8 (ONNX QuantizeLinear, TFLite QUANTIZE)"),
    "dequantize": KernelKind(("E", "I"), _elements, about="int8 to float (ONNX DequantizeLinear, TFLite DEQUANTIZE)"),
    "reduce": KernelKind(("E", "OUT"), _reduce, about="a reduction (mean, sum) of E elements to OUT"),
    "copy": KernelKind(("E",), _copy, about="data movement of E elements (transpose, concat, slice, gather, pad, "
                                           "nearest-neighbour resize)"),
    "resize": KernelKind(("C", "IH", "IW", "OH", "OW"), _resize,
                         about="bilinear (or cubic) resize of C planes from IHxIW to OHxOW, the batch folded into C "
                               "(onnxruntime; LiteRT's is priced as a copy)"),
    "reorder": KernelKind(("E",), _copy, about="a layout conversion of E elements that the backend adds and the file "
                                               "does not hold (onnxruntime's NCHWc ReorderInput / ReorderOutput)"),
    "free": KernelKind((), _none, free=True, about="no work at run time (reshape, constant folded away)"),
}


def features(kernel: Kernel) -> dict[str, float]:
    """The cost features of ``kernel`` (``{"flops": ..., "bytes": ...}`` and the like)."""
    return KINDS[kernel.kind].features(dict(kernel.dims), element_size(kernel.dtype))
