"""Op cases: sampling at computed coordinates (``resample``, ``affine``, ``crop_resize``).

Three kinds of expectation, none using the executor's helpers:

* coremltools' own op tests, whose literal values its CI checks against Core ML on macOS
  (``mil/ops/tests/iOS14..iOS17/test_image_resizing.py``), reproduced value for value;
* PyTorch's ``grid_sample`` / ``affine_grid``, the ops coremltools' PyTorch converter maps to
  ``resample`` and ``affine`` (its ``reflection`` with ``align_corners=False`` becomes MIL's
  ``symmetric``);
* plain loops written here from the definitions: image padding as MIL's ``resample``
  documentation draws it, TensorFlow's ``crop_and_resize`` (what its converter maps to
  ``crop_resize`` with ALIGN_CORNERS), its ``ImageProjectiveTransform`` in pixel space (mapped
  to ``affine`` through a change of coordinates), Detectron's RoIAlign sampling points
  (``OFFSET_CORNERS``) and the grid formulas of ``resize_bilinear``'s documentation over a box.
"""

from __future__ import annotations

import math

import numpy as np
from coreml_reference_cases import OpCase, rand, torch_fn

FP16_TOL = {"rtol": 2e-3, "atol": 4e-3}
IMG = np.array([11.0, 22.0, 33.0, 44.0], np.float32).reshape(1, 1, 2, 2)  # coremltools' resample/affine image
SIXTEEN = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)  # coremltools' crop_resize image


# -- independent references ---------------------------------------------------------------------------

def _padded(image, r, c, padding, value):
    """Pixel (r, c) of a 2-D image padded as MIL's resample documentation draws it (1-D examples)."""
    def index(i, n):
        if 0 <= i < n:
            return i
        if padding == "border":      # |1, 2, 3| -> |1, 1, 1, 1, 2, 3, 3, 3, 3|
            return min(max(i, 0), n - 1)
        if padding == "reflection":  # |1, 2, 3| -> |2, 3, 2, 1, 2, 3, 2, 1, 2|
            period = 2 * (n - 1)
            if period == 0:
                return 0
            i %= period
            return i if i < n else period - i
        period = 2 * n               # symmetric: |1, 2, 3| -> |3, 2, 1, 1, 2, 3, 3, 2, 1|
        i %= period
        return i if i < n else period - 1 - i

    h, w = image.shape
    if padding == "constant" and not (0 <= r < h and 0 <= c < w):
        return value
    return image[index(r, h), index(c, w)]


def _loop_sample(x, rows, cols, mode, padding, value):
    """[B, C, H, W] sampled at pixel coordinates rows / cols [B, Ho, Wo], one pixel at a time."""
    b, ch = x.shape[:2]
    out = np.zeros((b, ch) + rows.shape[1:])
    for n in range(b):
        for k in range(ch):
            for i in range(rows.shape[1]):
                for j in range(rows.shape[2]):
                    r, c = rows[n, i, j], cols[n, i, j]
                    if mode == "nearest":
                        out[n, k, i, j] = _padded(x[n, k], int(np.rint(r)), int(np.rint(c)), padding, value)
                        continue
                    r0, c0 = math.floor(r), math.floor(c)
                    dr, dc = r - r0, c - c0
                    total = 0.0
                    for rr, cc, weight in ((r0, c0, (1 - dr) * (1 - dc)), (r0, c0 + 1, (1 - dr) * dc),
                                           (r0 + 1, c0, dr * (1 - dc)), (r0 + 1, c0 + 1, dr * dc)):
                        total += weight * _padded(x[n, k], rr, cc, padding, value)
                    out[n, k, i, j] = total
    return out


def _grid_sample(x, grid, mode, padding, align):
    return torch_fn("grid_sample", x, grid, mode=mode, padding_mode=padding, align_corners=align)


def _torch_affine(x, matrix, height, width, align):
    import torch

    theta = torch.from_numpy(np.broadcast_to(matrix, (x.shape[0], 6)).reshape(-1, 2, 3).copy())
    grid = torch.nn.functional.affine_grid(theta, [x.shape[0], x.shape[1], height, width], align_corners=align)
    return _grid_sample(x, grid.numpy(), "bilinear", "zeros", align)


