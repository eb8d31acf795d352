"""EfficientFormer V2 against the official code (snap-research/EfficientFormer @ d01da42).

The golden files were produced by running the official ``models/efficientformer_v2.py``:
* ``golden/efficientformerv2_keys.json``: ``{key: shape}`` of ``efficientformerv2_s0/s1/s2/l()``
  as the official constructor builds them (``distillation=True``, so with ``dist_head``, and with
  the persistent ``attention_bias_idxs`` buffers the official checkpoints carry).
* ``golden/efficientformerv2_test.safetensors``: an official ``EfficientFormerV2`` at
  ``test_efficientformerv2``'s hyper-parameters, built at resolution 96 (odd 3x3 attention grids,
  unlike the 2x2 ones at the default 64), with random weights, layer scales, attention biases and
  BN statistics: its state dict (including ``attention_bias_idxs``), ``golden.input`` and
  ``golden.output`` (official eval forward, the mean of head and dist_head).
* ``golden/efficientformerv2_timm_keys.json``: the state-dict layout of timm's
  ``efficientformerv2_s0`` (huggingface/pytorch-image-models @ aa4b585), built from timm's file.

The one documented difference from the official state dict: ``*.attention_bias_idxs`` are
regenerated, non-persistent buffers here, so they are not in ``state_dict()``; checkpoints that
carry them are checked against the regenerated tables and the entries dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from golden_helpers import assert_matches_golden
from tolerances import EXACT, REORDERED, REORDERED_SCALED

from edgevit.errors import CheckpointMismatchError, InvalidArgumentError
from edgevit.models import count_params, create_model, model_info, read_checkpoint
from edgevit.models._checkpoint import Checkpoint
from edgevit.models.efficientformer_v2 import LGQuery
from edgevit.models.layers.attention_bias import first_appearance_index

GOLDEN = Path(__file__).parent / "golden"
VARIANTS = ["efficientformerv2_s0", "efficientformerv2_s1", "efficientformerv2_s2", "efficientformerv2_l"]
PARAMS = dict(zip(VARIANTS, [3_600_256, 6_185_560, 12_710_112, 26_322_288]))
TEST = "test_efficientformerv2"
IDXS = "attention_bias_idxs"


def _meta_model(name: str, **kwargs):
    with torch.device("meta"):
        return create_model(name, **kwargs)


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state.items()}


def _golden() -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    """The official test-config weights (a Checkpoint) and the golden.* tensors split off."""
    ckpt = read_checkpoint(GOLDEN / "efficientformerv2_test.safetensors")
    golden = {k: ckpt.state_dict.pop(k) for k in list(ckpt.state_dict) if k.startswith("golden.")}
    return ckpt, golden


def _with_state(ckpt: Checkpoint, state: dict[str, torch.Tensor]) -> Checkpoint:
    return Checkpoint(state, ckpt.path, ckpt.container)


# -- official layout and counts ---------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_matches_official_keys_and_shapes(name):
    official = json.loads((GOLDEN / "efficientformerv2_keys.json").read_text())[name]
    model = _meta_model(name)
    assert _shapes(model.state_dict()) == {k: v for k, v in official.items() if not k.endswith(IDXS)}
    assert list(model.state_dict()) == [k for k in official if not k.endswith(IDXS)], "the official order"
    # the index tables exist under the official names and shapes, as non-persistent buffers
    buffers = {k: list(v.shape) for k, v in model.named_buffers() if k.endswith(IDXS)}
    assert buffers == {k: v for k, v in official.items() if k.endswith(IDXS)}
    assert len(buffers) == 2 * {"efficientformerv2_s0": 2, "efficientformerv2_s1": 2,
                                "efficientformerv2_s2": 4, "efficientformerv2_l": 6}[name] + 1


@pytest.mark.parametrize("name", VARIANTS)
def test_param_counts_include_dist_head(name):
    model = _meta_model(name)
    info = model_info(name)
    assert info.has_dist_head and model.dist_head is not None
    assert count_params(model) == PARAMS[name] == info.params
    assert round(PARAMS[name] / 1e6, 1) == info.paper_params_m
    model.set_dist_head(False)
    assert count_params(model) == PARAMS[name] - (model.num_features + 1) * 1000


def test_bias_index_tables_equal_the_official_construction():
    """Our closed forms vs the official first-appearance numbering (query grid placed at stride 2)."""
    model = create_model(TEST, image_size=224)  # the 14/7 grids of the full-size models
    attn2, attn3 = model.network[4][1].token_mixer, model.network[6][1].token_mixer
    assert torch.equal(attn2.attention_bias_idxs, first_appearance_index(grid(7), grid(7)))
    assert torch.equal(attn3.attention_bias_idxs, first_appearance_index(grid(7), grid(7)))
    down = model.network[5].attn
    assert torch.equal(down.attention_bias_idxs, first_appearance_index(grid(14, 2), grid(14)))
    assert down.attention_biases.shape == (8, 196) and down.attention_bias_idxs.shape == (49, 196)


def grid(r: int, step: int = 1) -> list[tuple[int, int]]:
    """Official point placement: ``ceil(r / step)`` points a side, at multiples of ``step``."""
    side = range(-(-r // step))
    return [(a * step, b * step) for a in side for b in side]


# -- outputs against the official code --------------------------------------------------------------
def test_reproduces_official_outputs():
    ckpt, golden = _golden()
    assert any(k.endswith(IDXS) for k in ckpt.state_dict), "the official file carries the index tables"
    model = create_model(TEST, weights=ckpt, image_size=96)
    assert model.dist_head is not None
    with torch.no_grad():
        out = model(golden["golden.input"])
    assert_matches_golden(out, golden["golden.output"])


def test_reparameterized_model_reproduces_official_outputs():
    ckpt, golden = _golden()
    model = create_model(TEST, weights=ckpt, image_size=96)
    deploy = model.reparameterize()
    x = golden["golden.input"]
    with torch.no_grad():
        # folding BN and scales changes the float32 rounding, hence rtol as well
        REORDERED.check(deploy(x), golden["golden.output"])
        # pre-logits keep their meaning although the head norm is folded into the classifier
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
        got = deploy.forward_head(deploy.forward_features(x), pre_logits=True)
    REORDERED_SCALED.check(got, ref)
    block = deploy.network[4][1]
    assert block.layer_scale_1 is None and block.layer_scale_2 is None, "layer scales folded"
    assert block.token_mixer.attention_biases is None and block.token_mixer.attention_bias.shape == (8, 9, 9)
    assert deploy.network[5].attn.q.subsample_folded


# -- timm-named checkpoints ------------------------------------------------------------------------
_MLP = {"fc1": "fc1.conv", "norm1": "fc1.bn", "mid": "mid.conv", "mid_norm": "mid.bn",
        "fc2": "fc2.conv", "norm2": "fc2.bn"}
_ATTN = {"proj.1": "proj.conv", "proj.2": "proj.bn", "q.local.0": "q.local",
         "q.proj.0": "q.proj.conv", "q.proj.1": "q.proj.bn"}
_ATTN.update({f"{name}.{i}": f"{name}.{part}" for name in ("stride_conv", "q", "k", "v", "v_local")
              for i, part in ((0, "conv"), (1, "bn"))})
_DOWN = {"proj": "conv.conv", "norm": "conv.bn", "conv": "conv.conv", "bn": "conv.bn"}


def _timm_name(key: str) -> str:
    """Official -> timm name, written from timm's module tree (independently of the model's filter)."""
    head, *rest = key.split(".")
    if head == "patch_embed":
        return "stem." + {"0": "conv1.conv", "1": "conv1.bn", "3": "conv2.conv", "4": "conv2.bn"}[rest[0]] + \
            "." + rest[1]
    if head == "dist_head":
        return "head_dist." + rest[0]
    if head != "network":
        return key
    index, rest = int(rest[0]), rest[1:]
    if index % 2:  # a downsampler: the start of the next timm stage
        prefix = f"stages.{(index + 1) // 2}.downsample"
        if rest[0] in _DOWN:
            return f"{prefix}.{_DOWN[rest[0]]}.{rest[1]}"
        return _join(prefix, "attn", _ATTN.get(".".join(rest[1:-1]), ".".join(rest[1:-1])), rest[-1])
    prefix = f"stages.{index // 2}.blocks.{rest[0]}"
    part, inner, leaf = rest[1], ".".join(rest[2:-1]), rest[-1]
    if part.startswith("layer_scale_"):
        return f"{prefix}.ls{part[-1]}.gamma"
    if part == "mlp":
        return f"{prefix}.mlp.{_MLP[rest[2]]}.{leaf}"
    return _join(prefix, "token_mixer", _ATTN.get(inner, inner), leaf)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm checkpoints have no index tables and keep layer scales as [C]."""
    return {_timm_name(k): (v.flatten() if ".layer_scale_" in k else v)
            for k, v in state.items() if not k.endswith(IDXS)}


