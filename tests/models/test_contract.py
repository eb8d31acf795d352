"""The edge contract, checked for every registered model (parametrized over the registry).

Every model, full-size included, is built once per session (with non-trivial BatchNorm
statistics, so that folding is really tested) and run at its default size, batch 1: forward
pass, parameter and MAC counts against the papers, reparameterize(), split points. The
checkpoint round trip and the export-friendliness check run on the tiny test_* models.
"""

from __future__ import annotations

import functools

import pytest
import torch
from tolerances import (
    COUNTED_GMACS,
    PAPER_GMACS,
    PAPER_PARAMS,
    REORDERED,
    REPARAMETERIZED_SCALED,
    max_rel_err,
)

from edgevit.models import count_macs, count_params, create_model, list_models, model_info

FULL = list_models(include_test=False)
TEST = [n for n in list_models() if n not in FULL]
#: every model: the tiny test_* ones in the fast tier, the real-size ones in the slow tier
ALL = TEST + [pytest.param(name, marks=pytest.mark.slow) for name in FULL]

FAMILIES = {"cas_vit", "tiny_vit", "efficientformer", "efficientformerv2", "vit"}


def test_registry_has_every_named_model():
    expected = {
        "cas_vit_xs", "cas_vit_s", "cas_vit_m", "cas_vit_t",
        "tiny_vit_5m_224", "tiny_vit_11m_224", "tiny_vit_21m_224", "tiny_vit_21m_384", "tiny_vit_21m_512",
        "efficientformer_l1", "efficientformer_l3", "efficientformer_l7",
        "efficientformerv2_s0", "efficientformerv2_s1", "efficientformerv2_s2", "efficientformerv2_l",
        "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
    }
    assert expected <= set(FULL)
    assert {model_info(n).family for n in TEST} == FAMILIES, "one test_* variant per family"


def _input(name: str, batch: int = 1) -> torch.Tensor:
    info = model_info(name)
    gen = torch.Generator().manual_seed(len(name))
    return torch.randn(batch, *info.input_size, generator=gen)


@functools.cache
def _built(name: str) -> torch.nn.Module:
    """The model, built once per session; tests must not modify it."""
    model = create_model(name)
    _randomize_norm_stats(model)
    return model


@functools.cache
def _reference(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = _input(name)
    with torch.no_grad():
        return x, _built(name)(x)


@pytest.mark.parametrize("name", ALL)
def test_builds_runs_and_counts(name):
    info = model_info(name)
    model = _built(name)
    assert not model.training
    _, out = _reference(name)
    assert out.shape == (1, info.num_classes)
    assert torch.isfinite(out).all()
    params = count_params(model)
    assert params == info.params, f"{name}: built {params:,} params, info says {info.params:,}"
    macs = count_macs(model, info.image_size) / 1e9
    assert macs == pytest.approx(info.gmacs, rel=COUNTED_GMACS.value), f"{name}: counted {macs:.4f} GMACs"
    if info.paper_params_m is not None:
        if not info.has_dist_head and getattr(model, "dist_head", False) is None:
            # an optional distillation head that the published count includes (CAS-ViT)
            params += model.head.weight.numel() + model.head.bias.numel()
        assert params / 1e6 == pytest.approx(info.paper_params_m, rel=PAPER_PARAMS.value)
    if info.paper_gmacs is not None:
        assert macs == pytest.approx(info.paper_gmacs, rel=PAPER_GMACS.value), f"{name}: {macs:.3f} vs paper {info.paper_gmacs}"
    if info.is_test:
        assert params <= 400_000, f"{name} is a test model but has {params:,} params"


@pytest.mark.parametrize("name", ALL)
def test_reparameterize_keeps_outputs(name):
    model = _built(name)
    x, ref = _reference(name)
    deploy = model.reparameterize()
    assert deploy is not model and deploy.is_reparameterized and not deploy.training
    with torch.no_grad():
        out = deploy(x)
    assert max_rel_err(out, ref, floor=1e-6) < REPARAMETERIZED_SCALED.atol
    names = {type(m).__name__ for m in deploy.modules()}
    assert not names & {"BatchNorm2d", "BatchNorm1d", "DropPath", "Dropout"}, names
    assert getattr(deploy, "dist_head", None) is None


@pytest.mark.parametrize("name", ALL)
def test_split_points_compose_to_forward(name):
    model = _built(name)
    points = model.split_points()
    assert points, "every model can be cut somewhere"
    assert tuple(points) == model_info(name).split_points
    x, ref = _reference(name)
    with torch.no_grad():
        mid = points[len(points) // 2]
        first, rest = model.stage(None, mid), model.stage(mid, None)
        REORDERED.check(rest(first(x)), ref)
        h = x
        for _, piece in model.segments():
            h = piece(h)
        REORDERED.check(h, ref)


@pytest.mark.parametrize("name", TEST)
def test_checkpoint_round_trip(name, tmp_path):
    model = create_model(name)
    _randomize_norm_stats(model)
    path = tmp_path / "w.pth"
    torch.save({"model": model.state_dict()}, path)
    fresh = create_model(name, weights=path)
    x = _input(name, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))


@pytest.mark.parametrize("name", TEST)
def test_reparameterized_graph_is_export_friendly(name):
    """No gather on attention biases and no tensor above rank 4 in the traced inference graph."""
    deploy = create_model(name).reparameterize()
    graph = torch.export.export(deploy, (_input(name),)).graph
    for node in graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            assert val.dim() <= 4, (
                f"{node.name} ({node.target}) has rank {val.dim()}"
            )
        if node.op == "call_function":
            assert "index.Tensor" not in str(node.target), f"gather in inference graph: {node.name}"


def _randomize_norm_stats(model: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics so that folding is really tested."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
