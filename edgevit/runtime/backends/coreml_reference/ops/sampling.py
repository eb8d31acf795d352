"""MIL ops that sample an image at computed coordinates: ``resample``, ``affine`` and
``crop_resize``.

All three read ``x: [B, C, H, W]`` at fractional pixel coordinates (row ``0`` is the centre of
the first row, ``H - 1`` the centre of the last). They differ in where the coordinates come
from and what happens outside the image:

* ``resample`` reads a coordinate per output pixel from a tensor, and ``affine`` computes it
  from a 2x3 matrix over the output grid. Both follow PyTorch's ``grid_sample``, the op
  coremltools converts to them: normalized coordinates map to pixels by ``align_corners``,
  a bilinear sample reads its four neighbours with the image padded by ``padding_mode``
  (``constant`` pads each missing neighbour with ``padding_value``; ``border`` repeats the
  edge; ``reflection`` mirrors about the edge pixels' centres, ``symmetric`` about their
  outer edges), and a nearest sample rounds half to even.
* ``crop_resize`` lays a ``sampling_mode`` grid over each box (the box's start and end play
  the roles ``0`` and ``in - 1`` play in ``resize_bilinear``) and follows TensorFlow's
  ``crop_and_resize``: an output pixel whose row or column falls outside the image is
  ``pad_value`` (0 before iOS16), whole, not blended.

The rules, the converters' mappings and coremltools' device-checked values behind them, and
the attribute values refused as undefined are in docs/coreml_reference.md. Coordinates are
computed in float64 from the stored values, pixel values in float32.
"""

from __future__ import annotations

import numpy as np

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op

PADDING_MODES = ("constant", "border", "reflection", "symmetric")
COORDINATE_MODES = ("unnormalized", "normalized_minus_one_to_one", "normalized_zero_to_one")
BOX_MODES = ("CORNERS_HEIGHT_FIRST", "CORNERS_WIDTH_FIRST", "CENTER_SIZE_HEIGHT_FIRST", "CENTER_SIZE_WIDTH_FIRST")
#: crop_resize sampling modes with a box rule; UNALIGN_CORNERS is refused (see the docs)
BOX_SAMPLING_MODES = ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS", "DEFAULT", "OFFSET_CORNERS")


# -- coordinates --------------------------------------------------------------------------------

def to_pixels(coords: np.ndarray, size: int, mode: str, align_corners: bool) -> np.ndarray:
    """Pixel coordinates along one axis of ``size`` pixels, from coordinates in ``mode``."""
    if mode == "unnormalized":
        return coords
    if mode == "normalized_zero_to_one":
        coords = coords * 2 - 1
    if align_corners:  # -1 and 1 are the centres of the first and last pixels
        return (coords + 1) / 2 * (size - 1)
    return ((coords + 1) * size - 1) / 2  # -1 and 1 are their outer edges


def _reflect(coords: np.ndarray, low: float, high: float) -> np.ndarray:
    """Mirror ``coords`` back and forth into ``[low, high]``."""
    span = high - low
    if span <= 0:
        return np.full_like(coords, low)
    offset = np.abs(coords - low)
    flips, extra = np.divmod(offset, span)
    return np.where(flips % 2 == 0, low + extra, high - extra)


def fold(coords: np.ndarray, size: int, padding: str) -> np.ndarray:
    """Map coordinates outside ``[0, size - 1]`` to the pixel that padding repeats there.

    ``constant`` leaves them alone: a sample reads ``padding_value`` for every missing pixel.
    """
    if padding == "reflection":
        coords = _reflect(coords, 0.0, size - 1.0)
    elif padding == "symmetric":
        coords = _reflect(coords, -0.5, size - 0.5)
    elif padding == "constant":
        return coords
    return np.clip(coords, 0, size - 1)


