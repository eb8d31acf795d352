"""Resizing MIL ops on the trailing dims: ``upsample_bilinear``, ``resize_bilinear``,
``upsample_nearest_neighbor``, ``resize_nearest_neighbor`` and iOS17's ``resize``.

Resizing is separable: bilinear resizing applies a small ``[out, in]`` interpolation matrix
per axis, nearest-neighbour resizing one index vector per axis. Bilinear grid points (the
fractional source coordinate of output ``i``; from the MIL definition of ``resize_bilinear``)::

    STRICT_ALIGN_CORNERS  i * (in - 1) / (out - 1)
    ALIGN_CORNERS         the same, but (in - 1) / 2 when out == 1
    DEFAULT               i * (in - in / out) / (out - 1)         (= i * in / out)
    OFFSET_CORNERS        0.5 * delta + i * delta, delta = max(1, in - 1) / out
    UNALIGN_CORNERS       (i + 0.5) * in / out - 0.5                (half-pixel centres)

each clamped to ``[0, in - 1]``. Nearest-neighbour source indices (clamped the same way):

* ``upsample_nearest_neighbor``: ``floor(i * in / out)``, the output size ``floor(in * scale)``
  and its ratio to the input, not the scale, deciding (as PyTorch's ``nearest``);
* ``resize_nearest_neighbor`` and ``resize`` with ``NEAREST_NEIGHBOR`` and ``sampling_mode``
  DEFAULT or UNALIGN_CORNERS: half-pixel centres, ``floor((i + 0.5) * in / out)`` (as
  TensorFlow's ``half_pixel_centers=True``);
* ``resize`` with ``NEAREST_NEIGHBOR`` and another sampling mode: the bilinear grid point
  rounded half up, ``floor(grid_point + 0.5)``.

The evidence for each rule (coremltools' own device-checked tests, its converters'
mappings) is in docs/coreml_reference.md. Indices are computed in exact integer arithmetic,
so ties such as ``(1 + 0.5) * 2 / 3 = 1`` do not depend on float rounding.
"""

from __future__ import annotations

import math

import numpy as np

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op

SAMPLING_MODES = ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS", "DEFAULT", "OFFSET_CORNERS", "UNALIGN_CORNERS")


def grid_points(size_in: int, size_out: int, mode: str) -> np.ndarray:
    """Fractional source coordinates of each output position along one axis."""
    i = np.arange(size_out, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if size_out == 1:
            points = np.array([(size_in - 1) / 2 if mode == "ALIGN_CORNERS" else 0.0])
        else:
            points = i * (size_in - 1) / (size_out - 1)
    elif mode == "DEFAULT":
        points = i * size_in / size_out
    elif mode == "OFFSET_CORNERS":
        delta = max(1, size_in - 1) / size_out
        points = 0.5 * delta + i * delta
    else:  # UNALIGN_CORNERS
        points = (i + 0.5) * size_in / size_out - 0.5
    return np.clip(points, 0, size_in - 1)


def interpolation_matrix(size_in: int, size_out: int, mode: str) -> np.ndarray:
    points = grid_points(size_in, size_out, mode)
    low = np.floor(points).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    weight = points - low
    matrix = np.zeros((size_out, size_in), np.float64)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, low), 1 - weight)
    np.add.at(matrix, (rows, high), weight)
    return matrix.astype(np.float32)


