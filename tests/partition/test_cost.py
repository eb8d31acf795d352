"""The memory model reads the one precision table: compressed weights are counted at their bits."""

from __future__ import annotations

import pytest

from edgevit.partition.cost import (
    ViTShape,
    activation_bytes_per_value,
    vit_float_params,
    vit_params,
    vit_piece_cost,
    weight_bytes,
)
from edgevit.precision import PRECISIONS

SHAPE = ViTShape(image_size=64, patch_size=16, embed_dim=192, num_heads=3, head_dim=64, mlp_hidden=(768,) * 12,
                 num_classes=10)


@pytest.mark.parametrize("precision", PRECISIONS.names())
def test_weights_are_counted_at_the_precisions_bits_and_the_rest_at_four_bytes(precision):
    params, kept = vit_params(SHAPE), vit_float_params(SHAPE)
    scheme = PRECISIONS.get(precision)
    cost = vit_piece_cost("sub0", SHAPE, precision)
    if scheme.quantized:  # biases, norms and embeddings stay float in a quantized file
        assert cost.weight_bytes == weight_bytes(params, precision, kept) == \
            round((params - kept) * scheme.weight_bits / 8 + 4 * kept)
    else:
        assert cost.weight_bytes == weight_bytes(params, precision) == round(params * scheme.weight_bits / 8)
    assert cost.activation_bytes % activation_bytes_per_value(precision) == 0


def test_w4_weighs_an_eighth_of_fp32_and_w6_three_sixteenths_in_its_matrices():
    fp32, w6, w4 = (vit_piece_cost("p", SHAPE, p).weight_bytes for p in ("fp32", "w6", "w4"))
    vectors = 4 * vit_float_params(SHAPE)
    assert w4 - vectors == pytest.approx((fp32 - vectors) / 8, abs=1)
    assert w6 - vectors == pytest.approx((fp32 - vectors) * 3 / 16, abs=1)


@pytest.mark.parametrize(("params", "float_params"), [(100, -1), (100, 101)])
def test_float_params_outside_the_parameters_are_refused(params, float_params):
    with pytest.raises(ValueError, match="float_params must be between 0 and params"):
        PRECISIONS.get("w8").weight_bytes(params, float_params)


def test_an_unknown_precision_lists_the_valid_ones():
    with pytest.raises(Exception, match="Valid precisions: fp16, fp32, int8, w4, w6, w8"):
        weight_bytes(1000, "int4")
