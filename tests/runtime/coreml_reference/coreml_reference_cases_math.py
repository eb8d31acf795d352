"""Op cases: element-wise, activation, matrix and reduction ops (expectations in float64)."""

from __future__ import annotations

import math

import numpy as np
from coreml_reference_cases import OpCase, half, rand, torch_fn

X = rand(2, 3, 4)
Y = rand(3, 1, low=0.5, high=2.0, seed=1)  # broadcasts against X; away from zero
POSITIVE = rand(2, 3, 4, low=0.1, high=3.0, seed=2)
UNIT = rand(2, 3, 4, low=-0.9, high=0.9, seed=3)
XH = half(2, 3, 4)

# -- binary ---------------------------------------------------------------------------------------

_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.true_divide,
    "maximum": np.maximum, "minimum": np.minimum, "floor_div": np.floor_divide, "mod": np.mod,
}
_COMPARE = {
    "equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal,
}
_LOGICAL = {"logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor}


def _binary(name):
    return lambda mb, x, y: getattr(mb, name)(x=x, y=y)


def _compare(name):
    return lambda mb, x, y: mb.cast(x=getattr(mb, name)(x=x, y=y), dtype="fp32")


def _logical(name):
    def build(mb, x, y):
        return mb.cast(x=getattr(mb, name)(x=mb.greater(x=x, y=0.0), y=mb.less(x=y, y=1.0)), dtype="fp32")

    return build


ROUNDED = np.round(X * 2) / 2  # many exact ties, so equal / less_equal are exercised
CASES = [OpCase(n, "broadcast", _binary(n), [X, Y], f) for n, f in _BINARY.items()]
CASES += [
    OpCase("add", "fp16", _binary("add"), [XH, half(3, 1, seed=1)], np.add, rtol=1e-3, atol=1e-3),
    OpCase("add", "fp16-overflow-to-inf", _binary("add"), [np.full((2, 2), 60000, np.float16)] * 2,
           lambda x, y: np.full((2, 2), np.inf)),
    OpCase("mul", "int32", _binary("mul"), [np.arange(-6, 6, dtype=np.int32).reshape(3, 4),
                                            np.array([[3], [-2], [5]], np.int32)], np.multiply),
    OpCase("pow", "positive-base", _binary("pow"), [POSITIVE, Y], np.power),
    OpCase("mod", "negative-operands", _binary("mod"), [X, -Y], np.mod),
]
CASES += [OpCase(n, "broadcast", _compare(n), [ROUNDED, np.round(Y * 2) / 2], lambda x, y, f=f: f(x, y) * 1.0,
                 also=("cast",)) for n, f in _COMPARE.items()]
CASES += [OpCase(n, "masks", _logical(n), [X, rand(2, 3, 4, seed=9)], lambda x, y, f=f: f(x > 0, y < 1) * 1.0,
                 also=("cast", "greater", "less")) for n, f in _LOGICAL.items()]

# -- unary ----------------------------------------------------------------------------------------

_UNARY = {
    "abs": (X, np.abs), "acos": (UNIT, np.arccos), "asin": (UNIT, np.arcsin), "atan": (X, np.arctan),
    "atanh": (UNIT, np.arctanh), "ceil": (X * 3, np.ceil), "cos": (X, np.cos), "cosh": (X, np.cosh),
    "exp": (X, np.exp), "exp2": (X, np.exp2), "floor": (X * 3, np.floor), "sign": (ROUNDED, np.sign),
    "sin": (X, np.sin), "sinh": (X, np.sinh), "sqrt": (POSITIVE, np.sqrt), "square": (X, np.square),
    "tan": (UNIT, np.tan), "tanh": (X, np.tanh),
    "round": (np.array([[-2.5, -1.5, -0.5, 0.5], [1.5, 2.5, 0.49, -0.51]], np.float32), np.round),
    "erf": (rand(4, 64, low=-7, high=7), np.vectorize(math.erf)),
}
CASES += [OpCase(n, "values", lambda mb, x, n=n: getattr(mb, n)(x=x), [a], f) for n, (a, f) in _UNARY.items()]
CASES += [
    OpCase("erf", "fp16", lambda mb, x: mb.erf(x=x), [XH], np.vectorize(math.erf), rtol=1e-3, atol=1e-3),
    OpCase("rsqrt", "epsilon", lambda mb, x: mb.rsqrt(x=x, epsilon=0.5), [POSITIVE], lambda x: 1 / np.sqrt(x + 0.5)),
    OpCase("rsqrt", "default-epsilon", lambda mb, x: mb.rsqrt(x=x), [POSITIVE], lambda x: 1 / np.sqrt(x + 1e-12)),
    OpCase("inverse", "epsilon", lambda mb, x: mb.inverse(x=x, epsilon=0.25), [POSITIVE], lambda x: 1 / (x + 0.25)),
    OpCase("log", "epsilon", lambda mb, x: mb.log(x=x, epsilon=0.5), [POSITIVE], lambda x: np.log(x + 0.5)),
    OpCase("clip", "range", lambda mb, x: mb.clip(x=x, alpha=-0.5, beta=1.0), [X], lambda x: np.clip(x, -0.5, 1)),
    OpCase("threshold", "alpha", lambda mb, x: mb.threshold(x=x, alpha=0.3), [X], lambda x: np.maximum(x, 0.3)),
    OpCase("logical_not", "mask", lambda mb, x: mb.cast(x=mb.logical_not(x=mb.greater(x=x, y=0.0)), dtype="fp32"),
           [X], lambda x: (x <= 0) * 1.0, also=("greater", "cast")),
    OpCase("cast", "fp32-to-int32-truncates", lambda mb, x: mb.cast(x=x, dtype="int32"), [X * 3],
           lambda x: np.trunc(x).astype(np.int32)),
    OpCase("cast", "fp32-to-fp16-rounds", lambda mb, x: mb.cast(x=x, dtype="fp16"), [rand(3, 5, low=-1e5, high=1e5)],
           lambda x: x.astype(np.float16).astype(np.float64), rtol=0, atol=0, output_dtype="float16"),
    OpCase("cast", "fp16-to-fp32", lambda mb, x: mb.cast(x=x, dtype="fp32"), [XH], lambda x: x, rtol=0, atol=0,
           output_dtype="float32"),
    OpCase("select", "mask", lambda mb, x, y: mb.select(cond=mb.greater(x=x, y=0.0), a=x, b=y), [X, rand(2, 3, 4, seed=5)],
           lambda x, y: np.where(x > 0, x, y), also=("greater",)),
]

# -- activations ----------------------------------------------------------------------------------


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _act(name, **kwargs):
    return lambda mb, x: getattr(mb, name)(x=x, **kwargs)


WIDE = rand(2, 3, 4, 5, low=-6, high=6, seed=4)
ALPHA = np.array([0.1, -0.2, 0.3], np.float32)
CASES += [
    OpCase("relu", "values", _act("relu"), [X], lambda x: np.maximum(x, 0)),
    OpCase("relu6", "values", _act("relu6"), [WIDE], lambda x: np.clip(x, 0, 6)),
    OpCase("sigmoid", "values", _act("sigmoid"), [WIDE], _sigmoid),
    OpCase("sigmoid", "fp16", _act("sigmoid"), [half(2, 3, 4, low=-8, high=8)], _sigmoid, rtol=1e-3, atol=1e-3),
    OpCase("sigmoid_hard", "alpha-beta", _act("sigmoid_hard", alpha=0.3, beta=0.4), [WIDE],
           lambda x: np.clip(0.3 * x + 0.4, 0, 1)),
    OpCase("silu", "values", _act("silu"), [WIDE], lambda x: x * _sigmoid(x)),
    OpCase("gelu", "EXACT", _act("gelu", mode="EXACT"), [WIDE], lambda x: torch_fn("gelu", x)),
    OpCase("gelu", "TANH_APPROXIMATION", _act("gelu", mode="TANH_APPROXIMATION"), [WIDE],
           lambda x: torch_fn("gelu", x, approximate="tanh")),
    OpCase("gelu", "SIGMOID_APPROXIMATION", _act("gelu", mode="SIGMOID_APPROXIMATION"), [WIDE],
           lambda x: x * _sigmoid(1.702 * x)),
    OpCase("gelu", "EXACT-fp16", _act("gelu", mode="EXACT"), [XH], lambda x: torch_fn("gelu", x), rtol=2e-3, atol=2e-3),
    OpCase("softplus", "values", _act("softplus"), [WIDE], lambda x: np.log1p(np.exp(x))),
    OpCase("softplus_parametric", "per-channel", _act("softplus_parametric", alpha=ALPHA + 1, beta=ALPHA + 0.5),
           [WIDE], lambda x: (ALPHA + 1.0).reshape(1, 3, 1, 1) * np.log1p(np.exp((ALPHA + 0.5).reshape(1, 3, 1, 1) * x))),
    OpCase("softsign", "values", _act("softsign"), [WIDE], lambda x: x / (1 + np.abs(x))),
    OpCase("leaky_relu", "alpha", _act("leaky_relu", alpha=0.2), [X], lambda x: np.where(x >= 0, x, 0.2 * x)),
    OpCase("elu", "alpha", _act("elu", alpha=0.7), [X], lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    OpCase("prelu", "per-channel", _act("prelu", alpha=ALPHA), [WIDE],
           lambda x: np.where(x > 0, x, ALPHA.reshape(1, 3, 1, 1).astype(np.float64) * x)),
    OpCase("clamped_relu", "alpha-beta", _act("clamped_relu", alpha=0.1, beta=2.0), [WIDE],
           lambda x: np.minimum(np.where(x >= 0, x, 0.1 * x), 2.0)),
    OpCase("thresholded_relu", "alpha", _act("thresholded_relu", alpha=0.5), [X], lambda x: np.where(x >= 0.5, x, 0)),
    OpCase("linear_activation", "alpha-beta", _act("linear_activation", alpha=1.5, beta=-0.25), [X],
           lambda x: 1.5 * x - 0.25),
    OpCase("scaled_tanh", "alpha-beta", _act("scaled_tanh", alpha=1.5, beta=0.5), [X], lambda x: 1.5 * np.tanh(0.5 * x)),
    OpCase("softmax", "last-axis", _act("softmax", axis=-1), [WIDE], lambda x: torch_fn("softmax", x, dim=-1)),
    OpCase("softmax", "axis-1", _act("softmax", axis=1), [WIDE], lambda x: torch_fn("softmax", x, dim=1)),
    OpCase("softmax", "fp16", _act("softmax", axis=-1), [half(2, 4, 17, low=-8, high=8)],
           lambda x: torch_fn("softmax", x, dim=-1), rtol=2e-3, atol=1e-3),
]

# -- matrix ---------------------------------------------------------------------------------------

W = rand(5, 4, seed=6)
B = rand(5, seed=7)
A4 = rand(2, 3, 4, 6, seed=8)
C4 = rand(2, 3, 6, 5, seed=9)
CASES += [
    OpCase("linear", "bias", lambda mb, x: mb.linear(x=x, weight=W, bias=B), [X], lambda x: x @ W.T + B),
    OpCase("linear", "no-bias", lambda mb, x: mb.linear(x=x, weight=W), [X], lambda x: x @ W.T),
    OpCase("linear", "fp16", lambda mb, x: mb.linear(x=x, weight=W.astype(np.float16), bias=B.astype(np.float16)),
           [XH], lambda x: x @ W.astype(np.float16).T.astype(np.float64) + B.astype(np.float16), rtol=2e-3, atol=3e-3),
    OpCase("matmul", "batched", lambda mb, x, y: mb.matmul(x=x, y=y), [A4, C4], np.matmul),
    OpCase("matmul", "transpose-flags", lambda mb, x, y: mb.matmul(x=x, y=y, transpose_x=True, transpose_y=True),
           [rand(2, 3, 6, 4, seed=10), rand(2, 3, 5, 6, seed=11)],
           lambda x, y: np.swapaxes(x, -1, -2) @ np.swapaxes(y, -1, -2)),
    OpCase("matmul", "broadcast-batch", lambda mb, x, y: mb.matmul(x=x, y=y), [A4, rand(6, 5, seed=12)], np.matmul),
    OpCase("matmul", "vector-matrix", lambda mb, x, y: mb.matmul(x=x, y=y), [rand(6, seed=13), rand(6, 5)], np.matmul),
    OpCase("matmul", "fp16", lambda mb, x, y: mb.matmul(x=x, y=y), [half(2, 4, 17, 16), half(2, 4, 16, 17, seed=3)],
           np.matmul, rtol=3e-3, atol=1e-2),
    OpCase("einsum", "nchw-nwhu", lambda mb, x, y: mb.einsum(values=(x, y), equation="nchw,nwhu->nchu"),
           [rand(2, 3, 4, 5), rand(2, 5, 4, 6, seed=14)], lambda x, y: np.einsum("nchw,nwhu->nchu", x, y)),
    OpCase("scaled_dot_product_attention", "no-mask",
           lambda mb, x, y, z: mb.scaled_dot_product_attention(query=x, key=y, value=z),
           [rand(1, 2, 5, 8), rand(1, 2, 7, 8, seed=15), rand(1, 2, 7, 3, seed=16)],
           lambda q, k, v: torch_fn("scaled_dot_product_attention", q, k, v), opset=18),
    OpCase("scaled_dot_product_attention", "float-mask",
           lambda mb, x, y, z: mb.scaled_dot_product_attention(query=x, key=y, value=z, attn_mask=rand(5, 7, seed=17)),
           [rand(1, 2, 5, 8), rand(1, 2, 7, 8, seed=15), rand(1, 2, 7, 3, seed=16)],
           lambda q, k, v: torch_fn("scaled_dot_product_attention", q, k, v, rand(5, 7, seed=17)), opset=18),
]

# -- reductions -----------------------------------------------------------------------------------

_REDUCE = {
    "reduce_mean": np.mean, "reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min,
    "reduce_prod": np.prod,
    "reduce_l1_norm": lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims),
    "reduce_l2_norm": lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)),
    "reduce_sum_square": lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims),
    "reduce_log_sum": lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims)),
    "reduce_log_sum_exp": lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims)),
}
for _name, _f in _REDUCE.items():
    _data = POSITIVE if _name == "reduce_log_sum" else X
    CASES += [
        OpCase(_name, "axes-keep", lambda mb, x, n=_name: getattr(mb, n)(x=x, axes=[1, -1], keep_dims=True), [_data],
               lambda x, f=_f: f(x, axis=(1, 2), keepdims=True)),
        OpCase(_name, "all-axes", lambda mb, x, n=_name: getattr(mb, n)(x=x), [_data],
               lambda x, f=_f: np.reshape(f(x, axis=None, keepdims=False), ())),
    ]
CASES += [
    OpCase("reduce_mean", "fp16-spatial", lambda mb, x: mb.reduce_mean(x=x, axes=[-2, -1], keep_dims=True),
           [half(1, 8, 14, 14)], lambda x: np.mean(x, axis=(2, 3), keepdims=True), rtol=2e-3, atol=1e-3),
    OpCase("reduce_argmax", "axis", lambda mb, x: mb.reduce_argmax(x=x, axis=-1, keep_dims=False), [X],
           lambda x: np.argmax(x, axis=-1)),
    OpCase("reduce_argmin", "axis-keep", lambda mb, x: mb.reduce_argmin(x=x, axis=1, keep_dims=True), [X],
           lambda x: np.argmin(x, axis=1, keepdims=True)),
]
