"""Activation MIL ops (``relu``, ``gelu`` in its three modes, ``sigmoid``, ``softmax``, ...).

Formulas are the ones the MIL op definitions state; sigmoid is computed as
``0.5 * (1 + tanh(x / 2))``, which is exact and never overflows.
"""

from __future__ import annotations

import math

import numpy as np

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op
from edgevit.runtime.backends.coreml_reference.ops.elementwise import erf


def sigmoid_of(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _channel(alpha: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel parameter ``[C]`` shaped to broadcast over ``[B, C, ...]``."""
    alpha = np.asarray(alpha, np.float32)
    return alpha.reshape((1, -1) + (1,) * (rank - 2)) if alpha.ndim == 1 and rank >= 2 else alpha


@op("relu")
def relu(args: OpArgs) -> np.ndarray:
    return np.maximum(args["x"], 0)


@op("relu6")
def relu6(args: OpArgs) -> np.ndarray:
    return np.minimum(np.maximum(args["x"], 0), 6)


@op("sigmoid")
def sigmoid(args: OpArgs) -> np.ndarray:
    return sigmoid_of(args["x"])


@op("sigmoid_hard")
def sigmoid_hard(args: OpArgs) -> np.ndarray:
    alpha, beta = np.float32(args.float("alpha", 0.2)), np.float32(args.float("beta", 0.5))
    return np.minimum(np.maximum(alpha * args["x"] + beta, 0), 1)


@op("silu")
def silu(args: OpArgs) -> np.ndarray:
    x = args["x"]
    return x * sigmoid_of(x)


@op("gelu")
def gelu(args: OpArgs) -> np.ndarray:
    x = args["x"]
    mode = args.choice("mode", ("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"), "EXACT")
    if mode == "EXACT":
        return 0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))
    if mode == "TANH_APPROXIMATION":
        inner = np.float32(math.sqrt(2.0 / math.pi)) * (x + np.float32(0.044715) * x * x * x)
        return 0.5 * x * (1.0 + np.tanh(inner))
    return x * sigmoid_of(np.float32(1.702) * x)


@op("softplus")
def softplus(args: OpArgs) -> np.ndarray:
    return np.logaddexp(0, args["x"])


@op("softplus_parametric")
def softplus_parametric(args: OpArgs) -> np.ndarray:
    x = args["x"]
    alpha, beta = _channel(args["alpha"], x.ndim), _channel(args["beta"], x.ndim)
    return alpha * np.logaddexp(0, beta * x)


@op("softsign")
def softsign(args: OpArgs) -> np.ndarray:
    x = args["x"]
    return x / (1 + np.abs(x))


@op("leaky_relu")
def leaky_relu(args: OpArgs) -> np.ndarray:
    x = args["x"]
    return np.where(x >= 0, x, np.float32(args.float("alpha", 0.01)) * x)


@op("elu")
def elu(args: OpArgs) -> np.ndarray:
    x = args["x"]
    with np.errstate(over="ignore"):
        return np.where(x > 0, x, np.float32(args.float("alpha", 1.0)) * np.expm1(np.minimum(x, 0)))


@op("prelu")
def prelu(args: OpArgs) -> np.ndarray:
    x = args["x"]
    return np.where(x > 0, x, _channel(args["alpha"], x.ndim) * x)


@op("clamped_relu")
def clamped_relu(args: OpArgs) -> np.ndarray:
    x = args["x"]
    alpha, beta = np.float32(args.float("alpha")), np.float32(args.float("beta"))
    return np.minimum(np.where(x >= 0, x, alpha * x), beta)


@op("thresholded_relu")
def thresholded_relu(args: OpArgs) -> np.ndarray:
    x = args["x"]
    return np.where(x >= args.float("alpha", 1.0), x, 0).astype(x.dtype)


@op("linear_activation")
def linear_activation(args: OpArgs) -> np.ndarray:
    return np.float32(args.float("alpha")) * args["x"] + np.float32(args.float("beta", 0.0))


@op("scaled_tanh")
def scaled_tanh(args: OpArgs) -> np.ndarray:
    return np.float32(args.float("alpha", 1.0)) * np.tanh(np.float32(args.float("beta", 1.0)) * args["x"])


@op("softmax")
def softmax(args: OpArgs) -> np.ndarray:
    x = args["x"]
    axis = args.axis("axis", x.ndim, -1)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    exps = np.exp(shifted)
    return exps / np.sum(exps, axis=axis, keepdims=True)
