"""The memory model reads the one precision table: compressed weights are counted at their bits."""

from __future__ import annotations

import pytest

from edgevit.partition.cost import (
    ViTShape,
    activation_bytes_per_value,
    vit_params,
    vit_piece_cost,
    weight_bytes,
)
from edgevit.precision import PRECISIONS

SHAPE = ViTShape(image_size=64, patch_size=16, embed_dim=192, num_heads=3, head_dim=64, mlp_hidden=(768,) * 12,
                 num_classes=10)


@pytest.mark.parametrize("precision", PRECISIONS.names())
def test_weights_are_counted_at_the_precisions_bits(precision):
    params = vit_params(SHAPE)
    bits = PRECISIONS.get(precision).weight_bits
    cost = vit_piece_cost("sub0", SHAPE, precision)
    assert cost.weight_bytes == weight_bytes(params, precision) == round(params * bits / 8)
    assert cost.activation_bytes % activation_bytes_per_value(precision) == 0


def test_w4_weighs_an_eighth_of_fp32_and_w6_three_sixteenths():
    fp32, w6, w4 = (vit_piece_cost("p", SHAPE, p).weight_bytes for p in ("fp32", "w6", "w4"))
    assert w4 == pytest.approx(fp32 / 8, abs=1) and w6 == pytest.approx(fp32 * 3 / 16, abs=1)


def test_an_unknown_precision_lists_the_valid_ones():
    with pytest.raises(Exception, match="Valid precisions: fp16, fp32, int8, w4, w6, w8"):
        weight_bytes(1000, "int4")
