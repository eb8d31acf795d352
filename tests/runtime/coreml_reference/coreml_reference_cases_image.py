"""Op cases: resizing ops. Grid-point cases use the literal values MIL's documentation lists."""

from __future__ import annotations

import numpy as np
from coreml_reference_cases import OpCase, rand, torch_fn

IMG = rand(1, 2, 3, 4)
# MIL's resize_bilinear documentation: grid points for an input of width 2
DOC_GRIDS = {
    ("UNALIGN_CORNERS", 5): [0.0, 0.1, 0.5, 0.9, 1.0],
    ("STRICT_ALIGN_CORNERS", 5): [0.0, 0.25, 0.5, 0.75, 1.0],
    ("ALIGN_CORNERS", 5): [0.0, 0.25, 0.5, 0.75, 1.0],
    ("DEFAULT", 5): [0.0, 0.4, 0.8, 1.0, 1.0],
    ("OFFSET_CORNERS", 5): [0.1, 0.3, 0.5, 0.7, 0.9],
    ("UNALIGN_CORNERS", 6): [0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0],
    ("DEFAULT", 6): [0.0, 1 / 3, 2 / 3, 1.0, 1.0, 1.0],
    ("OFFSET_CORNERS", 6): [1 / 12, 0.25, 5 / 12, 7 / 12, 0.75, 11 / 12],
}
EDGE = np.array([[[[1.0, 3.0]], [[-2.0, 6.0]]]], np.float32)  # two channels, one row of width 2


def _on_grid(x, grid):
    """Linear interpolation of each width-2 row at the given grid points (height 1 is kept)."""
    grid = np.asarray(grid)
    return x[..., :1] * (1 - grid) + x[..., 1:] * grid


def _resize(mode, width):
    return lambda mb, x: mb.resize_bilinear(x=x, target_size_height=1, target_size_width=width, sampling_mode=mode)


def _interpolate(x, **kwargs):
    return torch_fn("interpolate", x, **kwargs)


CASES = [
    OpCase("resize_bilinear", f"{mode}-{width}-documented-grid", _resize(mode, width), [EDGE],
           lambda x, grid=grid: _on_grid(x, grid))
    for (mode, width), grid in DOC_GRIDS.items()
]
CASES += [
    OpCase("resize_bilinear", "align-corners-like-torch",
           lambda mb, x: mb.resize_bilinear(x=x, target_size_height=5, target_size_width=7,
                                            sampling_mode="STRICT_ALIGN_CORNERS"), [IMG],
           lambda x: _interpolate(x, size=(5, 7), mode="bilinear", align_corners=True)),
    OpCase("resize_bilinear", "half-pixel-like-torch",
           lambda mb, x: mb.resize_bilinear(x=x, target_size_height=5, target_size_width=7,
                                            sampling_mode="UNALIGN_CORNERS"), [IMG],
           lambda x: _interpolate(x, size=(5, 7), mode="bilinear", align_corners=False)),
    OpCase("upsample_bilinear", "align-corners-ios15",
           lambda mb, x: mb.upsample_bilinear(x=x, scale_factor_height=2, scale_factor_width=3, align_corners=True),
           [IMG], lambda x: _interpolate(x, scale_factor=(2, 3), mode="bilinear", align_corners=True), opset=15),
    OpCase("upsample_bilinear", "half-pixel-ios15",
           lambda mb, x: mb.upsample_bilinear(x=x, scale_factor_height=2, scale_factor_width=2, align_corners=False),
           [IMG], lambda x: _interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), opset=15),
    OpCase("upsample_bilinear", "half-pixel-default-ios16",
           lambda mb, x: mb.upsample_bilinear(x=x, scale_factor_height=2, scale_factor_width=2, align_corners=False),
           [IMG], lambda x: _interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)),
    OpCase("upsample_bilinear", "asymmetric-ios16",
           lambda mb, x: mb.upsample_bilinear(x=x, scale_factor_height=1.0, scale_factor_width=2.5, align_corners=False,
                                              half_pixel_centers=False), [EDGE],
           lambda x: _on_grid(x, DOC_GRIDS[("DEFAULT", 5)])),
    OpCase("upsample_nearest_neighbor", "scale-2-3",
           lambda mb, x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=2, scale_factor_width=3), [IMG],
           lambda x: _interpolate(x, scale_factor=(2, 3), mode="nearest")),
    OpCase("resize_nearest_neighbor", "size-like-torch-nearest-exact",
           lambda mb, x: mb.resize_nearest_neighbor(x=x, target_size_height=5, target_size_width=7), [IMG],
           lambda x: _interpolate(x, size=(5, 7), mode="nearest-exact")),
    OpCase("resize", "linear-ios17",
           lambda mb, x: mb.resize(x=x, shape=np.array([5, 7], np.int32), resized_dims=np.uint32(2),
                                   interpolation_mode="LINEAR", sampling_mode="STRICT_ALIGN_CORNERS"), [IMG],
           lambda x: _interpolate(x, size=(5, 7), mode="bilinear", align_corners=True), opset=17),
    OpCase("resize", "nearest-ios17",
           lambda mb, x: mb.resize(x=x, shape=np.array([6, 8], np.int32), resized_dims=np.uint32(2),
                                   interpolation_mode="NEAREST_NEIGHBOR"), [IMG],
           lambda x: _interpolate(x, size=(6, 8), mode="nearest"), opset=17),
]

