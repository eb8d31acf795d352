"""CAS-ViT against the official code (Tianfang-Zhang/CAS-ViT @ 041d2d6, ``RCViT``).

The golden files were produced by running the official ``classification/model/rcvit.py``:
* ``golden/cas_vit_keys.json``: ``{key: shape}`` of ``rcvit_xs/s/m/t()`` as the official
  constructor builds them, i.e. with its default ``distillation=True`` and hence ``dist_head``.
* ``golden/cas_vit_test.safetensors``: an official ``RCViT`` at ``test_cas_vit``'s
  hyper-parameters with ``distillation=True``, random weights and BN statistics, plus
  ``golden.input`` and the official eval outputs with and without ``dist_head``.

CAS-ViT is not in timm and has no attention-bias index tables, so there is no timm naming to
map and no legacy ``attention_bias_idxs`` to accept: such a key is refused like any other
foreign key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from golden_helpers import assert_matches_golden

from edgevit.errors import CheckpointMismatchError, InvalidArgumentError
from edgevit.models import count_params, create_model, model_info, read_checkpoint
from edgevit.models._checkpoint import Checkpoint

GOLDEN = Path(__file__).parent / "golden"
VARIANTS = ["cas_vit_xs", "cas_vit_s", "cas_vit_m", "cas_vit_t"]
# MODEL_ZOO.md figures, which count a 1000-way dist_head; without it the default build is smaller
PUBLISHED_PARAMS = dict(zip(VARIANTS, [3_200_700, 5_764_224, 12_421_520, 21_763_120]))
DEFAULT_PARAMS = dict(zip(VARIANTS, [2_979_700, 5_507_224, 12_036_520, 21_250_120]))


def _meta_model(name: str):
    with torch.device("meta"):
        return create_model(name)


def _shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _golden() -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    """The official test-config weights (a Checkpoint) and the golden.* tensors split off."""
    ckpt = read_checkpoint(GOLDEN / "cas_vit_test.safetensors")
    golden = {k: ckpt.state_dict.pop(k) for k in list(ckpt.state_dict) if k.startswith("golden.")}
    return ckpt, golden


def _without_dist_head(ckpt: Checkpoint) -> Checkpoint:
    state = {k: v for k, v in ckpt.state_dict.items() if not k.startswith("dist_head.")}
    return Checkpoint(state, ckpt.path, ckpt.container)


@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_matches_official_keys_and_shapes(name):
    """Identical to the official model, the only difference being the optional dist_head."""
    official = json.loads((GOLDEN / "cas_vit_keys.json").read_text())[name]
    model = _meta_model(name)
    assert model.dist_head is None
    assert _shapes(model) == {k: v for k, v in official.items() if not k.startswith("dist_head.")}
    model.set_dist_head(True)
    assert _shapes(model) == official
    assert list(model.state_dict()) == list(official), "same order as the official module tree"


@pytest.mark.parametrize("name", VARIANTS)
def test_published_param_counts_include_dist_head(name):
    model = _meta_model(name)
    assert count_params(model) == DEFAULT_PARAMS[name] == model_info(name).params
    model.set_dist_head(True)
    assert count_params(model) == PUBLISHED_PARAMS[name]
    assert round(PUBLISHED_PARAMS[name] / 1e6, 2) == model_info(name).paper_params_m


def test_reproduces_official_outputs_with_dist_head():
    ckpt, golden = _golden()
    model = create_model("test_cas_vit", weights=ckpt)
    assert model.dist_head is not None, "dist_head turned on from the checkpoint keys"
    with torch.no_grad():
        out = model(golden["golden.input"])
    assert_matches_golden(out, golden["golden.output"])


def test_reproduces_official_outputs_without_dist_head():
    ckpt, golden = _golden()
    model = create_model("test_cas_vit", weights=_without_dist_head(ckpt))
    assert model.dist_head is None
    with torch.no_grad():
        out = model(golden["golden.input"])
    assert_matches_golden(out, golden["golden.output_without_dist_head"])


def test_reparameterized_model_reproduces_official_outputs():
    """All BNs folded (pre-norms into qkv/fc1, final norm into the merged head)."""
    ckpt, golden = _golden()
    deploy = create_model("test_cas_vit", weights=ckpt).reparameterize()
    block = deploy.network[0][0]
    assert deploy.dist_head is None and block.attn.qkv.bias is not None and block.mlp.fc1.bias is not None
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())
    with torch.no_grad():
        out = deploy(golden["golden.input"])
    assert_matches_golden(out, golden["golden.output"])


def test_dist_head_detection_and_training_output():
    ckpt, golden = _golden()
    model = create_model("test_cas_vit")
    assert model.dist_head is None
    model = create_model("test_cas_vit", weights=ckpt)
    head, dist = model.train()(golden["golden.input"])  # the official training output is the pair
    assert head.shape == dist.shape == (2, 10)
    # a checkpoint without dist_head turns an enabled head off again
    model = create_model("test_cas_vit", distillation=True, weights=_without_dist_head(ckpt))
    assert model.dist_head is None


def test_foreign_keys_are_refused():
    ckpt, _ = _golden()
    state = dict(ckpt.state_dict)
    state["network.0.0.attn.attention_bias_idxs"] = torch.zeros(16, 16, dtype=torch.long)
    with pytest.raises(CheckpointMismatchError, match="attention_bias_idxs"):
        create_model("test_cas_vit", weights=Checkpoint(state, ckpt.path, ckpt.container))
    del state["network.0.0.attn.attention_bias_idxs"], state["network.0.0.norm1.running_var"]
    with pytest.raises(CheckpointMismatchError, match="norm1.running_var"):
        create_model("test_cas_vit", weights=Checkpoint(state, ckpt.path, ckpt.container))


def test_any_multiple_of_32_works():
    info = model_info("test_cas_vit")
    assert not info.fixed_size and info.size_multiple == 32 and info.input_size == (3, 64, 64)
    model = create_model("test_cas_vit", image_size=96)
    assert model.image_size == 96
    with torch.no_grad():
        for size in (64, 96, 128):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 10)
        assert model.forward_features(torch.randn(1, 3, 96, 128)).shape == (1, 64, 3, 4)
    with pytest.raises(InvalidArgumentError, match="multiples of 32"):
        create_model("test_cas_vit", image_size=100)


def test_split_points_name_stages_and_downsamplers():
    assert model_info("test_cas_vit").split_points == (
        "stem", "stage0", "down1", "stage1", "down2", "stage2", "down3", "stage3"
    )
