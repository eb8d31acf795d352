"""Resizing MIL ops on the last two dims: ``upsample_bilinear``, ``resize_bilinear``,
``upsample_nearest_neighbor``, ``resize_nearest_neighbor`` and iOS17's ``resize``.

Bilinear resizing is separable: each axis becomes a small ``[out, in]`` interpolation
matrix built from MIL's grid-point formulas (``sampling_mode``), applied with two matrix
products. Grid points (from the MIL definition of ``resize_bilinear``)::

    STRICT_ALIGN_CORNERS  i * (in - 1) / (out - 1)
    ALIGN_CORNERS         the same, but (in - 1) / 2 when out == 1
    DEFAULT               i * (in - in / out) / (out - 1)         (= i * in / out)
    OFFSET_CORNERS        0.5 * delta + i * delta, delta = max(1, in - 1) / out
    UNALIGN_CORNERS       (i + 0.5) * in / out - 0.5                (half-pixel centres)

each clamped to ``[0, in - 1]``. Nearest neighbour takes ``floor(i * in / out)``.
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


def bilinear(x: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    rows = interpolation_matrix(x.shape[-2], height, mode)
    cols = interpolation_matrix(x.shape[-1], width, mode)
    return np.matmul(np.matmul(rows, x), cols.T)


def nearest(x: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = np.minimum(np.floor(np.arange(height) * x.shape[-2] / height).astype(np.int64), x.shape[-2] - 1)
    cols = np.minimum(np.floor(np.arange(width) * x.shape[-1] / width).astype(np.int64), x.shape[-1] - 1)
    return x[..., rows[:, None], cols[None, :]]


def _scaled(args: OpArgs, x: np.ndarray) -> tuple[int, int]:
    if x.ndim < 3:
        args.fail(f"has a rank-{x.ndim} input; resizing needs rank >= 3")
    scale_h, scale_w = args.float("scale_factor_height", 1.0), args.float("scale_factor_width", 1.0)
    return math.floor(x.shape[-2] * scale_h), math.floor(x.shape[-1] * scale_w)


@op("upsample_bilinear", until=15)
def upsample_bilinear_ios15(args: OpArgs) -> np.ndarray:
    x = args["x"]
    mode = "STRICT_ALIGN_CORNERS" if args.bool("align_corners", True) else "UNALIGN_CORNERS"
    return bilinear(x, *_scaled(args, x), mode)


@op("upsample_bilinear", since=16)
def upsample_bilinear(args: OpArgs) -> np.ndarray:
    x = args["x"]
    align = args.bool("align_corners", True)
    half_pixel = args.bool("half_pixel_centers", not align)
    if align and half_pixel:
        args.fail("has align_corners and half_pixel_centers both True, which MIL does not allow")
    mode = "STRICT_ALIGN_CORNERS" if align else ("UNALIGN_CORNERS" if half_pixel else "DEFAULT")
    return bilinear(x, *_scaled(args, x), mode)


@op("resize_bilinear")
def resize_bilinear(args: OpArgs) -> np.ndarray:
    x = args["x"]
    mode = args.choice("sampling_mode", SAMPLING_MODES, "DEFAULT")
    return bilinear(x, args.int("target_size_height", 1), args.int("target_size_width", 1), mode)


@op("upsample_nearest_neighbor")
def upsample_nearest_neighbor(args: OpArgs) -> np.ndarray:
    x = args["x"]
    return nearest(x, *_scaled(args, x))


@op("resize_nearest_neighbor")
def resize_nearest_neighbor(args: OpArgs) -> np.ndarray:
    return nearest(args["x"], args.int("target_size_height"), args.int("target_size_width"))


@op("resize", since=17)
def resize(args: OpArgs) -> np.ndarray:
    x = args["x"]
    target = args.ints("shape")
    dims = args.int("resized_dims")
    if dims != 2 or len(target) > x.ndim:
        args.fail(f"resizes {dims} dims with shape {target}; the reference executor resizes the last two")
    height, width = (t if t else x.shape[x.ndim - 2 + i] for i, t in enumerate(target[-2:]))
    if args.choice("interpolation_mode", ("LINEAR", "NEAREST_NEIGHBOR"), "LINEAR") == "LINEAR":
        return bilinear(x, height, width, args.choice("sampling_mode", SAMPLING_MODES, "DEFAULT"))
    args.choice("sampling_mode", ("DEFAULT",), "DEFAULT")
    return nearest(x, height, width)