def test_timm_names_cover_timms_layout():
    """Our state dict, renamed the timm way, is exactly timm's efficientformerv2_s0 layout."""
    timm_layout = json.loads((GOLDEN / "efficientformerv2_timm_keys.json").read_text())["efficientformerv2_s0"]
    state = _meta_model("efficientformerv2_s0").state_dict()
    assert _shapes(_to_timm(state)) == timm_layout
    for literal in ("stem.conv1.conv.weight", "stem.conv2.bn.running_var", "stages.1.downsample.conv.conv.weight",
                    "stages.3.downsample.conv.bn.bias", "stages.3.downsample.attn.q.local.weight",
                    "stages.3.downsample.attn.q.proj.conv.weight", "stages.3.downsample.attn.proj.bn.weight",
                    "stages.2.blocks.5.token_mixer.stride_conv.conv.weight",
                    "stages.2.blocks.5.token_mixer.talking_head1.weight", "stages.2.blocks.5.ls1.gamma",
                    "stages.0.blocks.1.mlp.mid.bn.running_mean", "head_dist.weight"):
        assert literal in timm_layout, literal
    assert timm_layout["stages.2.blocks.5.ls1.gamma"] == [96]


def test_timm_named_checkpoint_loads_and_reproduces_outputs():
    ckpt, golden = _golden()
    timm_state = _to_timm(ckpt.state_dict)
    assert "stages.3.downsample.attn.q.local.weight" in timm_state and "head_dist.bias" in timm_state
    model = create_model(TEST, weights=_with_state(ckpt, timm_state), image_size=96)
    with torch.no_grad():
        out = model(golden["golden.input"])
    assert_matches_golden(out, golden["golden.output"])