def _tf_crop_and_resize(x, boxes, box_indices, crop_h, crop_w, extrapolation):
    """TensorFlow's crop_and_resize (bilinear) on NCHW, boxes [N, 4] = y1, x1, y2, x2 normalized."""
    _, ch, h, w = x.shape
    out = np.zeros((len(boxes), ch, crop_h, crop_w))
    for n, (y1, x1, y2, x2) in enumerate(boxes):
        image = x[int(box_indices[n])]
        for i in range(crop_h):
            in_y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (crop_h - 1) if crop_h > 1 else 0.5 * (y1 + y2) * (h - 1)
            for j in range(crop_w):
                in_x = x1 * (w - 1) + j * (x2 - x1) * (w - 1) / (crop_w - 1) if crop_w > 1 \
                    else 0.5 * (x1 + x2) * (w - 1)
                if in_y < 0 or in_y > h - 1 or in_x < 0 or in_x > w - 1:
                    out[n, :, i, j] = extrapolation
                    continue
                top, left = math.floor(in_y), math.floor(in_x)
                bottom, right = math.ceil(in_y), math.ceil(in_x)
                dy, dx = in_y - top, in_x - left
                upper = image[:, top, left] + (image[:, top, right] - image[:, top, left]) * dx
                lower = image[:, bottom, left] + (image[:, bottom, right] - image[:, bottom, left]) * dx
                out[n, :, i, j] = upper + (lower - upper) * dy
    return out


def _box_grid(start, end, n, mode):
    """resize_bilinear's documented grid over [start, end] (the box plays [0, Xin - 1])."""
    xin = end - start + 1
    points = []
    for i in range(n):
        if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
            if n == 1:
                point = (xin - 1) / 2 if mode == "ALIGN_CORNERS" else 0.0
            else:
                point = i * (xin - 1) / (n - 1)
        elif mode == "DEFAULT":
            point = min(xin - 1, max(0.0, i * (xin - xin / n) / (n - 1))) if n > 1 else 0.0
        else:  # OFFSET_CORNERS
            delta = max(1, xin - 1) / n
            point = min(xin - 1, max(0.0, 0.5 * delta + i * delta))
        points.append(start + point)
    return points


def _loop_crop(x, starts_ends, batch, crop_h, crop_w, mode, pad):
    """Crops by explicit pixel-space boxes (h0, w0, h1, w1); a point outside the image is pad."""
    _, ch, h, w = x.shape
    out = np.zeros((len(starts_ends), ch, crop_h, crop_w))
    for n, (h0, w0, h1, w1) in enumerate(starts_ends):
        for i, r in enumerate(_box_grid(h0, h1, crop_h, mode)):
            for j, c in enumerate(_box_grid(w0, w1, crop_w, mode)):
                if r < 0 or r > h - 1 or c < 0 or c > w - 1:
                    out[n, :, i, j] = pad
                    continue
                grid = _loop_sample(x[batch[n]][None], np.array([[[r]]]), np.array([[[c]]]), "bilinear",
                                    "border", 0.0)
                out[n, :, i, j] = grid[0, :, 0, 0]
    return out


def _roi_align_points(start, end, n):
    """Detectron's RoIAlign (aligned=False, one sample per bin): bin centres of [start, end]."""
    size = max(end - start, 1.0)
    return [start + (i + 0.5) * size / n for i in range(n)]


# -- resample -----------------------------------------------------------------------------------------