# -- index rules, hand-derived per sampling mode ------------------------------------------------------
# Source rows / columns an output picks (nearest) or the fractional source coordinates it samples
# (linear), written out by hand from the formulas in MIL's resize_bilinear documentation. Sizes
# are chosen so the modes disagree: 2 -> 3 (the coremltools device test), 4 -> 3, 3 -> 5, 4 -> 1.
GRID = rand(1, 2, 4, 4, seed=11)  # [1, C, H, W]; rows and columns are sliced to the input size
NEAREST_ROWS = {  # (mode, in, out) -> source indices: grid point rounded half up
    ("HALF_PIXEL", 2, 3): [0, 1, 1], ("HALF_PIXEL", 4, 3): [0, 2, 3], ("HALF_PIXEL", 3, 5): [0, 0, 1, 2, 2],
    ("HALF_PIXEL", 4, 1): [2],
    ("STRICT_ALIGN_CORNERS", 2, 3): [0, 1, 1], ("STRICT_ALIGN_CORNERS", 4, 3): [0, 2, 3],
    ("STRICT_ALIGN_CORNERS", 3, 5): [0, 1, 1, 2, 2], ("STRICT_ALIGN_CORNERS", 4, 1): [0],
    ("ALIGN_CORNERS", 3, 5): [0, 1, 1, 2, 2], ("ALIGN_CORNERS", 4, 1): [2],
    ("OFFSET_CORNERS", 2, 3): [0, 1, 1], ("OFFSET_CORNERS", 4, 3): [1, 2, 3], ("OFFSET_CORNERS", 3, 5): [0, 1, 1, 1, 2],
    ("OFFSET_CORNERS", 4, 1): [2],
    ("UNALIGN_CORNERS", 4, 3): [0, 2, 3], ("UNALIGN_CORNERS", 3, 5): [0, 0, 1, 2, 2],
    ("FLOOR", 2, 3): [0, 0, 1], ("FLOOR", 3, 2): [0, 1], ("FLOOR", 3, 5): [0, 0, 1, 1, 2],
}
LINEAR_POINTS = {  # (mode, in, out) -> fractional source coordinates, clamped to [0, in - 1]
    ("DEFAULT", 2, 3): [0, 2 / 3, 1], ("DEFAULT", 4, 3): [0, 4 / 3, 8 / 3],
    ("STRICT_ALIGN_CORNERS", 2, 3): [0, 0.5, 1], ("STRICT_ALIGN_CORNERS", 4, 3): [0, 1.5, 3],
    ("ALIGN_CORNERS", 4, 1): [1.5], ("STRICT_ALIGN_CORNERS", 4, 1): [0],
    ("OFFSET_CORNERS", 2, 3): [1 / 6, 0.5, 5 / 6], ("OFFSET_CORNERS", 4, 3): [0.5, 1.5, 2.5],
    ("UNALIGN_CORNERS", 2, 3): [0, 0.5, 1], ("UNALIGN_CORNERS", 4, 3): [1 / 6, 1.5, 17 / 6],
}


