"""Class groups, the ViT cost model and budget, the plan format, the strategy registry. No torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgevit.errors import ArtifactError, PlanningError
from edgevit.partition import Plan, PlanPiece
from edgevit.partition.budget import MIN_KEEP_RATIO, keep_for_budget, keep_for_ratio, smallest_shape
from edgevit.partition.classes import balanced_split, confusion_split, group_sizes, within_group_confusion
from edgevit.partition.cost import ViTShape, vit_params

TINY64 = ViTShape(image_size=64, patch_size=16, embed_dim=192, num_heads=3, head_dim=64, mlp_hidden=(768,) * 12,
                  num_classes=10)


def test_balanced_split():
    assert balanced_split(10, 3) == ((0, 1, 2, 3), (4, 5, 6), (7, 8, 9))
    assert balanced_split(4, 4) == ((0,), (1,), (2,), (3,))
    assert group_sizes(11, 4) == (3, 3, 3, 2)
    with pytest.raises(PlanningError, match="5 devices but only 4 classes"):
        balanced_split(4, 5)


def test_confusion_split_keeps_confused_classes_together():
    confusion = [[0] * 6 for _ in range(6)]
    for a, b, n in [(0, 5, 9), (1, 4, 7), (2, 3, 8), (0, 4, 1)]:
        confusion[a][b] = n
    groups = confusion_split(confusion, 3)
    assert sorted(groups) == [(0, 5), (1, 4), (2, 3)]
    assert within_group_confusion(confusion, groups) >= within_group_confusion(confusion, balanced_split(6, 3))
    assert [len(g) for g in confusion_split(confusion, 4)] in ([2, 2, 1, 1], [1, 1, 2, 2], [1, 2, 1, 2],
                                                               [2, 1, 2, 1], [1, 2, 2, 1], [2, 1, 1, 2])
    assert sorted(c for g in confusion_split(confusion, 4) for c in g) == list(range(6))


def test_vit_params_of_known_models():
    tiny224 = ViTShape(224, 16, 192, 3, 64, (768,) * 12, 1000)
    small224 = ViTShape(224, 16, 384, 6, 64, (1536,) * 12, 1000)
    assert (vit_params(tiny224), vit_params(small224)) == (5_717_416, 22_050_664)  # the zoo's registered counts


def test_budget_meets_the_target_and_is_monotone():
    full = vit_params(TINY64)
    previous = None
    for reduction in (2, 4, 8, 16):
        keep = keep_for_budget(TINY64, 5, max_params=full // reduction)
        params = vit_params(keep.shape(TINY64, 5))
        assert params <= full // reduction
        assert params > full // reduction * 0.6  # not far below: the widest that fits
        assert previous is None or keep.ratio < previous
        previous = keep.ratio
    assert keep_for_ratio(TINY64, 1.0).embed_dim == 192
    assert keep_for_ratio(TINY64, 0.5).head_dim == 32
    floor = smallest_shape(TINY64, 5)
    assert floor.embed_dim == 12 and floor.head_dim == 4 and min(floor.mlp_hidden) >= 4
    with pytest.raises(PlanningError, match="smallest feasible sub-model"):
        keep_for_budget(TINY64, 5, max_params=1000)
    assert keep_for_ratio(TINY64, 1e-6).ratio == MIN_KEEP_RATIO


def test_plan_round_trip_and_errors():
    piece = PlanPiece("sub0", "submodel", "sub0-onnx-fp32", "dev0", "input", "logits", {"params": 3},
                      {"compute_ms": 1.0}, classes=(0, 1))
    fusion = PlanPiece("fusion", "fusion", "fusion-onnx-fp32", None, "input", "logits")
    plan = Plan("classwise", {"name": "test_vit"}, ("a", "b"), "onnx", "fp32", {"size": 16}, (piece,), fusion)
    again = Plan.from_dict(plan.to_dict())
    assert again == plan
    with pytest.raises(ArtifactError, match="not an edgevit plan"):
        Plan.from_dict({"format": "x"})
    data = plan.to_dict()
    data["fusion"] = None
    with pytest.raises(ArtifactError, match="needs a fusion head"):
        Plan.from_dict(data)
    data = plan.to_dict()
    del data["pieces"][0]["device"]
    with pytest.raises(ArtifactError, match="missing device"):
        Plan.from_dict(data)


def test_an_exported_piece_is_counted_by_its_file_and_overflows_are_named():
    placed = {"weight_bytes": 3_000_000, "activation_bytes": 500_000, "memory_bytes": 3_500_000}
    estimated = PlanPiece("sub0", "submodel", "sub0", "dev0", "input", "logits", dict(placed))
    exported = PlanPiece("sub1", "submodel", "sub1", "dev1", "input", "logits", {**placed, "file_bytes": 4_250_000})
    assert estimated.memory_bytes == 3_500_000  # not exported: the memory model
    assert exported.memory_bytes == 4_750_000  # exported: the file (a recipe kept a layer float) + activations
    devices = {"device": [{"name": "dev0", "memory_mb": 4.0}, {"name": "dev1", "memory_mb": 4.0}]}
    plan = Plan("classwise", {"name": "m"}, ("a",), "onnx", "int8", {}, (estimated, exported), devices=devices)
    (overflow,) = plan.memory_overflows()
    assert (overflow.device, overflow.pieces, overflow.needed_bytes, overflow.available_bytes) == \
        ("dev1", ("sub1",), 4_750_000, 4_000_000)
    assert "4.75 MB as exported (the memory model estimated 3.5 MB" in overflow.message()
    roomy = {"device": [{"name": "dev0", "memory_mb": 4.0}, {"name": "dev1", "memory_mb": 4.75}]}
    assert Plan("classwise", {"name": "m"}, ("a",), "onnx", "int8", {}, (estimated, exported),
                devices=roomy).memory_overflows() == ()


def test_strategies_are_registered_lazily_and_planning_imports_no_torch():
    from edgevit.split import STRATEGIES

    assert STRATEGIES.names() == ["classwise", "pipeline"]
    code = ("import sys, edgevit.partition, edgevit.devices, edgevit.split, edgevit.cluster.local\n"
            "import edgevit.partition.fusion_layout\n"
            "from edgevit.split import STRATEGIES\n"
            "from edgevit.cluster.local import run_local\n"
            "STRATEGIES.names()\n"
            "print([m for m in ('torch', 'onnx', 'coremltools') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