# -- legacy index tables, dist head, sizes ----------------------------------------------------------
def test_legacy_attention_bias_idxs_checked():
    ckpt, _ = _golden()
    key = "network.5.attn.attention_bias_idxs"
    state = dict(ckpt.state_dict)
    state[key] = state[key].flip(0)
    with pytest.raises(CheckpointMismatchError, match="another input resolution"):
        create_model(TEST, weights=_with_state(ckpt, state), image_size=96)
    with pytest.raises(CheckpointMismatchError, match="another input resolution"):
        create_model(TEST, weights=ckpt)  # made at 96, the default build is 64


def test_dist_head_follows_the_checkpoint():
    ckpt, golden = _golden()
    assert create_model(TEST).dist_head is not None, "default builds have dist_head, like the checkpoints"
    state = {k: v for k, v in ckpt.state_dict.items() if not k.startswith("dist_head.")}
    model = create_model(TEST, weights=_with_state(ckpt, state), image_size=96)
    assert model.dist_head is None
    x = golden["golden.input"]
    with torch.no_grad():
        features = model.forward_features(x).mean(dim=(2, 3))
        torch.testing.assert_close(model(x), model.head(features))
    model = create_model(TEST, weights=ckpt, image_size=96)
    head, dist = model.train()(x)  # the official training output is the pair
    assert head.shape == dist.shape == (1, 10)
    with pytest.raises(InvalidArgumentError):
        model.eval().reparameterize().set_dist_head(True)


def test_image_size_rebuilds_attention_tables():
    info = model_info(TEST)
    assert info.fixed_size and info.size_multiple == 32 and info.input_size == (3, 64, 64)
    model = create_model(TEST, image_size=128)
    stage2, down, stage3 = model.network[4][1].token_mixer, model.network[5].attn, model.network[6][1].token_mixer
    assert stage2.attention_biases.shape == (8, 16) and stage2.attention_bias_idxs.shape == (16, 16)
    assert down.attention_biases.shape == (8, 64) and down.attention_bias_idxs.shape == (16, 64)
    assert stage3.attention_biases.shape == (8, 16) and stage3.attention_bias_idxs.shape == (16, 16)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 128)).shape == (1, 10)
    with pytest.raises(InvalidArgumentError, match="built for 128x128"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(InvalidArgumentError, match="multiples of 32"):
        create_model(TEST, image_size=100)
    s0 = _meta_model("efficientformerv2_s0", image_size=256)
    assert s0.network[5].attn.attention_biases.shape == (8, 256)


# -- the inference graph ----------------------------------------------------------------------------
def test_strided_subsample_is_the_official_pool_and_folds_into_the_conv():
    """AvgPool2d(1, 2, 0) == x[..., ::2, ::2] == the centre tap of the 3x3 s2 p1 conv, even and odd sizes."""
    query = LGQuery(4, 8).eval()
    with torch.no_grad():
        query.proj[1].running_mean.uniform_(-1, 1)
        query.proj[1].running_var.uniform_(0.5, 2)
        for size in (6, 7):
            x = torch.randn(2, 4, size, size)
            EXACT.check(torch.nn.AvgPool2d(1, 2, 0)(x), x[:, :, ::2, ::2])
            ref = query.proj(query.local(x) + torch.nn.AvgPool2d(1, 2, 0)(x))
            fused = LGQuery(4, 8).eval()
            fused.load_state_dict(query.state_dict())
            fused.fuse_(0.5)
            REORDERED.check(fused(x), ref * 0.5)


def test_exported_inference_graph_ops():
    deploy = create_model(TEST).reparameterize()
    graph = torch.export.export(deploy, (torch.randn(1, 3, 64, 64),)).graph
    ops = [str(n.target) for n in graph.nodes if n.op == "call_function"]
    assert not [op for op in ops if any(s in op for s in ("batch_norm", "avg_pool", "slice", "index", "aten.mul."))], ops
    upsample = [n for n in graph.nodes if "upsample_bilinear2d" in str(n.target)]
    assert len(upsample) == 1 and upsample[0].args[2] is False, "bilinear x2 with align_corners=False"
    assert ops.count("aten.linear.default") == 1, "head and dist_head merged"


def test_split_points():
    assert model_info(TEST).split_points == ("stem", "stage0", "stage1", "stage2", "stage3")