# coremltools' TestResample (iOS15, reused for iOS16 and iOS17): four attribute sets, literal outputs
RESAMPLE_COORDS = np.array([-1.0, -2.0, -3.7, -1.0, 0.0, 0.0, 3.5, 1.2], np.float32).reshape(1, 2, 2, 2)
RESAMPLE_INT_COORDS = np.array([0, 0, 1, 1, 0, 0, 1, 1]).reshape(1, 2, 2, 2)
RESAMPLE_DEVICE = {  # name -> (attributes, literal outputs for float coordinates, for integer ones)
    "bilinear-constant-minus1to1-align": (
        dict(sampling_mode="bilinear", padding_mode="constant", padding_value=6.17,
             coordinates_mode="normalized_minus_one_to_one", align_corners=True),
        [8.585, 6.17, 27.5, 6.17], [27.5, 44.0, 27.5, 44.0]),
    "nearest-border-unnormalized": (
        dict(sampling_mode="nearest", padding_mode="border", padding_value=-1.0,
             coordinates_mode="unnormalized", align_corners=False),
        [11.0, 11.0, 11.0, 44.0], [11.0, 44.0, 11.0, 44.0]),
    "bilinear-reflection-0to1-align": (
        dict(sampling_mode="bilinear", padding_mode="reflection", padding_value=-1.0,
             coordinates_mode="normalized_zero_to_one", align_corners=True),
        [22.0, 36.3, 11.0, 34.1], [11.0, 44.0, 11.0, 44.0]),
    "nearest-symmetric-0to1": (
        dict(sampling_mode="nearest", padding_mode="symmetric", padding_value=-1.0,
             coordinates_mode="normalized_zero_to_one", align_corners=False),
        [22.0, 33.0, 11.0, 33.0], [11.0, 44.0, 11.0, 44.0]),
}


def _like(var, value):
    """``value`` in the dtype of MIL variable ``var`` (pad values must match ``x``'s type)."""
    from coremltools.converters.mil.mil import types

    return types.nptype_from_builtin(var.dtype)(value)


def _resample(padding_value, **attributes):
    return lambda mb, x, coordinates: mb.resample(x=x, coordinates=coordinates,
                                                  padding_value=_like(x, padding_value), **attributes)


def _resample_const(coordinates, padding_value, **attributes):
    return lambda mb, x: mb.resample(x=x, coordinates=coordinates, padding_value=_like(x, padding_value),
                                     **attributes)


def _literal(values, shape=(1, 1, 2, 2)):
    return lambda *inputs: np.array(values, np.float64).reshape(shape)


CASES = [
    OpCase("resample", f"coremltools-{name}-{kind}-ios{opset}", _resample(**attrs), [IMG, coords],
           _literal(values), opset=opset, atol=1e-4)
    for name, (attrs, float_values, int_values) in RESAMPLE_DEVICE.items()
    for kind, coords, values, opset in (("fp32-coordinates", RESAMPLE_COORDS, float_values, 15),
                                        ("int32-coordinates", RESAMPLE_INT_COORDS.astype(np.int32), int_values, 16))
]
CASES += [  # iOS16 allows fp16 coordinates; -3.7 and 1.2 round in fp16, which moves only the reflection case
    OpCase("resample", f"coremltools-{name}-fp16-coordinates-ios16", _resample(**attrs),
           [IMG, RESAMPLE_COORDS.astype(np.float16)], _literal(values), opset=16, atol=1e-4, output_dtype="float32")
    for name, (attrs, values, _) in RESAMPLE_DEVICE.items() if name != "bilinear-reflection-0to1-align"
]
CASES += [  # iOS17 allows 8- and 16-bit integer coordinates (constants here: they are not model input types)
    OpCase("resample", f"coremltools-{name}-{dtype.__name__}-coordinates-ios17",
           _resample_const(RESAMPLE_INT_COORDS.astype(dtype), **attrs), [IMG], _literal(int_values), opset=17)
    for name, (attrs, _, int_values) in RESAMPLE_DEVICE.items()
    for dtype in (np.int8, np.uint16)
]

# PyTorch's grid_sample through coremltools' mapping: normalized_minus_one_to_one, every mode
GRID_X = rand(2, 3, 4, 5, seed=31)
GRID = rand(2, 3, 6, 2, low=-1.4, high=1.4, seed=32)  # reaches outside the image on purpose
TORCH_PADDING = {"zeros": "constant", "border": "border", "reflection": "reflection"}
for mode in ("bilinear", "nearest"):
    for torch_padding, mil_padding in TORCH_PADDING.items():
        for align in (True, False):
            padding = "symmetric" if (torch_padding, align) == ("reflection", False) else mil_padding
            CASES.append(OpCase(
                "resample", f"like-torch-{mode}-{torch_padding}-align-{align}",
                _resample(sampling_mode=mode, padding_mode=padding, padding_value=0.0,
                          coordinates_mode="normalized_minus_one_to_one", align_corners=align),
                [GRID_X, GRID],
                lambda x, g, mode=mode, p=torch_padding, a=align: _grid_sample(x, g, mode, p, a), opset=16))

