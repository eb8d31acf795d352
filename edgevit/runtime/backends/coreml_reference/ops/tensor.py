"""Shape and data-movement MIL ops: reshape, transpose, concat, split, slicing, gathers, pad, ...

These move values without arithmetic, so they are exact at any precision. Index inputs that
MIL allows to be negative (``gather`` up to iOS16, axes everywhere) count from the end.
"""

from __future__ import annotations

import math

import numpy as np

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op


@op("identity")
def identity(args: OpArgs) -> np.ndarray:
    return args["x"]


@op("shape")
def shape(args: OpArgs) -> np.ndarray:
    return np.array(np.shape(args["x"]), np.int32)


@op("fill")
def fill(args: OpArgs) -> np.ndarray:
    return np.full(args.ints("shape"), args.get("value", 0.0))


@op("range_1d")
def range_1d(args: OpArgs) -> np.ndarray:
    start, end, step = (np.asarray(args[name]).reshape(()) for name in ("start", "end", "step"))
    return np.arange(start, end, step)


def _reshape_to(args: OpArgs, x: np.ndarray, target: list[int]) -> list[int]:
    if 0 not in target:
        return target
    if args.opset >= 17:  # a 0 copies the dim of x at the same place counted from the right
        return [(x.shape[x.ndim - len(target) + i] if x.ndim - len(target) + i >= 0 else 1) if v == 0 else v
                for i, v in enumerate(target)]
    if len(target) != x.ndim:
        args.fail(f"has a 0 in shape {target}, which before iOS17 needs a rank-{x.ndim} shape")
    return [x.shape[i] if v == 0 else v for i, v in enumerate(target)]


