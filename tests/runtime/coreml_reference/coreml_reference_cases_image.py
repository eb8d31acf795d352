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
    OpCase("resize_nearest_neighbor", "size",
           lambda mb, x: mb.resize_nearest_neighbor(x=x, target_size_height=5, target_size_width=7), [IMG],
           lambda x: _interpolate(x, size=(5, 7), mode="nearest")),
    OpCase("resize", "linear-ios17",
           lambda mb, x: mb.resize(x=x, shape=np.array([5, 7], np.int32), resized_dims=np.uint32(2),
                                   interpolation_mode="LINEAR", sampling_mode="STRICT_ALIGN_CORNERS"), [IMG],
           lambda x: _interpolate(x, size=(5, 7), mode="bilinear", align_corners=True), opset=17),
    OpCase("resize", "nearest-ios17",
           lambda mb, x: mb.resize(x=x, shape=np.array([6, 8], np.int32), resized_dims=np.uint32(2),
                                   interpolation_mode="NEAREST_NEIGHBOR"), [IMG],
           lambda x: _interpolate(x, size=(6, 8), mode="nearest"), opset=17),
]
