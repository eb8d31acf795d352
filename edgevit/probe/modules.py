"""One small torch module per calibration kernel, exported like any zoo model (needs torch).

Each module takes one float32 tensor ``[1, ...]`` and runs the kernel once, written the way
the zoo's models write it (``nn.Linear``, ``nn.LayerNorm``, ``q @ k.transpose(-2, -1)``), so
the exporter emits the patterns the predictor maps (MatMul + Add, the erf GELU, ...). Where a
format needs more (TFLite's layout transposes around a convolution, the slice feeding an AV
product), the probe reads the exported file and records those kernels as the timing's
``extra``. A chain (:data:`CHAINS`, ``module_for(kernel, copies=4)``) runs the kernel several
times one after another: shape-keeping kinds repeat with fresh weights, a linear or 1x1 conv
alternates with its way back (K->N, N->K), attention alternates QK^T and AV, and a reduction
subtracts itself (``x - mean(x)``) to keep its shape.

Example:
    >>> module, shape = module_for(Kernel.of("linear", M=197, K=192, N=576))
    >>> shape
    (1, 197, 192)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgevit.errors import InvalidArgumentError, require
from edgevit.predict import Kernel

__all__ = ["BUILDERS", "CHAINS", "module_for"]


def _lambda(fn: Callable[[Any], Any]) -> Any:
    torch = require("torch", "export", "building calibration models")

    class Kernel(torch.nn.Module):
        def forward(self, x):
            return fn(x)

    return Kernel()


def _run(d: dict[str, int]):
    return _lambda(lambda x: x + 1.0), (1, 1)


def _linear(d):
    torch = require("torch", "export")
    return torch.nn.Linear(d["K"], d["N"]), (1, d["M"], d["K"])


def _matmul(d):
    if d["N"] == d["M"]:  # attention scores: q @ k^T from one tensor (the transpose folds into the product)
        return _lambda(lambda x: x @ x.transpose(-2, -1)), (1, d["B"], d["M"], d["K"])
    m = d["M"]  # attention times values: a (M x M) and v (M x N) sliced from one tensor
    return _lambda(lambda x: x[..., :m] @ x[..., m:]), (1, d["B"], m, m + d["N"])


def _softmax(d):
    return _lambda(lambda x: x.softmax(-1)), (1, d["ROWS"], d["COLS"])


def _layernorm(d):
    torch = require("torch", "export")
    return torch.nn.LayerNorm(d["COLS"]), (1, d["ROWS"], d["COLS"])


def _gelu(d):
    torch = require("torch", "export")
    return torch.nn.GELU(), (1, d["E"])


def _elementwise(d):
    if d["I"] == 1:
        return _lambda(lambda x: x * 0.5), (1, d["E"])
    return _lambda(lambda x: x * x), (1, d["E"])


def _math(d):
    return _lambda(lambda x: x.exp()), (1, d["E"])


def _reduce(d):
    return _lambda(lambda x: x.mean(-1, keepdim=True)), (1, d["OUT"], d["E"] // d["OUT"])


def _copy(d):
    side = _factor(d["E"])
    return _lambda(lambda x: x.transpose(1, 2)), (1, side, d["E"] // side)


def _resize(d):
    torch = require("torch", "export")
    upsample = torch.nn.Upsample(size=(d["OH"], d["OW"]), mode="bilinear", align_corners=False)  # ONNX half_pixel
    return upsample, (1, d["C"], d["IH"], d["IW"])


def _conv(d):
    torch = require("torch", "export")
    stride = -(-d["IH"] // d["OH"])  # ceil: 7 -> 4 is stride 2
    conv = torch.nn.Conv2d(d["CIN"], d["COUT"], (d["KH"], d["KW"]), stride=stride, padding=(d["KH"] // 2, d["KW"] // 2),
                           groups=d["G"])
    return conv, (1, d["CIN"], d["IH"], d["IW"])


def _pool(d):
    torch = require("torch", "export")
    return torch.nn.AvgPool2d((d["KH"], d["KW"])), (1, d["C"], d["IH"], d["IW"])


def _reorder(d, copies=1):
    """A 1x1 max pool runs in onnxruntime's blocked layout and the scaling after it does not: each
    copy reorders its input into the layout and its output back out of it."""
    torch = require("torch", "export")
    channels = next((c for c in (64, 16, 8) if d["E"] % c == 0), 1)  # a multiple of the block (8; 16 with AVX-512)
    side = _factor(d["E"] // channels)

    def pooled(x):
        for _ in range(copies):
            x = torch.nn.functional.max_pool2d(x, 1) * 0.5
        return x

    return _lambda(pooled), (1, channels, side, d["E"] // channels // side)


def _factor(n: int) -> int:
    """The largest divisor of ``n`` not above its square root (a near-square 2-D shape for ``n`` elements)."""
    best = 1
    for f in range(1, int(n**0.5) + 1):
        if n % f == 0:
            best = f
    return best


#: kernel kind -> builder of (module, input shape)
BUILDERS: dict[str, Callable[[dict[str, int]], tuple[Any, tuple[int, ...]]]] = {
    "run": _run, "linear": _linear, "matmul": _matmul, "softmax": _softmax, "layernorm": _layernorm, "gelu": _gelu,
    "elementwise": _elementwise, "math": _math, "reduce": _reduce, "copy": _copy, "resize": _resize,
    "conv": _conv, "conv1x1": _conv, "dwconv": _conv, "pool": _pool, "reorder": _reorder,
}


def _sequence(layers: list[Any]) -> Any:
    torch = require("torch", "export")
    return torch.nn.Sequential(*layers)


def _linear_chain(d, copies):  # K -> N, N -> K, ...: the kernel and its way back, alternately
    torch = require("torch", "export")
    sizes = [(d["K"], d["N"]) if i % 2 == 0 else (d["N"], d["K"]) for i in range(copies)]
    return _sequence([torch.nn.Linear(a, b) for a, b in sizes]), (1, d["M"], d["K"])


def _attention_chain(d, copies):  # s = x @ x^T (QK^T), then x = s @ x (AV), alternately
    width = d["K"] if d["N"] == d["M"] else d["N"]

    def pairs(x):
        for i in range(copies):
            if i % 2 == 0:
                keep, x = x, x @ x.transpose(-2, -1)
            else:
                x = x @ keep
        return x

    return _lambda(pairs), (1, d["B"], d["M"], width)


def _repeat(make: Callable[[dict[str, int]], tuple[Any, tuple[int, ...]]]):
    """A chain of ``copies`` fresh modules of one shape-keeping kernel (its own weights each)."""

    def chain(d, copies):
        layers, shapes = zip(*(make(d) for _ in range(copies)), strict=True)
        return _sequence(list(layers)), shapes[0]

    return chain


def _reduce_chain(d, copies):  # x - mean(x): the reduction, and a subtraction to keep the shape
    def centred(x):
        for _ in range(copies):
            x = x - x.mean(-1, keepdim=True)
        return x

    return _lambda(centred), (1, d["OUT"], d["E"] // d["OUT"])


def _conv1x1_chain(d, copies):  # CIN -> COUT, COUT -> CIN, ...
    torch = require("torch", "export")
    sizes = [(d["CIN"], d["COUT"]) if i % 2 == 0 else (d["COUT"], d["CIN"]) for i in range(copies)]
    return _sequence([torch.nn.Conv2d(a, b, 1) for a, b in sizes]), (1, d["CIN"], d["IH"], d["IW"])


#: kernel kind -> builder of (module running ``copies`` of the kernel one after another, input shape):
#: the kinds whose cost inside a model a chain measures (a kernel timed alone also pays for being alone)
CHAINS: dict[str, Callable[[dict[str, int], int], tuple[Any, tuple[int, ...]]]] = {
    "linear": _linear_chain, "matmul": _attention_chain, "softmax": _repeat(_softmax),
    "layernorm": _repeat(_layernorm), "gelu": _repeat(_gelu), "elementwise": _repeat(_elementwise),
    "math": _repeat(_math), "reduce": _reduce_chain, "conv1x1": _conv1x1_chain, "dwconv": _repeat(_conv),
    "reorder": _reorder,
}


def module_for(kernel: Kernel, copies: int = 1) -> tuple[Any, tuple[int, ...]]:
    """A torch module running ``kernel`` (``copies`` > 1: a chain of that many, for the kinds in
    :data:`CHAINS`) and the shape of its one input.

    Raises:
        InvalidArgumentError: no builder for the kernel's kind, or no chain of it.
    """
    if kernel.kind not in BUILDERS:
        raise InvalidArgumentError(f"no calibration model for {kernel.kind!r} kernels; buildable: {', '.join(BUILDERS)}")
    if copies > 1 and kernel.kind not in CHAINS:
        raise InvalidArgumentError(f"no chain of {kernel.kind!r} kernels; chainable: {', '.join(CHAINS)}")
    build = BUILDERS[kernel.kind] if copies == 1 else lambda d: CHAINS[kernel.kind](d, copies)
    module, shape = build(dict(kernel.dims))
    return module.eval(), shape