def _picked(x, rows, cols):
    return x[..., rows, :][..., cols]


def _sampled(x, rows, cols):
    """Linear interpolation at fractional row / column coordinates, one axis at a time."""
    def along(v, axis, points):
        v = np.moveaxis(v, axis, -1)
        low = np.floor(points).astype(int)
        high = np.minimum(low + 1, v.shape[-1] - 1)
        w = np.asarray(points) - low
        return np.moveaxis(v[..., low] * (1 - w) + v[..., high] * w, -1, axis)
    return along(along(x, -2, rows), -1, cols)


def _sized(h, w, dtype=np.float32):
    return GRID[..., :h, :w].astype(dtype)


def _resize_case(interp, mode, size_h, size_w, opset, dtype=np.float32, dynamic=False):
    (h_in, h_out), (w_in, w_out) = size_h, size_w
    rule = "HALF_PIXEL" if interp == "NEAREST_NEIGHBOR" and mode in ("DEFAULT", "UNALIGN_CORNERS") else mode
    table, combine = (NEAREST_ROWS, _picked) if interp == "NEAREST_NEIGHBOR" else (LINEAR_POINTS, _sampled)
    rows, cols = table[(rule, h_in, h_out)], table[(rule, w_in, w_out)]
    inputs = [_sized(h_in, w_in, dtype)]
    if dynamic:
        inputs.append(np.array([h_out, w_out], np.int32))

        def build(mb, x, shape):
            return mb.resize(x=x, shape=shape, resized_dims=np.uint32(2), interpolation_mode=interp,
                             sampling_mode=mode)

        def expect(x, shape):
            return combine(x, rows, cols)
    else:
        def build(mb, x):
            return mb.resize(x=x, shape=np.array([h_out, w_out], np.int32), resized_dims=np.uint32(2),
                             interpolation_mode=interp, sampling_mode=mode)

        def expect(x):
            return combine(x, rows, cols)
    name = f"{interp.lower()}-{mode.lower()}-{h_in}to{h_out}-{w_in}to{w_out}-ios{opset}"
    name += ("-fp16" if dtype == np.float16 else "") + ("-dynamic" if dynamic else "")
    tolerance = 2e-3 if dtype == np.float16 else 1e-5
    return OpCase("resize", name, build, inputs, expect, opset=opset, rtol=tolerance, atol=tolerance)


RESIZE_SIZES = {  # mode -> (height in, out), (width in, out) with a hand-derived entry above
    "DEFAULT": ((2, 3), (4, 3)),
    "STRICT_ALIGN_CORNERS": ((2, 3), (4, 1)),
    "ALIGN_CORNERS": ((3, 5), (4, 1)),
    "OFFSET_CORNERS": ((2, 3), (4, 3)),
    "UNALIGN_CORNERS": ((4, 3), (3, 5)),
}
RESIZE_LINEAR_SIZES = {
    "DEFAULT": ((2, 3), (4, 3)),
    "STRICT_ALIGN_CORNERS": ((2, 3), (4, 1)),
    "ALIGN_CORNERS": ((4, 1), (4, 1)),
    "OFFSET_CORNERS": ((2, 3), (4, 3)),
    "UNALIGN_CORNERS": ((2, 3), (4, 3)),
}
CASES += [_resize_case("NEAREST_NEIGHBOR", mode, h, w, 17) for mode, (h, w) in RESIZE_SIZES.items()]
CASES += [_resize_case("LINEAR", mode, h, w, 17) for mode, (h, w) in RESIZE_LINEAR_SIZES.items()]
CASES += [
    _resize_case("NEAREST_NEIGHBOR", "DEFAULT", (2, 3), (4, 3), 18, np.float16),
    _resize_case("NEAREST_NEIGHBOR", "DEFAULT", (2, 3), (4, 3), 17, dynamic=True),
    _resize_case("NEAREST_NEIGHBOR", "DEFAULT", (2, 3), (4, 3), 18, np.float16, dynamic=True),
    _resize_case("LINEAR", "UNALIGN_CORNERS", (2, 3), (4, 3), 18, dynamic=True),
]