# the other coordinate modes and the MIL-only padding combinations, against the padded-image loop
PIXELS_H = GRID * 3 + 1.5  # pixel rows / columns around a 4 x 5 image
TO_PIXELS = {  # (coordinates_mode, align_corners) -> pixel coordinate of v along an axis of n pixels
    ("unnormalized", False): lambda v, n: v,  # align_corners does not apply to pixel coordinates
    ("unnormalized", True): lambda v, n: v,
    ("normalized_zero_to_one", True): lambda v, n: v * (n - 1),  # 0 and 1: centres of the end pixels
    ("normalized_zero_to_one", False): lambda v, n: v * n - 0.5,  # 0 and 1: their outer edges
    ("normalized_minus_one_to_one", False): lambda v, n: ((v + 1) * n - 1) / 2,
}


def _plain_case(coordinates_mode, align, mode, padding, value, coords, dtype=np.float32, opset=16):
    to_pixel = TO_PIXELS[(coordinates_mode, align)]

    def expect(x, g):
        cols, rows = to_pixel(g[..., 0], x.shape[3]), to_pixel(g[..., 1], x.shape[2])
        return _loop_sample(x, rows, cols, mode, padding, value)

    name = f"loop-{mode}-{padding}-{coordinates_mode}-align-{align}" + ("-fp16" if dtype == np.float16 else "")
    tolerance = FP16_TOL if dtype == np.float16 else {}
    return OpCase("resample", name,
                  _resample(sampling_mode=mode, padding_mode=padding, padding_value=value,
                            coordinates_mode=coordinates_mode, align_corners=align),
                  [GRID_X.astype(dtype), coords], expect, opset=opset,
                  output_dtype="float16" if dtype == np.float16 else "float32", **tolerance)


CASES += [
    _plain_case("unnormalized", False, "bilinear", "constant", -2.5, PIXELS_H),
    _plain_case("unnormalized", True, "nearest", "reflection", 0.0, PIXELS_H),
    _plain_case("normalized_zero_to_one", True, "bilinear", "symmetric", 0.0, GRID),
    _plain_case("normalized_zero_to_one", False, "bilinear", "reflection", 0.0, GRID),
    _plain_case("normalized_minus_one_to_one", False, "nearest", "constant", 7.0, GRID),
    _plain_case("normalized_minus_one_to_one", False, "bilinear", "symmetric", 0.0, GRID,
                np.float16, opset=18),
    _plain_case("unnormalized", False, "bilinear", "border", 0.0, PIXELS_H.astype(np.float16),
                opset=17),
]

# -- affine -------------------------------------------------------------------------------------------

AFFINE_MATRIX = np.array([-1.0, -2.0, -3.7, -1.0, 3.5, 1.2], np.float32).reshape(1, 6)


def _affine(height, width, align=True, **extra):
    def build(mb, x, matrix):
        return mb.affine(x=x, transform_matrix=matrix, output_height=height, output_width=width,
                         sampling_mode=extra.get("sampling_mode", "bilinear"), padding_mode="constant",
                         padding_value=_like(x, 0.0), coordinates_mode="normalized_minus_one_to_one",
                         align_corners=align)
    return build


def _two_affines(mb, x, matrix):  # coremltools' TestAffine builds both outputs in one program
    return _affine(3, 3)(mb, x, matrix), _affine(2, 5)(mb, x, matrix)


