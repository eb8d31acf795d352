"""Sorting, selecting and masking MIL ops: ``topk``, ``argsort``, ``cumsum``, ``non_zero``,
``one_hot`` and ``band_part``.

Sorts are stable: equal values keep their input order (lower index first), in both
directions. MIL does not say how a device orders ties, so a tie-free input is the only one
whose order is certain.
"""

from __future__ import annotations

import numpy as np

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op


def _order(x: np.ndarray, axis: int, ascending: bool) -> np.ndarray:
    """Indices sorting ``x`` along ``axis``, ties in input order."""
    if ascending:
        return np.argsort(x, axis=axis, kind="stable")
    if x.dtype.kind in "iu":
        return np.argsort(-x.astype(np.int64), axis=axis, kind="stable")
    return np.argsort(-x, axis=axis, kind="stable")  # -x keeps ties in order, unlike a flipped sort


@op("topk")
def topk(args: OpArgs) -> tuple[np.ndarray, ...] | np.ndarray:
    x = np.asarray(args["x"])
    axis = args.axis("axis", x.ndim, -1)
    k = args.int("k", 1)
    if k < 0:
        k = x.shape[axis]
    if not 0 <= k <= x.shape[axis]:
        args.fail(f"has k={k} for an axis of {x.shape[axis]}")
    indices = np.take(_order(x, axis, args.bool("ascending")), np.arange(k), axis=axis)
    values = np.take_along_axis(x, indices, axis=axis)
    if args.opset >= 16 and not args.bool("return_indices", True):
        return values
    return values, indices.astype(np.int32)


@op("argsort")
def argsort(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    return _order(x, args.axis("axis", x.ndim, -1), args.bool("ascending")).astype(np.int32)


@op("cumsum")
def cumsum(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    axis = args.axis("axis", x.ndim, 0)
    reverse = args.bool("reverse")
    values = np.flip(x, axis) if reverse else x
    total = np.cumsum(values, axis=axis, dtype=x.dtype)
    if args.bool("exclusive"):
        total = np.concatenate([np.zeros_like(np.take(total, [0], axis=axis)),
                                np.take(total, np.arange(x.shape[axis] - 1), axis=axis)], axis=axis)
    return np.flip(total, axis) if reverse else total


@op("non_zero")
def non_zero(args: OpArgs) -> np.ndarray:
    return np.argwhere(np.asarray(args["x"]) != 0).astype(np.int32)


@op("one_hot")
def one_hot(args: OpArgs) -> np.ndarray:
    indices = np.asarray(args["indices"]).astype(np.int64)
    size = args.int("one_hot_vector_size")
    axis = args.int("axis", -1)
    rank = indices.ndim + 1
    if not -rank <= axis < rank:
        args.fail(f"has axis={axis} for a rank-{rank} output")
    on, off = np.asarray(args.get("on_value", 1)), np.asarray(args.get("off_value", 0))
    hot = indices[..., None] == np.arange(size)
    return np.moveaxis(np.where(hot, on, off), -1, axis % rank)


@op("band_part")
def band_part(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    lower, upper = args.int("lower", -1), args.int("upper", -1)
    rows = np.arange(x.shape[-2])[:, None]
    cols = np.arange(x.shape[-1])[None, :]
    keep = ((lower < 0) | (rows - cols <= lower)) & ((upper < 0) | (cols - rows <= upper))
    return np.where(keep, x, np.zeros((), x.dtype))
