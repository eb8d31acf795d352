"""TinyViT against the official code (microsoft/Cream): keys, outputs, checkpoint names, sizes.

The golden files were written by the official ``TinyViT/models/tiny_vit.py`` (Cream @ 4a13c40):
* ``golden/tiny_vit_keys.json``: ``{key: shape}`` of every full-size variant as the official
  constructor builds it, plus the ``attention_bias_idxs`` buffers that the released
  checkpoints carry ("checkpoint_only"). The one documented difference: those buffers are
  non-persistent here too (regenerated, not in our ``state_dict``), as in current official code.
* ``golden/tiny_vit_test.safetensors``: an official model with ``test_tiny_vit``'s
  hyper-parameters, random weights and BN statistics, and its outputs for fixed inputs at 64
  pixels (4 windows in stage 1) and, from the same weights, at 96 pixels (zero padding).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from golden_helpers import assert_matches_golden
from tolerances import EXACT, GOLDEN_REPARAMETERIZED

from edgevit.errors import CheckpointError, CheckpointMismatchError, InvalidArgumentError
from edgevit.models import Checkpoint, create_model, model_info, read_checkpoint
from edgevit.models.layers.attention_bias import attention_bias_index, first_appearance_index
from edgevit.models.tiny_vit import TinyViT, window_partition, window_reverse

GOLDEN = Path(__file__).parent / "golden"
FULL = ["tiny_vit_5m_224", "tiny_vit_11m_224", "tiny_vit_21m_224", "tiny_vit_21m_384", "tiny_vit_21m_512"]
NAME = "test_tiny_vit"


def _golden_checkpoint() -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    ckpt = read_checkpoint(GOLDEN / "tiny_vit_test.safetensors")
    io = {k: ckpt.state_dict.pop(k) for k in list(ckpt.state_dict) if k.startswith("golden.")}
    return ckpt, io


def _randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


# -- official keys, shapes and outputs ---------------------------------------------------------
@pytest.mark.parametrize("name", FULL)
def test_keys_and_shapes_equal_official(name):
    golden = json.loads((GOLDEN / "tiny_vit_keys.json").read_text())[name]
    with torch.device("meta"):
        model = create_model(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == golden["state_dict"]
    assert list(ours) == list(golden["state_dict"]), "same order as the official state_dict"
    non_persistent = {k: list(v.shape) for k, v in model.named_buffers() if k not in ours}
    assert non_persistent == golden["checkpoint_only"]


def test_golden_outputs_of_official_code():
    ckpt, io = _golden_checkpoint()
    model = create_model(NAME, weights=ckpt)
    with torch.no_grad():
        out = model(io["golden.input_64"])
        deploy = model.reparameterize()(io["golden.input_64"])
    assert_matches_golden(out, io["golden.output_64"])
    assert_matches_golden(deploy, io["golden.output_64"], GOLDEN_REPARAMETERIZED)


def test_golden_outputs_with_padding_at_a_non_canonical_size():
    ckpt, io = _golden_checkpoint()
    model = create_model(NAME, weights=ckpt, image_size=96)
    assert [b.input_resolution for b in (model.layers[2].blocks[0], model.layers[3].blocks[0])] == [(6, 6), (3, 3)]
    with torch.no_grad():
        out = model(io["golden.input_96"])
        deploy = model.reparameterize()(io["golden.input_96"])
    assert_matches_golden(out, io["golden.output_96"])
    assert_matches_golden(deploy, io["golden.output_96"], GOLDEN_REPARAMETERIZED)


def test_test_variant_really_partitions_windows():
    model = create_model(NAME)
    stage1 = model.layers[1].blocks[0]
    assert stage1.input_resolution == (8, 8) and stage1.window_size == 4  # 2 x 2 windows
    for layer in model.layers[2:]:
        assert layer.blocks[0].input_resolution[0] == layer.blocks[0].window_size  # one window


@pytest.mark.parametrize("name", FULL)
def test_patch_merging_is_stride_2(name):
    """Not the MobileSAM look-alike (stride 1 in the last PatchMergings)."""
    with torch.device("meta"):
        model = create_model(name)
    strides = [layer.downsample.conv2.c.stride for layer in model.layers if layer.downsample is not None]
    assert strides == [(2, 2)] * 3


# -- rank-4 rewrites ---------------------------------------------------------------------------
def test_window_partition_equals_the_rank6_formula():
    batch, rows, cols, ws, channels = 2, 3, 2, 4, 5
    x = torch.randn(batch, rows * ws, cols * ws, channels)
    official = x.view(batch, rows, ws, cols, ws, channels).transpose(2, 3).reshape(-1, ws * ws, channels)
    windows = window_partition(x.reshape(batch, -1, channels), batch, rows * ws, cols * ws, ws)
    EXACT.check(windows, official)
    back = window_reverse(windows, batch, rows * ws, cols * ws, ws)
    EXACT.check(back, x.reshape(batch, -1, channels))


@pytest.mark.parametrize("ws", [2, 4, 7, 12, 14, 16, 24])
def test_bias_index_closed_form_is_the_official_numbering(ws):
    points = [(y, x) for y in range(ws) for x in range(ws)]
    assert torch.equal(attention_bias_index(ws), first_appearance_index(points, points))


def test_padded_inference_graph_is_rank4_without_gather():
    deploy = create_model(NAME, image_size=96).reparameterize()
    graph = torch.export.export(deploy, (torch.randn(1, 3, 96, 96),)).graph
    ops = {str(node.target) for node in graph.nodes if node.op == "call_function"}
    assert any("pad" in op for op in ops), "96 px pads stages 2 and 3"
    for node in graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            assert val.dim() <= 4, f"{node.name} has rank {val.dim()}"
        assert "index.Tensor" not in str(node.target)


def test_biases_are_not_stale_after_loading_in_eval_mode():
    source = _randomized(create_model(NAME), seed=1)
    target = create_model(NAME).eval()  # the official eval() would cache the zero biases here
    target.load_state_dict(source.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))


# -- checkpoints -------------------------------------------------------------------------------
def _official_to_timm(key: str) -> str:
    """timm's names, written out stage by stage (independently of the model's own mapping)."""
    parts = key.split(".")
    if parts[0] == "patch_embed":  # patch_embed.seq.{0,2}.{c,bn}.* -> patch_embed.conv{1,2}.{conv,bn}.*
        conv = {"0": "conv1", "2": "conv2"}[parts[2]]
        inner = "conv" if parts[3] == "c" else parts[3]
        return ".".join(["patch_embed", conv, inner, *parts[4:]])
    if parts[0] == "layers":
        stage = int(parts[1])
        if parts[2] == "downsample":  # end of official stage i == start of timm stage i+1
            parts = ["stages", str(stage + 1), *parts[2:]]
        else:
            parts = ["stages", str(stage), *parts[2:]]
        return ".".join("conv" if (p == "c" and i == len(parts) - 2) else p for i, p in enumerate(parts))
    if parts[0] == "norm_head":
        return "head.norm." + ".".join(parts[1:])
    if parts[0] == "head":
        return "head.fc." + ".".join(parts[1:])
    raise AssertionError(key)


@pytest.mark.parametrize("head_norm", ["head.norm.", "head.norm_head."])
def test_timm_named_checkpoint_loads(tmp_path, head_norm):
    model = _randomized(create_model(NAME))
    timm_sd = {_official_to_timm(k): v for k, v in model.state_dict().items()}
    timm_sd = {k.replace("head.norm.", head_norm): v for k, v in timm_sd.items()}
    for literal in (  # names as they appear in timm/models/tiny_vit.py (aa4b585)
        "patch_embed.conv1.conv.weight", "patch_embed.conv2.bn.running_var",
        "stages.0.blocks.0.conv3.conv.weight", "stages.1.downsample.conv2.conv.weight",
        "stages.1.blocks.1.attn.attention_biases", "stages.2.blocks.0.local_conv.conv.weight",
        "stages.3.blocks.0.mlp.fc1.weight", "head.fc.weight", f"{head_norm}bias",
    ):
        assert literal in timm_sd, literal
    assert not any(k.startswith("layers.") or ".c." in k for k in timm_sd)
    path = tmp_path / "timm.pth"
    torch.save(timm_sd, path)
    loaded = create_model(NAME, weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        EXACT.check(loaded(x), model(x))


def _with_legacy_idxs(model: TinyViT) -> dict[str, torch.Tensor]:
    sd = dict(model.state_dict())
    for name, module in model.named_modules():
        if hasattr(module, "attention_biases"):
            ws = int(module.attention_biases.shape[1] ** 0.5)
            points = [(y, x) for y in range(ws) for x in range(ws)]
            sd[f"{name}.attention_bias_idxs"] = first_appearance_index(points, points)
    return sd


def test_legacy_attention_bias_idxs_accepted(tmp_path):
    model = _randomized(create_model(NAME))
    sd = _with_legacy_idxs(model)
    assert sum(k.endswith("attention_bias_idxs") for k in sd) == 5
    torch.save({"model": sd}, tmp_path / "legacy.pth")
    loaded = create_model(NAME, weights=tmp_path / "legacy.pth")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        EXACT.check(loaded(x), model(x))


def test_wrong_attention_bias_idxs_refused(tmp_path):
    sd = _with_legacy_idxs(create_model(NAME))
    key = "layers.1.blocks.0.attn.attention_bias_idxs"
    sd[key] = sd[key].flip(0)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError, match="attention_bias_idxs"):
        create_model(NAME, weights=tmp_path / "bad.pth")


def test_no_dist_head_and_dist_head_checkpoints_refused(tmp_path):
    model = create_model(NAME)
    assert getattr(model, "dist_head", None) is None  # not even an optional one
    model.set_dist_head(False)  # nothing to do
    sd = dict(model.state_dict())
    sd["dist_head.weight"], sd["dist_head.bias"] = torch.zeros(10, 64), torch.zeros(10)
    torch.save(sd, tmp_path / "dist.pth")
    with pytest.raises(CheckpointError, match="no distillation head"):
        create_model(NAME, weights=tmp_path / "dist.pth")


# -- sizes and preprocessing -------------------------------------------------------------------
def test_image_size_rebuilds_grids_and_keeps_keys(tmp_path):
    model = _randomized(create_model(NAME))
    torch.save(model.state_dict(), tmp_path / "w.pth")
    bigger = create_model(NAME, weights=tmp_path / "w.pth", image_size=128)
    assert bigger.image_size == 128
    assert [layer.blocks[0].input_resolution for layer in bigger.layers[1:]] == [(16, 16), (8, 8), (4, 4)]
    with torch.no_grad():
        assert bigger(torch.randn(1, 3, 128, 128)).shape == (1, 10)
        assert bigger.forward_head(bigger.forward_features(torch.randn(1, 3, 128, 128)), pre_logits=True).shape == (1, 64)


def test_image_size_refused_unless_multiple_of_32():
    with pytest.raises(InvalidArgumentError, match="multiples of 32"):
        create_model(NAME, image_size=80)
    with pytest.raises(InvalidArgumentError, match="multiple of 32"):
        TinyViT(image_size=100)


def test_preprocessing():
    for name in FULL[:3]:
        pre = model_info(name).preprocess
        assert (pre.resize_mode, pre.crop_pct, pre.interpolation) == ("crop", 0.875, "bicubic")
        assert pre.spec(224).resize_size == 256
    for name, size in (("tiny_vit_21m_384", 384), ("tiny_vit_21m_512", 512)):
        info = model_info(name)
        assert info.image_size == size and info.fixed_size and info.size_multiple == 32
        assert (info.preprocess.resize_mode, info.preprocess.crop_pct) == ("warp", 1.0)
        assert info.preprocess.spec(size).resize_size == size