CASES += [
    OpCase("affine", f"coremltools-two-outputs-ios{opset}", _two_affines, [IMG, AFFINE_MATRIX],
           lambda x, m: (np.array([10.752501, 2.5025, 0.0, 1.9799997, 0, 0, 0, 0, 0]).reshape(1, 1, 3, 3),
                         np.array([10.752501, 5.94, 2.5025, 0.44000006, 0, 0, 0, 0, 0, 0]).reshape(1, 1, 2, 5)),
           opset=opset, atol=1e-4)
    for opset in (15, 18)
]
AFFINE_THETA = np.array([[0.9, -0.3, 0.1, 0.25, 1.1, -0.2], [1.2, 0.4, -0.3, -0.5, 0.7, 0.35]], np.float32)
for height, width in ((3, 7), (6, 2), (1, 4)):
    for align in (True, False):
        CASES.append(OpCase("affine", f"like-torch-{height}x{width}-align-{align}", _affine(height, width, align),
                            [GRID_X, AFFINE_THETA],
                            lambda x, m, h=height, w=width, a=align: _torch_affine(x, m, h, w, a)))
CASES += [
    OpCase("affine", "like-torch-one-matrix-for-the-batch", _affine(5, 5, False), [GRID_X, AFFINE_THETA[:1]],
           lambda x, m: _torch_affine(x, m, 5, 5, False), opset=17),
    OpCase("affine", "like-torch-fp16", _affine(5, 3, True),
           [GRID_X.astype(np.float16), AFFINE_THETA.astype(np.float16)],
           lambda x, m: _torch_affine(x, m, 5, 3, True), opset=18, **FP16_TOL),
    OpCase("affine", "uppercase-sampling-mode", _affine(4, 4, True, sampling_mode="BILINEAR"),
           [GRID_X, AFFINE_THETA], lambda x, m: _torch_affine(x, m, 4, 4, True)),
]


def _tf_projective(x, transform, h_out, w_out):
    """TensorFlow's ImageProjectiveTransform (bilinear, CONSTANT 0) in pixel space, as plain loops."""
    a, b, c, d, e, f = transform
    rows = np.array([[[d * j + e * i + f for j in range(w_out)] for i in range(h_out)]])
    cols = np.array([[[a * j + b * i + c for j in range(w_out)] for i in range(h_out)]])
    return _loop_sample(x, rows, cols, "bilinear", "constant", 0.0)


def _tf_to_mil(transform, h_in, w_in, h_out, w_out):
    """coremltools' TensorFlow converter: a pixel-space transform as affine's normalized matrix."""
    a, b, c, d, e, f = transform
    return np.array([[a * (w_out - 1) / (w_in - 1), b * (h_out - 1) / (w_in - 1),
                      (2 * c + a * (w_out - 1) + b * (h_out - 1)) / (w_in - 1) - 1,
                      d * (w_out - 1) / (h_in - 1), e * (h_out - 1) / (h_in - 1),
                      (2 * f + d * (w_out - 1) + e * (h_out - 1)) / (h_in - 1) - 1]], np.float32)


TF_TRANSFORM = (0.8, 0.3, -0.5, -0.2, 1.1, 0.7)
CASES.append(OpCase("affine", "like-tensorflow-projective-transform", _affine(5, 6, True),
                    [GRID_X[:1], _tf_to_mil(TF_TRANSFORM, 4, 5, 5, 6)],
                    lambda x, m: _tf_projective(x, TF_TRANSFORM, 5, 6)))

# -- crop_resize --------------------------------------------------------------------------------------

ROI = np.array([1, 1, 2, 2], np.float32).reshape(1, 1, 4, 1, 1)


def _typed(x, attributes):
    """``attributes`` with ``pad_value`` in ``x``'s dtype, as MIL requires."""
    return {k: _like(x, v) if k == "pad_value" else v for k, v in attributes.items()}


def _crop_roi(roi, height, width, **attributes):
    return lambda mb, x: mb.crop_resize(x=x, roi=roi, target_height=height, target_width=width,
                                        **_typed(x, attributes))


def _crop_boxes(boxes, indices, height, width, **attributes):
    def build(mb, x):
        extra = {} if indices is None else {"box_indices": indices}
        return mb.crop_resize(x=x, boxes=boxes, target_height=height, target_width=width, **extra,
                              **_typed(x, attributes))
    return build