@op("reshape")
def reshape(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    return x.reshape(_reshape_to(args, x, args.ints("shape")))


@op("flatten2d")
def flatten2d(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    axis = args.int("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@op("transpose")
def transpose(args: OpArgs) -> np.ndarray:
    return np.transpose(args["x"], args.ints("perm"))


@op("expand_dims")
def expand_dims(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    axes = args.ints("axes")
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(a + rank if a < 0 else a for a in axes))


@op("squeeze")
def squeeze(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    if args.get("axes") is None:
        return np.squeeze(x)
    axes = {a % x.ndim for a in args.ints("axes")}
    return np.squeeze(x, axis=tuple(a for a in sorted(axes) if x.shape[a] == 1))  # like PyTorch


@op("concat")
def concat(args: OpArgs) -> np.ndarray:
    values = [np.asarray(v) for v in args.many("values")]
    if all(v.ndim == 0 for v in values):  # scalars (shape arithmetic) concatenate as 1-element vectors
        values = [v.reshape(1) for v in values]
    axis = args.axis("axis", values[0].ndim)
    if args.bool("interleave"):
        stacked = np.stack(values, axis=axis + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return stacked.reshape(shape)
    return np.concatenate(values, axis=axis)


@op("stack")
def stack(args: OpArgs) -> np.ndarray:
    values = [np.asarray(v) for v in args.many("values")]
    return np.stack(values, axis=args.axis("axis", values[0].ndim + 1))


@op("split")
def split(args: OpArgs) -> tuple[np.ndarray, ...]:
    x = np.asarray(args["x"])
    axis = args.axis("axis", x.ndim)
    if args.get("split_sizes") is not None:
        sizes = args.ints("split_sizes")
        if sum(sizes) != x.shape[axis]:
            args.fail(f"splits a dim of {x.shape[axis]} into sizes {sizes}")
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))
    parts = args.int("num_splits")
    if x.shape[axis] % parts:
        args.fail(f"splits a dim of {x.shape[axis]} into {parts} equal parts")
    return tuple(np.split(x, parts, axis=axis))


def slice_index(args: OpArgs, x: np.ndarray) -> tuple:
    """The numpy index of ``slice_by_index`` / ``slice_update``'s begin, end, stride and masks."""
    rank = x.ndim
    begin, end = args.ints("begin"), args.ints("end")
    stride = args.ints("stride", [1] * rank)
    begin_mask = [bool(v) for v in np.asarray(args.get("begin_mask", [False] * rank)).reshape(-1)]
    end_mask = [bool(v) for v in np.asarray(args.get("end_mask", [False] * rank)).reshape(-1)]
    squeeze_mask = [bool(v) for v in np.asarray(args.get("squeeze_mask", [False] * rank)).reshape(-1)]
    if not len(begin) == len(end) == len(stride) == rank:
        args.fail(f"has begin/end/stride of lengths {len(begin)}/{len(end)}/{len(stride)} for a rank-{rank} input")
    index = []
    for i in range(rank):
        if squeeze_mask[i]:
            index.append(begin[i])  # a pure index drops the dim
            continue
        start = None if begin_mask[i] else begin[i]
        stop = None if end_mask[i] else end[i]
        index.append(slice(start, stop, stride[i]))
    return tuple(index)


@op("slice_by_index")
def slice_by_index(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    return x[slice_index(args, x)]


@op("slice_by_size")
def slice_by_size(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    begin, size = args.ints("begin"), args.ints("size")
    index = []
    for dim, b, s in zip(x.shape, begin, size):
        b = b + dim if b < 0 else b
        index.append(slice(b, dim if s == -1 else b + s))
    return x[tuple(index)]


@op("tile")
def tile(args: OpArgs) -> np.ndarray:
    return np.tile(args["x"], args.ints("reps"))


@op("reverse")
def reverse(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    axes = args.ints("axes") if args.get("axes") is not None else list(range(x.ndim))
    return np.flip(x, axis=tuple(axes))


@op("pad")
def pad(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    amounts = args.ints("pad")
    if len(amounts) % 2 or len(amounts) // 2 > x.ndim:
        args.fail(f"has {len(amounts)} pad values for a rank-{x.ndim} input")
    widths = [(0, 0)] * (x.ndim - len(amounts) // 2) + [(amounts[i], amounts[i + 1]) for i in range(0, len(amounts), 2)]
    mode = args.choice("mode", ("constant", "reflect", "replicate"), "constant")
    if mode == "constant":
        return np.pad(x, widths, constant_values=args.float("constant_val", 0.0))
    return np.pad(x, widths, mode="edge" if mode == "replicate" else "reflect")


# -- gathers ------------------------------------------------------------------------------------


def _indices(args: OpArgs, indices, size: int) -> np.ndarray:
    indices = np.asarray(indices).astype(np.int64)
    indices = np.where(indices < 0, indices + size, indices)
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        args.fail(f"has indices outside [0, {size}) (min {indices.min()}, max {indices.max()})")
    return indices


@op("gather")
def gather(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    axis = args.axis("axis", x.ndim, 0)
    batch_dims = _batch_dims(args, axis)
    indices = _indices(args, args["indices"], x.shape[axis])
    if batch_dims == 0:
        return np.take(x, indices, axis=axis)
    return _per_batch(x, indices, batch_dims, lambda xb, ib: np.take(xb, ib, axis=axis - batch_dims))


def _batch_dims(args: OpArgs, limit: int) -> int:
    batch_dims = args.int("batch_dims", 0)
    if not 0 <= batch_dims <= limit:
        args.fail(f"has batch_dims={batch_dims}; it must be in [0, {limit}]")
    return batch_dims


def _per_batch(x: np.ndarray, indices: np.ndarray, batch_dims: int, gather_one) -> np.ndarray:
    """Apply ``gather_one(x[b], indices[b])`` to every index ``b`` of the leading batch dims."""
    batch = x.shape[:batch_dims]
    parts = [gather_one(x[b], indices[b]) for b in np.ndindex(*batch)]
    return np.stack(parts).reshape(*batch, *parts[0].shape)


@op("gather_along_axis")
def gather_along_axis(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    axis = args.axis("axis", x.ndim, 0)
    return np.take_along_axis(x, _indices(args, args["indices"], x.shape[axis]), axis=axis)


@op("gather_nd")
def gather_nd(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    indices = np.asarray(args["indices"])
    batch_dims = _batch_dims(args, indices.ndim - 1)
    depth = indices.shape[-1]

    def gather_one(xb: np.ndarray, ib: np.ndarray) -> np.ndarray:
        return xb[tuple(_indices(args, ib[..., i], xb.shape[i]) for i in range(depth))]

    return gather_one(x, indices) if batch_dims == 0 else _per_batch(x, indices, batch_dims, gather_one)


# -- channel / space rearrangements ------------------------------------------------------------


@op("pixel_shuffle")
def pixel_shuffle(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    r = args.int("upscale_factor")
    n, c, h, w = x.shape
    return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


@op("pixel_unshuffle", since=16)
def pixel_unshuffle(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    r = args.int("downscale_factor")
    n, c, h, w = x.shape
    return x.reshape(n, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * r * r, h // r, w // r)
