"""The fusion head's input from the sub-models that answered (pure numpy, what the coordinator calls)."""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.errors import ArtifactError, InvalidArgumentError
from edgevit.partition import FusionLayout, fusion_input
from edgevit.partition.plan import Plan, PlanPiece

DIMS = [2, 4, 3]


def _features(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((n, d)).astype(np.float32) for d in DIMS]


def test_a_missing_sub_model_is_a_zero_slice_and_a_zero_presence_column():
    a, _, c = _features()
    x = fusion_input([a, None, c], DIMS, presence=True)
    assert x.dtype == np.float32 and x.shape == (5, sum(DIMS) + len(DIMS)) and x.flags.c_contiguous
    assert np.array_equal(x[:, 0:2], a) and np.array_equal(x[:, 6:9], c)
    assert not x[:, 2:6].any()
    assert np.array_equal(x[:, 9:], np.tile([1.0, 0.0, 1.0], (5, 1)))


def test_every_sub_model_present_gives_ones_or_the_plain_concatenation():
    features = _features()
    full = fusion_input(features, DIMS, presence=True)
    assert np.array_equal(full[:, :9], np.concatenate(features, axis=1)) and (full[:, 9:] == 1).all()
    assert np.array_equal(fusion_input(features, DIMS, presence=False), np.concatenate(features, axis=1))


@pytest.mark.parametrize(("features", "dims", "presence", "message"), [
    (lambda f: f[:2], DIMS, True, r"got 2 feature arrays for 3 sub-models"),
    (lambda f: [f[0], f[1][:, :3], f[2]], DIMS, True, r"sub-model 1 have shape \[5, 3\]; expected \[N, 4\]"),
    (lambda f: [f[0], f[1][0], f[2]], DIMS, True, r"sub-model 1 have shape \[4\]; expected \[N, 4\]"),
    (lambda f: [f[0], f[1][:3], f[2]], DIMS, True, r"sub-model 1 are for 3 images, the others for 5"),
    (lambda f: [None, None, None], DIMS, True, r"no sub-model answered"),
    (lambda f: [f[0], None, f[2]], DIMS, False, r"sub-model\(s\) \[1\] missing, but .* takes features only"),
    (lambda f: f, [2, 0, 3], True, r"feature_dims must be positive integers, got \[2, 0, 3\]"),
])
def test_wrong_inputs_are_refused_with_the_numbers(features, dims, presence, message):
    with pytest.raises(InvalidArgumentError, match=message):
        fusion_input(features(_features()), dims, presence)


def _plan(fusion_info: dict, piece_info: dict | None = None) -> Plan:
    pieces = tuple(PlanPiece(f"sub{i}", "submodel", f"sub{i}", f"dev{i}", "input", "logits", classes=(i,),
                             info={"feature_dim": d} if piece_info is None else piece_info) for i, d in enumerate(DIMS))
    fusion = PlanPiece("fusion", "fusion", "fusion", None, "input", "logits", info=fusion_info)
    return Plan("classwise", {"name": "test_vit"}, ("a", "b", "c"), "onnx", "fp32", {"size": 16}, pieces, fusion)


def test_the_layout_is_read_from_the_plan_and_older_plans_take_features_only():
    layout = FusionLayout.from_plan(_plan({"presence_columns": 3, "feature_dims": DIMS}))
    assert layout == FusionLayout((2, 4, 3), True) and layout.width == 12
    old = FusionLayout.from_plan(_plan({"feature_order": ["sub0", "sub1", "sub2"]}))
    assert old == FusionLayout((2, 4, 3), False) and old.width == 9  # dims from the pieces' feature_dim
    assert FusionLayout.from_plan(_plan({}, piece_info={})) == FusionLayout(None, False)
    assert FusionLayout.from_plan(Plan.from_dict(_plan({"presence_columns": 3, "feature_dims": DIMS}).to_dict())) \
        == layout


@pytest.mark.parametrize(("info", "message"), [
    ({"presence_columns": 2, "feature_dims": DIMS}, "presence_columns is 2, but the plan has 3 sub-models"),
    ({"presence_columns": True, "feature_dims": DIMS}, "presence_columns is True"),
    ({"presence_columns": 3, "feature_dims": [2, 4]}, r"feature_dims is \[2, 4\]; expected 3 positive integers"),
])
def test_a_layout_that_disagrees_with_the_pieces_is_refused(info, message):
    with pytest.raises(ArtifactError, match=message):
        FusionLayout.from_plan(_plan(info))


def test_presence_columns_without_feature_dims_are_refused():
    with pytest.raises(ArtifactError, match="presence columns but fusion.info.feature_dims is missing"):
        FusionLayout.from_plan(_plan({"presence_columns": 3}, piece_info={}))