ALIGN = dict(box_coordinate_mode="CORNERS_HEIGHT_FIRST", sampling_mode="ALIGN_CORNERS")
CROP_DEVICE = [  # coremltools' iOS14 TestCropResize (run at iOS15): name, roi, size, normalized, literal output
    ("box-2x2", ROI, 2, False, [6, 7, 10, 11]),
    ("box-4x4", ROI, 4, False, [6, 6.333333, 6.66666, 7, 7.333333, 7.666666, 8, 8.333333,
                                8.666666, 9, 9.3333333, 9.666666, 10, 10.333333, 10.666666, 11]),
    ("box-1x1-centre", ROI, 1, False, [8.5]),
    ("normalized-with-index", np.array([0, 0, 0, 1 / 3, 1 / 3], np.float32).reshape(1, 1, 5, 1, 1), 2, True,
     [1, 2, 5, 6]),
    ("flipped-box", np.array([2, 2, 1, 1], np.float32).reshape(1, 1, 4, 1, 1), 2, False, [11, 10, 7, 6]),
]
CASES += [
    OpCase("crop_resize", f"coremltools-{name}-ios15",
           _crop_roi(roi, size, size, normalized_coordinates=normalized, **ALIGN), [SIXTEEN],
           _literal(values, (1, 1, 1, size, size)), opset=15, atol=1e-4)
    for name, roi, size, normalized, values in CROP_DEVICE
]
PAD_BOXES = np.array([[0.1, 0.3, 1.3, 1.0], [0.5, 1.8, 1.0, 0.3], [0.0, 0.4, 0.6, 0.7]], np.float32)
PAD_VALUES = [3.1, 5.2, None, None, None, 7.899, None, 13.9, 2.2, 3.1, 9.4, 10.3]  # None: pad_value
# coremltools lists 7.899 where row 1.5, column 0.9 of the 1..16 image is 7.9 by TensorFlow's definition and
# by the same rule that gives the other eleven values exactly (13.9 is the same column); no box rule gives
# 7.899 there, so these literal cases allow 1.1e-3 (everything else in them agrees to 1e-6)
PAD_ATOL = 1.1e-3


def _padded_literal(pad, shape):
    return _literal([pad if v is None else v for v in PAD_VALUES], shape)


CASES += [  # coremltools' iOS16 test: boxes partly outside the image read pad_value
    OpCase("crop_resize", f"coremltools-pad-value-{pad:g}-ios16",
           _crop_roi(np.concatenate([np.zeros((3, 1), np.float32), PAD_BOXES], 1).reshape(3, 1, 5, 1, 1), 2, 2,
                     normalized_coordinates=True, pad_value=pad, **ALIGN),
           [SIXTEEN], _padded_literal(pad, (3, 1, 1, 2, 2)), opset=16, atol=PAD_ATOL)
    for pad in (0.0, 1.0, 10.0)
]
CASES += [  # coremltools' iOS17 test: boxes and box_indices replace roi, no B dim in the output
    OpCase("crop_resize", "coremltools-one-box-ios17",
           _crop_boxes(np.array([[1, 1, 2, 2]], np.float32), None, 2, 2, pad_value=10.0, **ALIGN), [SIXTEEN],
           _literal([6, 7, 10, 11], (1, 1, 2, 2)), opset=17, atol=1e-4),
    OpCase("crop_resize", "coremltools-three-boxes-ios17",
           _crop_boxes(PAD_BOXES, np.zeros(3, np.int32), 2, 2, normalized_coordinates=True, pad_value=10.0, **ALIGN),
           [SIXTEEN], _padded_literal(10.0, (3, 1, 2, 2)), opset=17, atol=PAD_ATOL),
]

# TensorFlow's CropAndResize through coremltools' mapping (normalized, CORNERS_HEIGHT_FIRST, ALIGN_CORNERS)
CROP_X = rand(2, 3, 5, 6, seed=41)
TF_BOXES = np.array([[0.1, 0.2, 0.7, 0.9], [0.8, 0.6, 0.2, 0.1], [-0.2, 0.3, 0.5, 1.25], [0.3, 0.3, 0.3, 0.6]],
                    np.float32)
