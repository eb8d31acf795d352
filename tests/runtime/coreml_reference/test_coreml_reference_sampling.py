"""What the coreml-reference executor refuses in ``resample``, ``affine`` and ``crop_resize``.

Each refusal is an attribute value or input MIL leaves undefined (docs/coreml_reference.md,
*Sampling at computed coordinates*): the run stops with an ``UnsupportedOpError`` naming it,
instead of returning a guess. The values these ops do compute are op cases in
``coreml_reference_cases_sampling.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.errors import UnsupportedOpError
from edgevit.runtime.backends.coreml_reference import CoreMLReferenceBackend

SIXTEEN = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)


def _run(save_program, build, inputs, opset):
    model = CoreMLReferenceBackend().open(save_program(build, inputs, opset), None)
    return model.run(dict(zip((spec.name for spec in model.input_specs), inputs)))


def test_crop_resize_refuses_unalign_corners(save_program):
    """coremltools' device-checked iOS15 case: roi [2, 2, 1, 1], normalized, UNALIGN_CORNERS, 2 x 2.

    Core ML returned [3.5, 5.5, 11.5, 13.5], rows and columns 0.5 and 2.5: the half-pixel grid of
    the whole 4 x 4 image, not of the box under any scaling of it, so no box rule is known.
    """
    roi = np.array([2, 2, 1, 1], np.float32).reshape(1, 1, 4, 1, 1)
    build = lambda mb, x: mb.crop_resize(x=x, roi=roi, target_height=2, target_width=2,  # noqa: E731
                                         normalized_coordinates=True, sampling_mode="UNALIGN_CORNERS")
    with pytest.raises(UnsupportedOpError, match="sampling_mode='UNALIGN_CORNERS'"):
        _run(save_program, build, [SIXTEEN], 15)


def test_crop_resize_refuses_roi_with_batch_indices_over_a_batch(save_program):
    roi = np.array([1, 0, 0, 2, 2], np.float32).reshape(1, 1, 5, 1, 1)
    build = lambda mb, x: mb.crop_resize(x=x, roi=roi, target_height=2, target_width=2,  # noqa: E731
                                         sampling_mode="ALIGN_CORNERS")
    with pytest.raises(UnsupportedOpError, match=r"batch indices.*\[N, 1, C, h, w\].*\[N, 2, C, h, w\]"):
        _run(save_program, build, [np.concatenate([SIXTEEN, SIXTEEN])], 16)


@pytest.mark.parametrize("mode", ["DEFAULT", "OFFSET_CORNERS"])
def test_crop_resize_refuses_a_flipped_box_outside_the_align_modes(save_program, mode):
    boxes = np.array([[2.0, 0.0, 1.0, 3.0]], np.float32)  # h_end < h_start
    build = lambda mb, x, b: mb.crop_resize(x=x, boxes=b, target_height=2, target_width=2,  # noqa: E731
                                            sampling_mode=mode)
    with pytest.raises(UnsupportedOpError, match=f"end comes before its start with sampling_mode='{mode}'"):
        _run(save_program, build, [SIXTEEN, boxes], 17)


def test_crop_resize_refuses_a_box_index_outside_the_batch(save_program):
    build = lambda mb, x, i: mb.crop_resize(x=x, boxes=np.array([[0, 0, 3, 3]], np.float32),  # noqa: E731
                                            box_indices=i, target_height=2, target_width=2)
    with pytest.raises(UnsupportedOpError, match=r"box indices \[3\] for a batch of 1"):
        _run(save_program, build, [SIXTEEN, np.array([3], np.int32)], 17)


def test_resample_refuses_an_unknown_sampling_mode(save_program):
    coords = np.zeros((1, 2, 2, 2), np.float32)
    build = lambda mb, x, c: mb.resample(x=x, coordinates=c, sampling_mode="bicubic",  # noqa: E731
                                         padding_mode="border", padding_value=0.0,
                                         coordinates_mode="unnormalized", align_corners=True)
    with pytest.raises(UnsupportedOpError, match="sampling_mode='bicubic'"):
        _run(save_program, build, [SIXTEEN, coords], 16)


def test_resample_nearest_rounds_half_to_even(save_program):
    """PyTorch's grid_sample rounds with nearbyint; coremltools' device test has one tie (6.5 -> 6)."""
    row = np.array([10, 11, 12, 13, 14], np.float32).reshape(1, 1, 1, 5)
    columns = np.array([0.5, 1.5, 2.5, 3.5], np.float32)
    coords = np.stack([columns, np.zeros(4, np.float32)], -1).reshape(1, 1, 4, 2)
    build = lambda mb, x, c: mb.resample(x=x, coordinates=c, sampling_mode="nearest",  # noqa: E731
                                         padding_mode="border", padding_value=0.0,
                                         coordinates_mode="unnormalized", align_corners=True)
    out = list(_run(save_program, build, [row, coords], 16).values())[0]
    np.testing.assert_array_equal(out.reshape(-1), [10, 12, 12, 14])