# coremltools' own tests of these ops, which its CI runs against Core ML on macOS (literal values)
DEVICE_ROW = np.array([-6.174, 9.371], np.float32)
CASES += [
    OpCase("resize", "coremltools-nearest-rank5",
           lambda mb, x: mb.resize(x=x, shape=[1, 1, 3, 2], resized_dims=np.uint32(2),
                                   interpolation_mode="NEAREST_NEIGHBOR", sampling_mode="DEFAULT"),
           [DEVICE_ROW.reshape(1, 1, 1, 2, 1)],
           lambda x: np.array([-6.174, -6.174, 9.371, 9.371, 9.371, 9.371]).reshape(1, 1, 1, 3, 2), opset=17),
    OpCase("resize", "coremltools-linear-rank3",
           lambda mb, x: mb.resize(x=x, shape=[1, 1, 5], resized_dims=np.uint32(2), interpolation_mode="LINEAR",
                                   sampling_mode="DEFAULT"),
           [np.array([0, 1], np.float32).reshape(1, 1, 2)],
           lambda x: np.array([0, 0.4, 0.8, 1, 1]).reshape(1, 1, 5), opset=17),
    OpCase("upsample_nearest_neighbor", "coremltools-fractional-scales",
           lambda mb, x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=3.17, scale_factor_width=0.67),
           [np.array([1.5, -2.5, 3.5], np.float32).reshape(1, 1, 1, 3)],
           lambda x: np.array([1.5, -2.5] * 3).reshape(1, 1, 3, 2)),
    OpCase("upsample_nearest_neighbor", "fractional-2to3-3to5",
           lambda mb, x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=1.5, scale_factor_width=5 / 3 + 1e-3),
           [_sized(2, 3)], lambda x: _picked(x, NEAREST_ROWS[("FLOOR", 2, 3)], NEAREST_ROWS[("FLOOR", 3, 5)])),
    OpCase("upsample_nearest_neighbor", "fractional-fp16",
           lambda mb, x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=1.5, scale_factor_width=2 / 3 + 1e-3),
           [_sized(2, 3, np.float16)],
           lambda x: _picked(x, NEAREST_ROWS[("FLOOR", 2, 3)], NEAREST_ROWS[("FLOOR", 3, 2)])),
    OpCase("resize_nearest_neighbor", "half-pixel-2to3-4to3",
           lambda mb, x: mb.resize_nearest_neighbor(x=x, target_size_height=3, target_size_width=3), [_sized(2, 4)],
           lambda x: _picked(x, NEAREST_ROWS[("HALF_PIXEL", 2, 3)], NEAREST_ROWS[("HALF_PIXEL", 4, 3)])),
    OpCase("resize_nearest_neighbor", "half-pixel-3to5-fp16",
           lambda mb, x: mb.resize_nearest_neighbor(x=x, target_size_height=5, target_size_width=1),
           [_sized(3, 4, np.float16)],
           lambda x: _picked(x, NEAREST_ROWS[("HALF_PIXEL", 3, 5)], NEAREST_ROWS[("HALF_PIXEL", 4, 1)])),
]
CASES += [
    OpCase("resize_bilinear", f"{mode.lower()}-2to3-4to3",
           lambda mb, x, mode=mode: mb.resize_bilinear(x=x, target_size_height=3, target_size_width=3,
                                                       sampling_mode=mode), [_sized(2, 4)],
           lambda x, mode=mode: _sampled(x, LINEAR_POINTS[(mode, 2, 3)], LINEAR_POINTS[(mode, 4, 3)]))
    for mode in ("DEFAULT", "STRICT_ALIGN_CORNERS", "OFFSET_CORNERS", "UNALIGN_CORNERS")
]