TF_INDICES = np.array([1, 0, 1, 0], np.int32)


def _tf_case(crop_h, crop_w, opset, pad, dtype=np.float32):
    """Before iOS17 the converter writes roi with batch indices, for a batch of 1 (see the docs)."""
    attributes = dict(normalized_coordinates=True, **ALIGN)
    if opset >= 16:
        attributes["pad_value"] = pad
    indices, x, shape = TF_INDICES, CROP_X, None
    if opset >= 17:
        build = _crop_boxes(TF_BOXES, TF_INDICES, crop_h, crop_w, **attributes)
    else:
        indices, x, shape = np.zeros(4, np.int32), CROP_X[:1], (4, 1, 3, crop_h, crop_w)
        roi = np.concatenate([indices[:, None].astype(np.float32), TF_BOXES], 1).reshape(4, 1, 5, 1, 1)
        build = _crop_roi(roi, crop_h, crop_w, **attributes)

    def expect(x):
        out = _tf_crop_and_resize(x, TF_BOXES.astype(np.float64), indices, crop_h, crop_w, pad)
        return out if shape is None else out.reshape(shape)

    name = f"like-tensorflow-{crop_h}x{crop_w}-ios{opset}" + ("-fp16" if dtype == np.float16 else "")
    return OpCase("crop_resize", name, build, [x.astype(dtype)], expect, opset=opset,
                  **(FP16_TOL if dtype == np.float16 else {}))


CASES += [_tf_case(3, 4, 15, 0.0), _tf_case(1, 3, 16, -1.5), _tf_case(4, 1, 17, 2.0),
          _tf_case(3, 3, 18, 0.5, np.float16)]

# TensorFlow's ExtractImagePatches as coremltools lowers it: integer boxes, unnormalized, ALIGN_CORNERS
PATCH_BOXES = np.array([[0, 0, 2, 2], [0, 2, 2, 4], [2, 1, 4, 3], [1, 3, 3, 5]], np.float32)
CASES.append(OpCase(
    "crop_resize", "extract-image-patches-ios17",
    _crop_boxes(PATCH_BOXES, np.array([0, 1, 0, 1], np.int32), 3, 3, **ALIGN), [CROP_X],
    lambda x: np.stack([x[b, :, int(h0):int(h0) + 3, int(w0):int(w0) + 3]
                        for b, (h0, w0, _, _) in zip([0, 1, 0, 1], PATCH_BOXES)]), opset=17))

# every box_coordinate_mode, spatial_scale, a 4-value roi over a batch, STRICT_ALIGN_CORNERS at size 1
BOX = np.array([[1.0, 0.5, 4.5, 3.0], [3.5, 1.0, 0.5, 5.5]])  # two boxes as (h0, w0, h1, w1) in pixels
BOX_FORMS = {
    "CORNERS_HEIGHT_FIRST": BOX,
    "CORNERS_WIDTH_FIRST": BOX[:, [1, 0, 3, 2]],
    "CENTER_SIZE_HEIGHT_FIRST": np.stack([(BOX[:, 0] + BOX[:, 2]) / 2, (BOX[:, 1] + BOX[:, 3]) / 2,
                                          BOX[:, 2] - BOX[:, 0], BOX[:, 3] - BOX[:, 1]], 1),
    "CENTER_SIZE_WIDTH_FIRST": np.stack([(BOX[:, 1] + BOX[:, 3]) / 2, (BOX[:, 0] + BOX[:, 2]) / 2,
                                         BOX[:, 3] - BOX[:, 1], BOX[:, 2] - BOX[:, 0]], 1),
}
for form, boxes in BOX_FORMS.items():
    CASES.append(OpCase(
        "crop_resize", f"{form.lower()}-spatial-scale-ios17",
        _crop_boxes((boxes * 2).astype(np.float32), np.array([1, 0], np.int32), 3, 4, spatial_scale=0.5,
                    box_coordinate_mode=form, sampling_mode="ALIGN_CORNERS", pad_value=-3.0),
        [CROP_X], lambda x: _loop_crop(x, BOX, [1, 0], 3, 4, "ALIGN_CORNERS", -3.0), opset=17))
