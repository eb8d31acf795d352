"""Class-wise structured pruning: real smaller modules, the cost model, the KL scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tolerances import PRUNED_REPARAMETERIZED, REORDERED

from edgevit.models import count_macs, count_params, create_model, list_models
from edgevit.models.vit import VisionTransformer
from edgevit.partition.budget import keep_for_ratio
from edgevit.partition.cost import vit_float_params, vit_macs, vit_params
from edgevit.quantize.base import float_params
from edgevit.split.pruners import FfnPruner, VitPruner, pruner_for
from edgevit.split.scoring import _install_vit_masks, exact_kl, vit_scores
from edgevit.split.vit_prune import prune_vit, vit_shape


def _group_images(digits6, spec, classes, count=64):
    x, _ = digits6[0].with_classes(classes).arrays(spec)
    return np.ascontiguousarray(x[:count])


def test_keep_everything_reproduces_the_group_logits(base_vit, digits6, spec):
    x = torch.from_numpy(_group_images(digits6, spec, [1, 4]))
    group = VitPruner().group_model(base_vit, [1, 4])
    with torch.no_grad():
        REORDERED.check(group(x), base_vit(x)[:, [1, 4]])


def test_pruned_vit_is_a_real_smaller_vit(base_vit, digits6, spec):
    images = _group_images(digits6, spec, [0, 1, 2])
    group = VitPruner().group_model(base_vit, [0, 1, 2])
    sub = VitPruner().prune(group, images, 0.5, reference=base_vit)
    assert isinstance(sub, VisionTransformer)
    shape = vit_shape(sub)
    assert (shape.embed_dim, shape.head_dim, shape.num_heads, shape.num_classes) == (32, 8, 4, 3)
    assert sum(shape.mlp_hidden) == 512 and min(shape.mlp_hidden) >= 4
    assert sub.blocks[0].attn.qkv.weight.shape == (3 * 4 * 8, 32)  # smaller tensors, not masks
    assert vit_params(shape) == count_params(sub) < count_params(base_vit) / 3.5
    assert vit_macs(shape) == count_macs(sub, shape.image_size)
    assert vit_float_params(shape) == float_params(sub, torch.zeros(1, 3, shape.image_size, shape.image_size))
    with torch.no_grad():
        out = sub(torch.from_numpy(images[:4]))
        feats = sub.forward_head(sub.forward_features(torch.from_numpy(images[:4])), pre_logits=True)
    assert out.shape == (4, 3) and feats.shape == (4, 32)


def test_pruning_keeps_the_important_units(base_vit, digits6, spec):
    """Pruned by the scores beats pruned by the reverse of the scores, on the group's KL."""
    images = _group_images(digits6, spec, [2, 3, 5], count=96)
    group = VitPruner().group_model(base_vit, [2, 3, 5])
    scores = vit_scores(group, images)
    keep = keep_for_ratio(vit_shape(group), 0.6)
    good = prune_vit(group, scores, keep)
    reverse = type(scores)(-scores.residual, -scores.head_dims, [-s for s in scores.ffn])
    bad = prune_vit(group, reverse, keep)
    x = torch.from_numpy(images)
    with torch.no_grad():
        p = group(x).log_softmax(-1)

        def kl(model):
            return float((p.exp() * (p - model(x).log_softmax(-1))).sum(-1).mean())

        assert kl(good) < kl(bad) / 4  # 0.07 vs 0.69 nats when written


def test_fisher_estimate_ranks_ffn_neurons_like_the_exact_kl(base_vit, digits6, spec):
    """The cheap second-order estimate against one forward pass per neuron (96 neurons of block 1)."""
    images = _group_images(digits6, spec, [0, 3, 4], count=32)
    group = VitPruner().group_model(base_vit, [0, 3, 4])
    scores = vit_scores(group, images)
    shapes = {"residual": (64,), **{f"heads.{i}": (4, 16) for i in range(4)}, **{f"ffn.{i}": (256,) for i in range(4)}}
    sample = np.random.default_rng(0).choice(256, 96, replace=False)
    exact = exact_kl(group, images, None, _install_vit_masks, shapes, "ffn.1", [(int(j),) for j in sample])
    estimate = scores.ffn[1].numpy()[sample]
    rho = np.corrcoef(_ranks(estimate), _ranks(exact))[0, 1]  # Spearman
    assert rho > 0.85, rho  # 0.98 when written
    top_exact, top_estimate = set(np.argsort(-exact)[:24]), set(np.argsort(-estimate)[:24])
    assert len(top_exact & top_estimate) >= 18  # 24 of 24 when written


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(float)


@pytest.mark.parametrize("name", [n for n in list_models("test_*") if n != "test_vit"])
def test_ffn_pruning_of_hierarchical_families(name):
    model = create_model(name, num_classes=6).eval()
    pruner = pruner_for(model)
    if not isinstance(pruner, FfnPruner):
        pytest.skip(f"{name} is pruned by {type(pruner).__name__}")
    size = model.image_size if hasattr(model, "image_size") else 64
    images = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0)).numpy()
    group = pruner.group_model(model, [1, 3])
    sub = pruner.prune(group, images, 0.25, reference=model)
    assert count_params(sub) == pruner.params_at(model, 2, 0.25) < count_params(model)
    with torch.no_grad():
        assert sub(torch.from_numpy(images)).shape == (8, 2)
        deploy = sub.reparameterize()
        PRUNED_REPARAMETERIZED.check(deploy(torch.from_numpy(images)), sub(torch.from_numpy(images)))


@pytest.mark.parametrize(("name", "reduction", "grouping"),
                         [("test_cas_vit", 1.5, "balanced"), ("test_efficientformerv2", 1.1, "confusion")])
def test_classwise_strategy_on_hierarchical_families(name, reduction, grouping):
    """The class-wise strategy (no export) with FFN-only pruning: sub-models, fusion head, placement."""
    from edgevit.data.datasets import load_dataset
    from edgevit.devices import equal_devices
    from edgevit.split import STRATEGIES
    from edgevit.split.options import SplitOptions
    from edgevit.split.request import SplitRequest
    from edgevit.train import dataset_spec

    classes = [0, 1, 2]
    train = load_dataset("digits", "train").with_classes(classes)
    train = train.subset(np.arange(0, len(train), 8))
    val = load_dataset("digits", "val").with_classes(classes).subset(np.arange(24))
    spec = dataset_spec(name, train, 64)
    model = create_model(name, num_classes=3, image_size=64).eval()
    options = SplitOptions(reduction=reduction, prune_steps=1, recover_epochs=1, fusion_epochs=2, measure_rounds=2,
                           score_images=16, grouping=grouping)
    request = SplitRequest(model, name, train, val, spec, equal_devices(2), options, progress=False)
    built = STRATEGIES.get("classwise")().build(request)
    full = count_params(model)
    groups = [p.piece.classes for p in built.pieces]
    assert sorted(len(g) for g in groups) == [1, 2] and sorted(c for g in groups for c in g) == classes
    if grouping == "balanced":
        assert groups == [(0, 1), (2,)]
    for item in built.pieces:
        assert item.piece.info["pruned"] == "FFN neurons only"
        assert item.piece.cost["params"] * reduction <= full
        assert item.module(item.example).shape == (1, item.piece.info["feature_dim"])
    with torch.no_grad():
        assert built.reference(torch.from_numpy(val.arrays(spec)[0][:4])).shape == (4, 3)
    assert built.plan.latency["end_to_end_ms"] > 0
