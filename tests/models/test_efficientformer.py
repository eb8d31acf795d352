"""EfficientFormer V1 against the official code (snap-research/EfficientFormer @ d01da42).

The golden files were produced by running the official ``models/efficientformer.py``:
* ``golden/efficientformer_keys.json``: ``{key: shape}`` of ``efficientformer_l1/l3/l7()`` as
  the official constructor builds them (``distillation=True``, so with ``dist_head``, and with
  the persistent ``attention_bias_idxs`` buffers the official checkpoints carry).
* ``golden/efficientformer_test.safetensors``: an official ``EfficientFormer`` at
  ``test_efficientformer``'s hyper-parameters (the official ``Meta3D`` hard-codes
  ``Attention(dim)``, so only ``Attention``'s default key_dim/heads/ratio/resolution were
  patched), with random weights, layer scales, attention biases and BN statistics, its state
  dict (official ``attention_bias_idxs`` included), ``golden.input`` and the official eval
  outputs with and without ``dist_head``.

Documented difference from the official state dict: ``*.attention_bias_idxs`` are regenerated
non-persistent buffers here, so they are absent from our ``state_dict()`` (and checked, then
dropped, when a checkpoint carries them). Everything else is identical, in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from golden_helpers import assert_matches_golden
from tolerances import ONE_LAYER, REPARAMETERIZED

from edgevit.errors import CheckpointMismatchError, InvalidArgumentError
from edgevit.models import create_model, model_info, read_checkpoint
from edgevit.models._checkpoint import Checkpoint
from edgevit.models.efficientformer import (
    TEST_CONFIG,
    EfficientFormer,
    PoolMixerResidual,
    pool_tap_count,
    timm_to_official,
)
from edgevit.models.layers.attention_bias import first_appearance_index

GOLDEN = Path(__file__).parent / "golden"
VARIANTS = ["efficientformer_l1", "efficientformer_l3", "efficientformer_l7"]
IDXS = "attention_bias_idxs"


def _meta_model(name: str):
    with torch.device("meta"):
        return create_model(name)


def _official_keys(name: str) -> dict[str, list[int]]:
    return json.loads((GOLDEN / "efficientformer_keys.json").read_text())[name]


def _golden() -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    """The official test-config weights (a Checkpoint) and the golden.* tensors split off."""
    ckpt = read_checkpoint(GOLDEN / "efficientformer_test.safetensors")
    golden = {k: ckpt.state_dict.pop(k) for k in list(ckpt.state_dict) if k.startswith("golden.")}
    return ckpt, golden


def _with_state(ckpt: Checkpoint, state: dict[str, torch.Tensor]) -> Checkpoint:
    return Checkpoint(state, ckpt.path, ckpt.container)


def _run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


# -- official layout ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_matches_official_keys_and_shapes(name):
    official = _official_keys(name)
    model = _meta_model(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: v for k, v in official.items() if not k.endswith(IDXS)}
    assert list(ours) == [k for k in official if not k.endswith(IDXS)], "same order as the official module tree"
    # the only difference: index tables kept as (non-persistent) buffers at the official paths
    buffers = {k: list(v.shape) for k, v in model.named_buffers() if k.endswith(IDXS)}
    assert buffers == {k: v for k, v in official.items() if k.endswith(IDXS)}
    assert model.dist_head is not None and model_info(name).has_dist_head


def test_flat_placeholder_keeps_its_index():
    """Attention blocks at network.6.4 (L1), 6.3-6.6 (L3), 6.1-6.8 (L7), as in models.md."""
    expected = {"efficientformer_l1": [4], "efficientformer_l3": [3, 4, 5, 6],
                "efficientformer_l7": list(range(1, 9))}
    for name, indices in expected.items():
        found = sorted({int(k.split(".")[2]) for k in _official_keys(name) if k.startswith("network.6.")
                        and ".token_mixer.qkv.weight" in k})
        assert found == indices
        assert type(_meta_model(name).network[6][indices[0] - 1]).__name__ == "Flat"


# -- outputs against the official code -------------------------------------------------------------
def test_reproduces_official_outputs_with_dist_head():
    ckpt, golden = _golden()
    assert any(k.endswith(IDXS) for k in ckpt.state_dict), "the official state dict carries the index tables"
    model = create_model("test_efficientformer", weights=ckpt)
    assert model.dist_head is not None
    assert_matches_golden(_run(model, golden["golden.input"]), golden["golden.output"])


def test_reproduces_official_outputs_without_dist_head():
    ckpt, golden = _golden()
    state = {k: v for k, v in ckpt.state_dict.items() if not k.startswith("dist_head.")}
    model = create_model("test_efficientformer", weights=_with_state(ckpt, state))
    assert model.dist_head is None, "dist_head turned off from the checkpoint keys"
    out = _run(model, golden["golden.input"])
    assert_matches_golden(out, golden["golden.output_without_dist_head"])


def test_bias_is_not_cached_across_weight_loading():
    """The official eval() caches the gathered bias; loading after eval() must still take effect."""
    ckpt, golden = _golden()
    model = create_model("test_efficientformer").eval()
    _run(model, golden["golden.input"])
    model.load_state_dict(model.checkpoint_filter(dict(ckpt.state_dict)))
    assert_matches_golden(_run(model, golden["golden.input"]), golden["golden.output"])


def test_reparameterized_model_reproduces_official_outputs():
    ckpt, golden = _golden()
    deploy = create_model("test_efficientformer", weights=ckpt).reparameterize()
    kinds = {type(m).__name__ for m in deploy.modules()}
    assert not kinds & {"AvgPool2d", "BatchNorm2d", "Meta4D", "Meta3D", "Attention", "DropPath"}, kinds
    assert {"InferenceMeta4D", "InferenceMeta3D", "PoolMixerResidual"} <= kinds
    names = [k for k, _ in deploy.named_parameters()]
    assert not [k for k in names if "layer_scale" in k or "attention_biases" in k], "folded or frozen"
    bias = deploy.network[6][2].token_mixer.attention_bias
    assert bias.shape == (1, 2, 4, 4) and not bias.requires_grad
    assert deploy.dist_head is None
    assert_matches_golden(_run(deploy, golden["golden.input"]), golden["golden.output"])


def test_deploy_graph_has_no_pooling_op_and_no_gather():
    deploy = create_model("test_efficientformer").reparameterize()
    graph = torch.export.export(deploy, (torch.randn(1, 3, 64, 64),)).graph
    targets = [str(node.target) for node in graph.nodes if node.op == "call_function"]
    assert not [t for t in targets if "pool" in t or "index" in t or "gather" in t], targets


def test_pool_residual_is_exclude_pad_average_pooling():
    pool = torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    assert pool_tap_count(3, 4, 5)[0, 0].tolist() == [
        [4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]
    ]
    scale = torch.rand(8) * 2 - 0.5
    mixer = PoolMixerResidual(scale, 3, 6, 5)
    x = torch.randn(2, 8, 6, 5)
    expected = x + scale[:, None, None] * (pool(x) - x)
    ONE_LAYER.check(_run(mixer, x), expected)


# -- checkpoints ------------------------------------------------------------------------------------
def _to_timm(key: str) -> str:
    """Official -> timm names, following timm's checkpoint_filter_fn (written independently)."""
    parts = key.split(".")
    if parts[0] == "patch_embed":
        parts[:2] = ["stem", {"0": "conv1", "1": "norm1", "3": "conv2", "4": "norm2"}[parts[1]]]
    elif parts[0] == "network":
        index = int(parts[1])
        if index % 2:  # the downsampler opens the next timm stage
            parts[:3] = ["stages", str((index + 1) // 2), "downsample", {"proj": "conv", "norm": "norm"}[parts[2]]]
        else:
            parts[:3] = ["stages", str(index // 2), "blocks", parts[2]]
    elif parts[0] == "dist_head":
        parts[0] = "head_dist"
    if parts[-1].startswith("layer_scale_"):
        parts[-1:] = ["ls" + parts[-1][-1], "gamma"]
    return ".".join(parts)


def test_timm_named_checkpoint_loads_and_reproduces_outputs(tmp_path):
    ckpt, golden = _golden()
    timm_state = {_to_timm(k): v for k, v in ckpt.state_dict.items()}  # timm persists the idxs too
    for key in ("stem.conv1.weight", "stem.norm2.running_var", "stages.1.downsample.conv.weight",
                "stages.3.downsample.norm.num_batches_tracked", "stages.0.blocks.0.mlp.norm1.weight",
                "stages.0.blocks.0.ls1.gamma", "stages.3.blocks.2.token_mixer.attention_biases",
                "stages.3.blocks.2.token_mixer.attention_bias_idxs", "stages.3.blocks.2.ls2.gamma",
                "stages.3.blocks.2.mlp.fc1.weight", "head_dist.bias", "norm.weight"):
        assert key in timm_state, key
    path = tmp_path / "timm.pth"
    torch.save(timm_state, path)
    model = create_model("test_efficientformer", weights=path)
    assert_matches_golden(_run(model, golden["golden.input"]), golden["golden.output"])


def test_timm_names_of_full_variants_map_back():
    official = _official_keys("efficientformer_l1")
    timm_keys = {_to_timm(k): k for k in official}
    assert timm_keys["stages.3.blocks.4.token_mixer.qkv.weight"] == "network.6.4.token_mixer.qkv.weight"
    assert timm_keys["stages.3.downsample.conv.weight"] == "network.5.proj.weight"
    assert timm_keys["stages.2.blocks.5.ls2.gamma"] == "network.4.5.layer_scale_2"
    for name in VARIANTS:
        official = _official_keys(name)
        assert list(timm_to_official({_to_timm(k): k for k in official})) == list(official)


def test_legacy_index_tables_are_checked():
    ckpt, _ = _golden()
    key = "network.6.2.token_mixer.attention_bias_idxs"
    model = create_model("test_efficientformer")
    assert torch.equal(ckpt.state_dict[key], getattr(model.network[6][2].token_mixer, IDXS))
    wrong = dict(ckpt.state_dict)
    wrong[key] = ckpt.state_dict[key].flip(0)
    with pytest.raises(CheckpointMismatchError, match=IDXS):
        create_model("test_efficientformer", weights=_with_state(ckpt, wrong))
    wrong[key] = first_appearance_index(*[[(y, x) for y in range(7) for x in range(7)]] * 2)
    with pytest.raises(CheckpointMismatchError, match="another input resolution"):
        create_model("test_efficientformer", weights=_with_state(ckpt, wrong))


def test_dist_head_detection_and_training_output():
    ckpt, golden = _golden()
    assert create_model("test_efficientformer").dist_head is not None, "default build has dist_head"
    plain = create_model("test_efficientformer", distillation=False)
    assert plain.dist_head is None
    model = create_model("test_efficientformer", distillation=False, weights=ckpt)
    assert model.dist_head is not None, "turned on from the checkpoint keys"
    head, dist = model.train()(golden["golden.input"])  # the official training output is the pair
    assert head.shape == dist.shape == (2, 10)
    model.set_dist_head(False)
    assert model.dist_head is None and model.eval()(golden["golden.input"]).shape == (2, 10)


# -- sizes, segments, preprocessing ---------------------------------------------------------------
def test_bias_tables_follow_image_size():
    assert torch.equal(getattr(EfficientFormer(**TEST_CONFIG, image_size=224).network[6][2].token_mixer, IDXS),
                       first_appearance_index(*[[(y, x) for y in range(7) for x in range(7)]] * 2))
    model = EfficientFormer(**TEST_CONFIG, num_classes=10, image_size=96).eval()
    attn = model.network[6][2].token_mixer
    assert attn.attention_biases.shape == (2, 9) and getattr(attn, IDXS).shape == (9, 9)
    x = torch.randn(1, 3, 96, 96)
    REPARAMETERIZED.check(_run(model.reparameterize(), x), _run(model, x))
    with pytest.raises(InvalidArgumentError, match="96x96 input"):
        _run(model, torch.randn(1, 3, 64, 64))
    with pytest.raises(InvalidArgumentError, match="multiple of 32"):
        EfficientFormer(**TEST_CONFIG, image_size=100)


def test_only_the_trained_size_is_accepted():
    for name in VARIANTS:
        info = model_info(name)
        assert info.fixed_size and info.allowed_sizes == (224,) and info.input_size == (3, 224, 224)
    with pytest.raises(InvalidArgumentError, match="only 224"):
        create_model("efficientformer_l1", image_size=256)
    assert model_info("test_efficientformer").allowed_sizes == (64,)
    with pytest.raises(InvalidArgumentError, match="only 64"):
        create_model("test_efficientformer", image_size=96)


def test_segments_cut_at_stages_and_at_the_token_switch():
    assert model_info("test_efficientformer").split_points == (
        "stem", "stage0", "stage1", "stage2", "stage3.pool", "stage3"
    )
    model = create_model("test_efficientformer")
    x = torch.randn(1, 3, 64, 64)
    assert _run(model.stage(None, "stage3.pool"), x).shape == (1, 64, 2, 2)
    assert _run(model.stage(None, "stage3"), x).shape == (1, 4, 64)
    last_4d = {name: len(dict(_meta_model(name).segments())["stage3.pool"]) for name in VARIANTS}
    assert last_4d == {"efficientformer_l1": 4, "efficientformer_l3": 3, "efficientformer_l7": 1}


def test_preprocessing_is_the_official_eval_transform():
    pre = model_info("efficientformer_l1").preprocess
    assert (pre.interpolation, pre.crop_pct, pre.resize_mode) == ("bicubic", 0.875, "crop")
    assert pre.spec(224).resize_size == 256
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