CASES += [
    OpCase("crop_resize", "four-value-roi-over-the-batch-ios16",
           _crop_roi(BOX_FORMS["CORNERS_WIDTH_FIRST"].astype(np.float32).reshape(2, 1, 4, 1, 1), 2, 3,
                     box_coordinate_mode="CORNERS_WIDTH_FIRST", sampling_mode="STRICT_ALIGN_CORNERS"), [CROP_X],
           lambda x: _loop_crop(x, np.repeat(BOX, 2, 0), [0, 1, 0, 1], 2, 3, "STRICT_ALIGN_CORNERS", 0.0)
           .reshape(2, 2, 3, 2, 3), opset=16),
    OpCase("crop_resize", "strict-align-size-1-uint16-boxes-ios18",
           _crop_boxes(np.array([[1, 0, 3, 4], [4, 5, 0, 1]], np.uint16), np.array([0, 1], np.int32), 1, 1,
                       sampling_mode="STRICT_ALIGN_CORNERS"), [CROP_X],
           lambda x: _loop_crop(x, [(1, 0, 3, 4), (4, 5, 0, 1)], [0, 1], 1, 1, "STRICT_ALIGN_CORNERS", 0.0),
           opset=18),
]

# DEFAULT and OFFSET_CORNERS: the documented grid over the box (unverified on a device)
GRID_BOXES = np.array([[0.5, 1.0, 3.5, 4.0], [1.0, 0.25, 1.5, 5.5]])  # the second is under a pixel high
for mode, opset in (("DEFAULT", 15), ("OFFSET_CORNERS", 16)):
    CASES.append(OpCase(
        "crop_resize", f"{mode.lower()}-documented-box-grid-ios{opset}",
        _crop_roi(np.concatenate([[[0], [0]], GRID_BOXES], 1).astype(np.float32).reshape(2, 1, 5, 1, 1), 3, 4,
                  sampling_mode=mode), [CROP_X[:1]],
        lambda x, mode=mode: _loop_crop(x, GRID_BOXES, [0, 0], 3, 4, mode, 0.0).reshape(2, 1, 3, 3, 4),
        opset=opset))
    CASES.append(OpCase(
        "crop_resize", f"{mode.lower()}-documented-box-grid-ios18",
        _crop_boxes(GRID_BOXES.astype(np.float32), np.array([1, 0], np.int32), 3, 4, sampling_mode=mode),
        [CROP_X], lambda x, mode=mode: _loop_crop(x, GRID_BOXES, [1, 0], 3, 4, mode, 0.0), opset=18))


def _roi_align(x, boxes, batch, scale, crop_h, crop_w):
    """Detectron's RoIAlign with one sample per bin (boxes wide enough that no clamp applies)."""
    rows = [_roi_align_points(b[0] * scale, b[2] * scale, crop_h) for b in boxes]
    cols = [_roi_align_points(b[1] * scale, b[3] * scale, crop_w) for b in boxes]
    out = np.zeros((len(boxes), x.shape[1], crop_h, crop_w))
    for n in range(len(boxes)):
        grid_r = np.array(rows[n])[None, :, None] * np.ones((1, 1, crop_w))
        grid_c = np.array(cols[n])[None, None, :] * np.ones((1, crop_h, 1))
        out[n] = _loop_sample(x[batch[n]][None], grid_r, grid_c, "bilinear", "border", 0.0)[0]
    return out


ROI_BOXES = np.array([[2.0, 1.0, 8.0, 9.0], [0.0, 3.0, 6.0, 11.0]])  # at spatial_scale 0.5
CASES.append(OpCase(
    "crop_resize", "offset-corners-like-roi-align-ios17",
    _crop_boxes(ROI_BOXES.astype(np.float32), np.array([0, 1], np.int32), 2, 3, spatial_scale=0.5,
                sampling_mode="OFFSET_CORNERS"),
    [CROP_X], lambda x: _roi_align(x, ROI_BOXES, [0, 1], 0.5, 2, 3), opset=17))