def nearest_indices(size_in: int, size_out: int, rule: str) -> np.ndarray:
    """Source index of each output position along one axis, in exact integer arithmetic.

    ``rule`` is ``"FLOOR"`` (``upsample_nearest_neighbor``), ``"HALF_PIXEL"`` or a bilinear
    sampling mode whose grid point is rounded half up.
    """
    i = np.arange(size_out, dtype=np.int64)
    if rule == "FLOOR":  # floor(i * in / out)
        index = i * size_in // size_out
    elif rule == "HALF_PIXEL":  # floor((i + 0.5) * in / out)
        index = (2 * i + 1) * size_in // (2 * size_out)
    elif rule in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if size_out == 1:  # grid point 0, or (in - 1) / 2 for ALIGN_CORNERS
            index = np.array([size_in // 2 if rule == "ALIGN_CORNERS" else 0])
        else:  # floor(i * (in - 1) / (out - 1) + 0.5)
            index = (2 * i * (size_in - 1) + size_out - 1) // (2 * (size_out - 1))
    elif rule == "DEFAULT":  # floor(i * in / out + 0.5)
        index = (2 * i * size_in + size_out) // (2 * size_out)
    elif rule == "OFFSET_CORNERS":  # floor((i + 0.5) * max(1, in - 1) / out + 0.5)
        index = ((2 * i + 1) * max(1, size_in - 1) + size_out) // (2 * size_out)
    else:  # UNALIGN_CORNERS: floor((i + 0.5) * in / out - 0.5 + 0.5)
        index = (2 * i + 1) * size_in // (2 * size_out)
    return np.clip(index, 0, size_in - 1)


def _along(x: np.ndarray, axis: int, matrix: np.ndarray) -> np.ndarray:
    """Apply an ``[out, in]`` matrix to one axis of ``x`` (the last two without moving axes: a
    matmul over a moved, non-contiguous view copies, which made upsampling 1.1-1.8x slower)."""
    if axis == x.ndim - 1:
        return np.matmul(x, matrix.T)
    if axis == x.ndim - 2:
        return np.matmul(matrix, x)
    moved = np.moveaxis(x, axis, -1)
    return np.moveaxis(np.matmul(moved, matrix.T), -1, axis)


def bilinear(x: np.ndarray, sizes: list[int], mode: str) -> np.ndarray:
    """Resize the trailing ``len(sizes)`` axes of ``x`` to ``sizes`` by linear interpolation."""
    first = x.ndim - len(sizes)
    for axis, size in enumerate(sizes, start=first):
        if size != x.shape[axis] or mode == "OFFSET_CORNERS":  # every other rule maps i to i
            x = _along(x, axis, interpolation_matrix(x.shape[axis], size, mode))
    return x


def nearest(x: np.ndarray, sizes: list[int], rule: str) -> np.ndarray:
    """Resize the trailing ``len(sizes)`` axes of ``x`` to ``sizes`` by picking source indices."""
    first = x.ndim - len(sizes)
    for axis, size in enumerate(sizes, start=first):
        if size != x.shape[axis] or rule == "OFFSET_CORNERS":  # every other rule maps i to i
            x = np.take(x, nearest_indices(x.shape[axis], size, rule), axis=axis)
    return x


def _scaled(args: OpArgs, x: np.ndarray) -> list[int]:
    if x.ndim < 3:
        args.fail(f"has a rank-{x.ndim} input; resizing needs rank >= 3")
    scale_h, scale_w = args.float("scale_factor_height", 1.0), args.float("scale_factor_width", 1.0)
    return [math.floor(x.shape[-2] * scale_h), math.floor(x.shape[-1] * scale_w)]


def _target(args: OpArgs, x: np.ndarray, height: str, width: str, default: int | None = None) -> list[int]:
    if x.ndim < 3:
        args.fail(f"has a rank-{x.ndim} input; resizing needs rank >= 3")
    return [args.int(height, default), args.int(width, default)]


@op("upsample_bilinear", until=15)
def upsample_bilinear_ios15(args: OpArgs) -> np.ndarray:
    x = args["x"]
    mode = "STRICT_ALIGN_CORNERS" if args.bool("align_corners", True) else "UNALIGN_CORNERS"
    return bilinear(x, _scaled(args, x), mode)


@op("upsample_bilinear", since=16)
def upsample_bilinear(args: OpArgs) -> np.ndarray:
    x = args["x"]
    align = args.bool("align_corners", True)
    half_pixel = args.bool("half_pixel_centers", not align)
    if align and half_pixel:
        args.fail("has align_corners and half_pixel_centers both True, which MIL does not allow")
    mode = "STRICT_ALIGN_CORNERS" if align else ("UNALIGN_CORNERS" if half_pixel else "DEFAULT")
    return bilinear(x, _scaled(args, x), mode)


@op("resize_bilinear")
def resize_bilinear(args: OpArgs) -> np.ndarray:
    x = args["x"]
    mode = args.choice("sampling_mode", SAMPLING_MODES, "DEFAULT")
    return bilinear(x, _target(args, x, "target_size_height", "target_size_width", 1), mode)


@op("upsample_nearest_neighbor")
def upsample_nearest_neighbor(args: OpArgs) -> np.ndarray:
    x = args["x"]
    return nearest(x, _scaled(args, x), "FLOOR")


@op("resize_nearest_neighbor")
def resize_nearest_neighbor(args: OpArgs) -> np.ndarray:
    x = args["x"]
    return nearest(x, _target(args, x, "target_size_height", "target_size_width"), "HALF_PIXEL")


@op("resize", since=17)
def resize(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    target = args.ints("shape")
    dims = args.int("resized_dims")
    if not 0 <= dims <= len(target) <= x.ndim:
        args.fail(f"resizes {dims} dims with shape {target} of a rank-{x.ndim} input; MIL needs "
                  "resized_dims <= len(shape) <= rank")
    first = x.ndim - dims
    sizes = [t if t else x.shape[first + i] for i, t in enumerate(target[len(target) - dims:])]
    sampling = args.choice("sampling_mode", SAMPLING_MODES, "DEFAULT")
    if args.choice("interpolation_mode", ("LINEAR", "NEAREST_NEIGHBOR"), "LINEAR") == "LINEAR":
        return bilinear(x, sizes, sampling)
    return nearest(x, sizes, "HALF_PIXEL" if sampling == "DEFAULT" else sampling)
