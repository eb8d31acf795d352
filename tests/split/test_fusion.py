"""The fusion head with presence columns, in PyTorch: what it ignores, what it is trained on, its options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tolerances import SAMPLED_SHARE

from edgevit.errors import InvalidArgumentError
from edgevit.partition import fusion_input
from edgevit.split.fusion import FusionHead, degraded_top1, head_input, random_presence
from edgevit.split.options import SplitOptions

DIMS = (8, 12, 6)


@pytest.fixture
def head():
    torch.manual_seed(0)
    head = FusionHead(DIMS, num_classes=5, hidden=16).eval()
    with torch.no_grad():  # not the LayerNorms' identity initialisation: garbage must not pass by luck
        for norm in head.norms:
            norm.weight.normal_()
            norm.bias.normal_()
    return head


def test_a_missing_sub_model_is_ignored_whatever_its_slice_holds(head):
    features = torch.randn(4, sum(DIMS))
    presence = torch.tensor([[1.0, 0.0, 1.0]]).repeat(4, 1)
    zeros = head_input(features, presence, DIMS)
    garbage = zeros.clone()
    garbage[:, 8:20] = torch.randn(4, 12) * 100
    present = garbage.clone()
    present[:, -2] = 1.0
    with torch.no_grad():
        assert torch.equal(head(zeros), head(garbage))
        assert not torch.allclose(head(garbage), head(present))  # the slice counts once it is present
    assert head.in_features == sum(DIMS) + len(DIMS) and head(zeros).shape == (4, 5)


def test_the_torch_input_is_the_coordinators_input():
    features = torch.randn(3, sum(DIMS))
    presence = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    split = np.split(features.numpy(), np.cumsum(DIMS)[:-1], axis=1)
    for row in range(3):
        pieces = [s[row : row + 1] if presence[row, i] else None for i, s in enumerate(split)]
        expected = fusion_input(pieces, list(DIMS), presence=True)
        assert np.array_equal(head_input(features[row : row + 1], presence[row : row + 1], DIMS).numpy(), expected)


def test_training_masks_drop_sub_models_but_never_all_and_keep_complete_rows_common():
    torch.manual_seed(0)
    presence = random_presence(20_000, 3, 0.25)
    assert set(presence.unique().tolist()) == {0.0, 1.0}
    assert (presence.sum(1) >= 1).all()
    complete = (presence.sum(1) == 3).float().mean().item()
    assert complete == pytest.approx(0.75**3 + 0.25**3, abs=SAMPLED_SHARE.value)
    assert (1 - presence).mean(0).tolist() == pytest.approx([0.25 - 0.25**3] * 3, abs=SAMPLED_SHARE.value)
    assert (random_presence(100, 3, 0.0) == 1).all() and (random_presence(100, 1, 0.9) == 1).all()


def test_degraded_accuracy_per_missing_sub_model(head):
    features = torch.randn(32, sum(DIMS)).numpy()
    labels = np.arange(32) % 5
    with torch.no_grad():
        presence = torch.ones(32, 3)
        presence[:, 1] = 0
        expected = (head(head_input(torch.from_numpy(features), presence, DIMS)).argmax(1).numpy() == labels).mean()
    result = degraded_top1(head, features, labels, ["sub0", "sub1", "sub2"])
    assert list(result) == ["sub0", "sub1", "sub2"] and result["sub1"] == pytest.approx(expected * 100)
    assert degraded_top1(FusionHead((8,), 5), features[:, :8], labels, ["sub0"]) == {}


@pytest.mark.parametrize("value", [1.0, -0.1, float("nan"), True, "0.2"])
def test_fusion_drop_must_be_a_probability_below_one(value):
    with pytest.raises(InvalidArgumentError, match="fusion_drop must be at least 0 and below 1"):
        SplitOptions(fusion_drop=value)
    assert SplitOptions(fusion_drop=0).fusion_drop == 0 and SplitOptions().fusion_drop == 0.25
