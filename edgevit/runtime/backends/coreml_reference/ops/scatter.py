"""Scatter MIL ops: ``scatter``, ``scatter_along_axis``, ``scatter_nd`` and iOS18's ``slice_update``.

Each writes ``updates`` into a copy of ``data`` at the given indices, combining with the
old value by ``mode``. Repeated indices combine one after another (``add`` sums every update,
``update`` keeps the last), as numpy's unbuffered ``ufunc.at`` does. Negative indices count
from the end up to iOS16; from iOS17 MIL calls them out of bounds, and the executor refuses
them (as it does any index outside the data) instead of guessing.
"""

from __future__ import annotations

import numpy as np

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op
from edgevit.runtime.backends.coreml_reference.ops.tensor import slice_index

#: scatter mode -> how an update combines with the value already there (None: replaces it)
MODES = {"update": None, "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
         "max": np.maximum, "min": np.minimum}


def _checked(args: OpArgs, indices, size: int) -> np.ndarray:
    indices = np.asarray(indices).astype(np.int64)
    if args.opset < 17:
        indices = np.where(indices < 0, indices + size, indices)
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        args.fail(f"has indices outside [0, {size}) (min {indices.min()}, max {indices.max()})")
    return indices


def _combine(args: OpArgs, data: np.ndarray, where: tuple, updates: np.ndarray) -> np.ndarray:
    out = np.array(data, dtype=np.result_type(data, updates), copy=True)
    ufunc = MODES[args.choice("mode", tuple(MODES), "add")]
    with np.errstate(all="ignore"):
        if ufunc is None:
            out[where] = updates
        else:
            ufunc.at(out, where, updates)
    return out


@op("scatter")
def scatter(args: OpArgs) -> np.ndarray:
    data = np.asarray(args["data"])
    axis = args.axis("axis", data.ndim, 0)
    indices = _checked(args, args["indices"], data.shape[axis])
    moved = np.moveaxis(data, axis, 0)
    updates = np.moveaxis(np.asarray(args["updates"]), axis, 0)
    return np.moveaxis(_combine(args, moved, (indices,), updates), 0, axis)


@op("scatter_along_axis")
def scatter_along_axis(args: OpArgs) -> np.ndarray:
    data = np.asarray(args["data"])
    axis = args.axis("axis", data.ndim, 0)
    updates = np.asarray(args["updates"])
    indices = _checked(args, args["indices"], data.shape[axis])
    where = list(np.indices(updates.shape, sparse=True))
    where[axis] = indices
    return _combine(args, data, tuple(where), updates)


@op("scatter_nd")
def scatter_nd(args: OpArgs) -> np.ndarray:
    data = np.asarray(args["data"])
    indices = np.asarray(args["indices"])
    depth = indices.shape[-1]
    where = tuple(_checked(args, indices[..., i], data.shape[i]) for i in range(depth))
    return _combine(args, data, where, np.asarray(args["updates"]))


@op("slice_update", since=18)
def slice_update(args: OpArgs) -> np.ndarray:
    x = np.array(args["x"], copy=True)
    update = np.asarray(args["update"])
    index = slice_index(args, x)
    if x[index].shape != update.shape:
        args.fail(f"writes a {list(update.shape)} update into a {list(x[index].shape)} slice")
    x[index] = update
    return x
