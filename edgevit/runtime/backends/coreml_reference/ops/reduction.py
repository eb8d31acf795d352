"""Reductions and normalizations: ``reduce_*``, ``reduce_argmax/argmin``, ``batch_norm``,
``layer_norm``, ``instance_norm``, ``l2_norm``, ``local_response_norm``.

Statistics are computed in float32 from the (possibly fp16-rounded) input; variance is the
population variance (mean of squared deviations), as in the MIL definitions.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op


def _axes(args: OpArgs, rank: int, name: str = "axes") -> tuple[int, ...]:
    """Normalized reduction axes; all axes when the op has none."""
    if args.get(name) is None:
        return tuple(range(rank))
    axes = args.ints(name)
    if any(not -rank <= a < max(rank, 1) for a in axes):
        args.fail(f"has {name}={axes}, outside the rank-{rank} input")
    return tuple(sorted({a % max(rank, 1) for a in axes}))


def _abs_sum(x, axis, keepdims):
    return np.sum(np.abs(x), axis=axis, keepdims=keepdims)


def _l2(x, axis, keepdims):
    return np.sqrt(np.sum(np.square(x), axis=axis, keepdims=keepdims))


def _sum_square(x, axis, keepdims):
    return np.sum(np.square(x), axis=axis, keepdims=keepdims)


def _log_sum(x, axis, keepdims):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.sum(x, axis=axis, keepdims=keepdims))


def _log_sum_exp(x, axis, keepdims):
    peak = np.max(x, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0)
    total = np.sum(np.exp(x - peak), axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        result = np.log(total) + peak
    return result if keepdims else np.squeeze(result, axis=axis)


REDUCTIONS = {
    "reduce_mean": np.mean,
    "reduce_sum": np.sum,
    "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_prod": np.prod,
    "reduce_l1_norm": _abs_sum,
    "reduce_l2_norm": _l2,
    "reduce_sum_square": _sum_square,
    "reduce_log_sum": _log_sum,
    "reduce_log_sum_exp": _log_sum_exp,
}


def _register_reduction(name: str, function) -> None:
    def reduction(args: OpArgs) -> np.ndarray:
        x = np.asarray(args["x"])
        return function(x, axis=_axes(args, x.ndim), keepdims=args.bool("keep_dims"))

    reduction.__name__ = name
    op(name)(reduction)


for _name, _function in REDUCTIONS.items():
    _register_reduction(_name, _function)


def _arg(args: OpArgs, function) -> np.ndarray:
    x = np.asarray(args["x"])
    axis = args.axis("axis", x.ndim, -1)
    result = function(x, axis=axis, keepdims=args.bool("keep_dims"))
    return result.astype(np.int32)


@op("reduce_argmax")
def reduce_argmax(args: OpArgs) -> np.ndarray:
    return _arg(args, np.argmax)


@op("reduce_argmin")
def reduce_argmin(args: OpArgs) -> np.ndarray:
    return _arg(args, np.argmin)


# -- normalization ------------------------------------------------------------------------------


def _per_channel(value, rank: int, default: float) -> np.ndarray | float:
    if value is None:
        return default
    return np.asarray(value, np.float32).reshape((1, -1) + (1,) * (rank - 2))


@op("batch_norm")
def batch_norm(args: OpArgs) -> np.ndarray:
    x = args["x"]
    rank = x.ndim
    mean = _per_channel(args["mean"], rank, 0.0)
    variance = _per_channel(args["variance"], rank, 1.0)
    epsilon = np.float32(args.float("epsilon", 1e-5))
    scale = _per_channel(args.get("gamma"), rank, 1.0) / np.sqrt(variance + epsilon)
    return (x - mean) * scale + _per_channel(args.get("beta"), rank, 0.0)


def _normalize(x: np.ndarray, axes: tuple[int, ...], epsilon: np.float32) -> np.ndarray:
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    variance = np.mean(np.square(centered), axis=axes, keepdims=True)
    return centered / np.sqrt(variance + epsilon)


@op("layer_norm")
def layer_norm(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    given = args.ints("axes") if args.get("axes") is not None else list(range(x.ndim))
    axes = _axes(args, x.ndim)
    result = _normalize(x, axes, np.float32(args.float("epsilon", 1e-5)))
    # gamma / beta have shape x.shape[axes] in the order the axes were given
    order = np.argsort([a % x.ndim for a in given]) if given else []
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    for name, combine in (("gamma", np.multiply), ("beta", np.add)):
        value = args.get(name)
        if value is not None:
            value = np.asarray(value, np.float32)
            if value.ndim == len(given) and value.ndim > 1:
                value = value.transpose(order)
            result = combine(result, value.reshape(shape))
    return result


@op("instance_norm")
def instance_norm(args: OpArgs) -> np.ndarray:
    x = args["x"]
    result = _normalize(x, tuple(range(2, x.ndim)), np.float32(args.float("epsilon", 1e-5)))
    return result * _per_channel(args.get("gamma"), x.ndim, 1.0) + _per_channel(args.get("beta"), x.ndim, 0.0)


@op("l2_norm")
def l2_norm(args: OpArgs) -> np.ndarray:
    x = args["x"]
    if x.ndim < 3:
        args.fail(f"has a rank-{x.ndim} input; l2_norm normalizes the last three dims of rank >= 3")
    axes = (-3, -2, -1)
    total = np.sum(np.square(x), axis=axes, keepdims=True)
    return x / np.sqrt(total + np.float32(args.float("epsilon", 1e-6)))


@op("local_response_norm")
def local_response_norm(args: OpArgs) -> np.ndarray:
    """``x / (k + alpha / size * sum of squares over a window of channels) ** beta``.

    The window of channel ``c`` is ``[c - size // 2, c + (size - 1) // 2]`` (PyTorch's, whose
    ``local_response_norm`` converts to this op; the two conventions agree for odd sizes).
    """
    x = args["x"]
    size = args.int("size")
    alpha, beta, k = (np.float32(args.float(n, d)) for n, d in (("alpha", 1e-4), ("beta", 0.75), ("k", 1.0)))
    squares = np.square(x)
    padded = np.pad(squares, [(0, 0), (size // 2, (size - 1) // 2)] + [(0, 0)] * (x.ndim - 2))
    window = sliding_window_view(padded, size, axis=1).sum(axis=-1)
    return x / np.power(k + alpha / size * window, beta)