def _gather(x: np.ndarray, batch: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``x[batch, :, rows, cols]`` for index arrays of one shape ``S``: ``[*S, C]``."""
    return x.transpose(0, 2, 3, 1)[batch, rows, cols]


def sample(x: np.ndarray, batch: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, nearest: bool,
           pad_value: float | None) -> np.ndarray:
    """Sample ``x: [B, C, H, W]`` at pixel coordinates ``rows`` / ``cols`` (one shape ``S``).

    ``batch`` picks the image of each sample. ``pad_value`` is the value of every pixel
    outside the image (constant padding); ``None`` means coordinates are already inside.
    Returns ``[*S, C]``.
    """
    height, width = x.shape[2:]
    if nearest:
        corners = [(np.rint(rows).astype(np.int64), np.rint(cols).astype(np.int64), None)]
    else:
        top, left = np.floor(rows), np.floor(cols)
        dy, dx = (rows - top)[..., None], (cols - left)[..., None]
        top, left = top.astype(np.int64), left.astype(np.int64)
        corners = [(top, left, (1 - dy) * (1 - dx)), (top, left + 1, (1 - dy) * dx),
                   (top + 1, left, dy * (1 - dx)), (top + 1, left + 1, dy * dx)]
    total = np.zeros(rows.shape + (x.shape[1],), np.float64)
    for r, c, weight in corners:
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        values = _gather(x, batch, np.clip(r, 0, height - 1), np.clip(c, 0, width - 1)).astype(np.float64)
        if pad_value is not None:
            values = np.where(inside[..., None], values, pad_value)
        total += values if weight is None else values * weight
    return total


def _batch_index(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(x.shape[0]).reshape((-1,) + (1,) * (len(shape) - 1)) * np.ones(shape, np.int64)


def _grid_sample(args: OpArgs, x: np.ndarray, coords: np.ndarray, sampling: str, padding: str,
                 coordinates_mode: str) -> np.ndarray:
    """``x: [B, C, H, W]`` sampled at ``coords: [B, Ho, Wo, 2]`` (x, y order) -> ``[B, C, Ho, Wo]``."""
    height, width = x.shape[2:]
    align = args.bool("align_corners")
    cols = fold(to_pixels(coords[..., 0], width, coordinates_mode, align), width, padding)
    rows = fold(to_pixels(coords[..., 1], height, coordinates_mode, align), height, padding)
    pad_value = args.float("padding_value", 0.0) if padding == "constant" else None
    out = sample(x, _batch_index(x, rows.shape), rows, cols, nearest=sampling == "nearest", pad_value=pad_value)
    return out.transpose(0, 3, 1, 2).astype(np.float32)


def _rank4(args: OpArgs, x: np.ndarray) -> None:
    if x.ndim != 4:
        args.fail(f"has a rank-{x.ndim} x of shape {list(x.shape)}; it takes [B, C, H, W]")


# -- resample and affine --------------------------------------------------------------------------

@op("resample")
def resample(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"], np.float32)
    coords = np.asarray(args["coordinates"], np.float64)
    _rank4(args, x)
    if coords.ndim != 4 or coords.shape[0] != x.shape[0] or coords.shape[-1] != 2:
        args.fail(f"has coordinates of shape {list(coords.shape)} for x of shape {list(x.shape)}; "
                  f"it takes [{x.shape[0]}, H_out, W_out, 2]")
    sampling = args.choice("sampling_mode", ("bilinear", "nearest"))
    padding = args.choice("padding_mode", PADDING_MODES)
    mode = args.choice("coordinates_mode", COORDINATE_MODES)
    return _grid_sample(args, x, coords, sampling, padding, mode)


def _lower_choice(args: OpArgs, name: str, allowed: str) -> str:
    """``affine``'s MIL definition compares these strings case-insensitively and allows one value."""
    value = args.str(name)
    if value.lower() != allowed:
        args.fail(f"has {name}={value!r}; MIL's affine allows only {allowed!r}")
    return allowed


def affine_grid(matrix: np.ndarray, height: int, width: int, align_corners: bool) -> np.ndarray:
    """Input coordinates ``[D, height, width, 2]`` (x, y in [-1, 1]) of each output pixel."""
    def axis(size: int) -> np.ndarray:  # the output pixels' normalized centres, as affine_grid
        if size <= 1:
            return np.zeros(max(size, 0))
        points = np.linspace(-1, 1, size)
        return points if align_corners else points * (size - 1) / size

    ys, xs = np.meshgrid(axis(height), axis(width), indexing="ij")
    a, b = matrix[:, :3], matrix[:, 3:]
    grid_x = a[:, 0, None, None] * xs + a[:, 1, None, None] * ys + a[:, 2, None, None]
    grid_y = b[:, 0, None, None] * xs + b[:, 1, None, None] * ys + b[:, 2, None, None]
    return np.stack([grid_x, grid_y], axis=-1)


@op("affine")
def affine(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"], np.float32)
    matrix = np.asarray(args["transform_matrix"], np.float64)
    _rank4(args, x)
    if matrix.ndim != 2 or matrix.shape[1] != 6 or matrix.shape[0] not in (1, x.shape[0]):
        args.fail(f"has transform_matrix of shape {list(matrix.shape)} for a batch of {x.shape[0]}; "
                  f"it takes [{x.shape[0]} or 1, 6]")
    _lower_choice(args, "sampling_mode", "bilinear")
    _lower_choice(args, "padding_mode", "constant")
    _lower_choice(args, "coordinates_mode", "normalized_minus_one_to_one")
    if args.float("padding_value") != 0.0:
        args.fail(f"has padding_value={args.float('padding_value')}; MIL's affine allows only 0")
    grid = affine_grid(matrix, args.int("output_height"), args.int("output_width"), args.bool("align_corners"))
    grid = np.broadcast_to(grid, (x.shape[0],) + grid.shape[1:])
    return _grid_sample(args, x, grid, "bilinear", "constant", "normalized_minus_one_to_one")


# -- crop_resize ------------------------------------------------------------------------------------

def box_points(start: np.ndarray, end: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Pixel coordinates ``[N, size]`` of the grid laid over boxes ``[start, end]`` (``[N]`` each).

    The box interval plays the role ``[0, in - 1]`` plays in ``resize_bilinear``'s grid, so
    ``in = end - start + 1``; DEFAULT and OFFSET_CORNERS points are clamped into the box.
    """
    i = np.arange(size, dtype=np.float64)
    start, end = start[:, None], end[:, None]
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if size == 1:
            return (start + end) / 2 if mode == "ALIGN_CORNERS" else start + 0 * i
        return start + i * (end - start) / (size - 1)
    extent = end - start  # in - 1
    if mode == "DEFAULT":
        relative = i * (extent + 1) / size
    else:  # OFFSET_CORNERS
        delta = np.maximum(1, extent) / size
        relative = 0.5 * delta + i * delta
    return start + np.clip(relative, 0, extent)


def _corners(boxes: np.ndarray, mode: str) -> tuple[np.ndarray, ...]:
    """``(h_start, w_start, h_end, w_end)`` of boxes ``[N, 4]`` given in ``box_coordinate_mode``."""
    a, b, c, d = (boxes[:, k] for k in range(4))
    if mode == "CORNERS_HEIGHT_FIRST":
        return a, b, c, d
    if mode == "CORNERS_WIDTH_FIRST":
        return b, a, d, c
    if mode == "CENTER_SIZE_HEIGHT_FIRST":
        return a - c / 2, b - d / 2, a + c / 2, b + d / 2
    return b - d / 2, a - c / 2, b + d / 2, a + c / 2  # CENTER_SIZE_WIDTH_FIRST


def _crop_resize(args: OpArgs, x: np.ndarray, boxes: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Crops ``[N, C, target_height, target_width]`` of boxes ``[N, 4]`` from images ``batch``."""
    height, width = x.shape[2:]
    if batch.size and (batch.min() < 0 or batch.max() >= x.shape[0]):
        args.fail(f"has box indices {batch.tolist()} for a batch of {x.shape[0]}")
    box_mode = args.choice("box_coordinate_mode", BOX_MODES, "CORNERS_HEIGHT_FIRST")
    sampling = args.choice("sampling_mode", BOX_SAMPLING_MODES + ("UNALIGN_CORNERS",), "DEFAULT")
    if sampling == "UNALIGN_CORNERS":
        args.fail("has sampling_mode='UNALIGN_CORNERS', whose box grid MIL does not pin down: coremltools' "
                  "device-checked iOS15 test of it fits no box rule (see docs/coreml_reference.md)")
    h0, w0, h1, w1 = _corners(boxes, box_mode)
    scale = args.float("spatial_scale", 1.0)
    h_scale, w_scale = (scale * (height - 1), scale * (width - 1)) if args.bool("normalized_coordinates") \
        else (scale, scale)
    h0, h1, w0, w1 = h0 * h_scale, h1 * h_scale, w0 * w_scale, w1 * w_scale
    if sampling in ("DEFAULT", "OFFSET_CORNERS") and (np.any(h1 < h0) or np.any(w1 < w0)):
        args.fail(f"has a box whose end comes before its start with sampling_mode={sampling!r}; MIL defines "
                  "flipped boxes only for the ALIGN_CORNERS modes")
    rows = box_points(h0, h1, args.int("target_height", 1), sampling)[:, :, None]
    cols = box_points(w0, w1, args.int("target_width", 1), sampling)[:, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    outside = (rows < 0) | (rows > height - 1) | (cols < 0) | (cols > width - 1)
    index = np.broadcast_to(batch[:, None, None], rows.shape)
    values = sample(x, index, np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1), nearest=False,
                    pad_value=None)
    pad_value = args.float("pad_value", 0.0) if args.opset >= 16 else 0.0
    values = np.where(outside[..., None], pad_value, values)
    return values.transpose(0, 3, 1, 2).astype(np.float32)


@op("crop_resize", until=16)
def crop_resize_roi(args: OpArgs) -> np.ndarray:
    """iOS15/16: ``roi: [N, 1, 4 or 5, 1, 1]``; 4 values crop every image, 5 start with its index."""
    x = np.asarray(args["x"], np.float32)
    roi = np.asarray(args["roi"], np.float64)
    _rank4(args, x)
    if roi.ndim != 5 or roi.shape[2] not in (4, 5):
        args.fail(f"has roi of shape {list(roi.shape)}; it takes [N, 1, 4, 1, 1] or [N, 1, 5, 1, 1]")
    roi = roi.reshape(roi.shape[0], -1)
    if roi.shape[1] == 5:  # -> [N, 1, C, h, w]
        if x.shape[0] != 1:
            args.fail(f"has roi with batch indices and x with a batch of {x.shape[0]}: MIL documents the output "
                      f"as [N, 1, C, h, w], coremltools declares it [N, {x.shape[0]}, C, h, w], so what Core ML "
                      "returns is unknown; use iOS17's boxes and box_indices, or a batch of 1")
        batch = roi[:, 0]
        if np.any(batch != np.round(batch)):
            args.fail(f"has fractional box indices {batch.tolist()} in roi")
        return _crop_resize(args, x, roi[:, 1:], batch.astype(np.int64))[:, None]
    n, b = roi.shape[0], x.shape[0]  # -> [N, B, C, h, w]: every box over every image
    crops = _crop_resize(args, x, np.repeat(roi, b, axis=0), np.tile(np.arange(b), n))
    return crops.reshape((n, b) + crops.shape[1:])


@op("crop_resize", since=17)
def crop_resize(args: OpArgs) -> np.ndarray:
    """iOS17+: ``boxes: [N, 4]`` and ``box_indices: [N]`` (default ``0..N-1``) -> ``[N, C, h, w]``."""
    x = np.asarray(args["x"], np.float32)
    boxes = np.asarray(args["boxes"], np.float64)
    _rank4(args, x)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        args.fail(f"has boxes of shape {list(boxes.shape)}; it takes [N, 4]")
    indices = args.get("box_indices")
    batch = np.arange(boxes.shape[0]) if indices is None else np.asarray(indices, np.int64).reshape(-1)
    if batch.shape != (boxes.shape[0],):
        args.fail(f"has {batch.size} box_indices for {boxes.shape[0]} boxes")
    return _crop_resize(args, x, boxes, batch)
