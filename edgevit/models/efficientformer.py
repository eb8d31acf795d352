"""EfficientFormer (V1): a MetaFormer with pooling blocks on 4-D maps and attention at the end.

Paper: "EfficientFormer: Vision Transformers at MobileNet Speed" (Li et al., NeurIPS 2022,
arXiv 2206.01191). Official code: snap-research/EfficientFormer ``models/efficientformer.py``
(Apache-2.0); timm ports it as ``timm/models/efficientformer.py`` under other module names.

State-dict layout (official, kept exactly): ``patch_embed.{0,1,3,4}`` (conv-BN-ReLU twice),
``network.{0..6}`` with the stages at even indices and the downsampling ``Embedding``
(``proj`` conv + ``norm`` BN) at odd ones, ``norm`` (LayerNorm), ``head`` and ``dist_head``.
Stages 0-2 hold ``Meta4D`` blocks (3x3 average-pool token mixer and a 1x1-conv MLP with BN);
stage 3 ends with ``vit_num`` ``Meta3D`` attention blocks on tokens, after a parameter-free
``Flat`` that still takes an index (L1 ``network.6.3``, L3 ``network.6.2``, L7 ``network.6.0``).
The qkv projection is per-head interleaved ``[q_h | k_h | v_h]``. The official model keeps
``attention_bias_idxs`` as a persistent buffer; here it is regenerated (non-persistent) and
checked on load.

The attention-bias tables are sized for a 7x7 final map, so the pretrained variants take only
224x224 input; the constructor's ``image_size`` sizes them (the ``test_*`` variant uses 64).

``reparameterize()`` produces a graph made for mobile converters: BN folded into the convs,
layer scales folded into the conv/linear before them, the exclude-pad average pool written as
a depthwise "sum" conv times a constant reciprocal-count map (no ``count_include_pad`` flag for
a converter to get wrong), the softmax scale folded into ``qkv``, the attention bias gathered
once into a constant, heads merged, and every tensor of rank 4 or less.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from edgevit.errors import InvalidArgumentError
from edgevit.models._base import EdgeModel
from edgevit.models._checkpoint import verify_index_buffers
from edgevit.models._info import ModelInfo, Preprocess, register_model
from edgevit.models.layers import DropPath, attention_bias_index, fuse_conv_bn, merge_heads, trunc_normal_
from edgevit.models.layers.misc import drop_path_rates

PAPER = "EfficientFormer: Vision Transformers at MobileNet Speed (NeurIPS 2022, arXiv 2206.01191)"


# -- building blocks ----------------------------------------------------------------------------
def stem(in_chans: int, out_chans: int) -> nn.Sequential:
    """Two conv3x3/s2-BN-ReLU steps, /4 (``patch_embed.{0,1,3,4}``)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans // 2, 3, 2, 1), nn.BatchNorm2d(out_chans // 2), nn.ReLU(),
        nn.Conv2d(out_chans // 2, out_chans, 3, 2, 1), nn.BatchNorm2d(out_chans), nn.ReLU(),
    )


class Embedding(nn.Module):
    """Downsampling between stages: conv3x3/s2 then BN (``network.{1,3,5}``)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, 3, 2, 1)
        self.norm = nn.BatchNorm2d(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))

    def fuse(self) -> Embedding:
        """Fold the BN into the conv (in place); ``norm`` becomes the identity."""
        self.proj = fuse_conv_bn(self.proj, self.norm)
        self.norm = nn.Identity()
        return self


class Flat(nn.Module):
    """(B, C, H, W) -> (B, H*W, C): the 4-D to token switch inside stage 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class Pooling(nn.Module):
    """PoolFormer token mixer: ``avgpool(x) - x``, the average excluding zero padding."""

    def __init__(self, pool_size: int = 3) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, 1, pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


class ConvMlp(nn.Module):
    """1x1 conv MLP with BN after each conv (Meta4D)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.norm1 = nn.BatchNorm2d(hidden)  # registered after fc2, as officially (state-dict order)
        self.norm2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.fc2(self.act(self.norm1(self.fc1(x)))))


class LinearMlp(nn.Module):
    """Token MLP (Meta3D): Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def multi_head_attention(
    qkv: torch.Tensor, bias: torch.Tensor, num_heads: int, key_dim: int, val_dim: int, scale: float
) -> torch.Tensor:
    """Attention from a per-head interleaved qkv projection ``(B, N, heads*(2*kd+vd))``.

    ``bias`` is ``(1 or heads, N, N)``-broadcastable; rank 4 throughout.
    """
    batch, tokens, _ = qkv.shape
    qkv = qkv.reshape(batch, tokens, num_heads, 2 * key_dim + val_dim).transpose(1, 2)
    q, k, v = qkv.split([key_dim, key_dim, val_dim], dim=3)
    attn = q @ k.transpose(-2, -1)
    if scale != 1.0:
        attn = attn * scale
    attn = (attn + bias).softmax(dim=-1)
    return (attn @ v).transpose(1, 2).reshape(batch, tokens, num_heads * val_dim)


class Attention(nn.Module):
    """Multi-head self-attention over an ``r x r`` token grid with a LeViT-style position bias.

    The bias ``attention_biases[:, attention_bias_idxs]`` is gathered on every call (no
    cache that could go stale when weights are loaded after ``eval()``).
    """

    def __init__(self, dim: int, key_dim: int = 32, num_heads: int = 8, attn_ratio: int = 4,
                 resolution: int = 7) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        self.num_tokens = resolution**2
        self.qkv = nn.Linear(dim, num_heads * (2 * key_dim + self.val_dim))
        self.proj = nn.Linear(num_heads * self.val_dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution**2))
        self.register_buffer("attention_bias_idxs", attention_bias_index(resolution), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tokens(x, self.num_tokens)
        bias = self.attention_biases[:, self.attention_bias_idxs]
        x = multi_head_attention(self.qkv(x), bias, self.num_heads, self.key_dim, self.val_dim, self.scale)
        return self.proj(x)

    @torch.no_grad()
    def fuse(self, out_scale: torch.Tensor) -> InferenceAttention:
        """The inference attention: scale folded into q, ``out_scale`` (layer scale) into proj."""
        qkv = copy.deepcopy(self.qkv)
        per_head = qkv.weight.view(self.num_heads, 2 * self.key_dim + self.val_dim, -1)
        per_head[:, : self.key_dim] *= self.scale
        qkv.bias.view(self.num_heads, -1)[:, : self.key_dim] *= self.scale
        proj = _scale_outputs(self.proj, out_scale)
        bias = self.attention_biases[:, self.attention_bias_idxs].unsqueeze(0).detach().clone()
        return InferenceAttention(qkv, proj, bias, self.num_heads, self.key_dim, self.val_dim)


class Meta4D(nn.Module):
    """Pooling block on (B, C, H, W): ``x + ls1*(pool(x) - x)``, then ``x + ls2*mlp(x)``."""

    def __init__(self, dim: int, pool_size: int = 3, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-5) -> None:
        super().__init__()
        self.token_mixer = Pooling(pool_size)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), layer_scale_init_value))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), layer_scale_init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.token_mixer(x))
        return x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(x))

    @torch.no_grad()
    def fuse(self, height: int, width: int) -> InferenceMeta4D:
        """The inference block for an ``height x width`` map: BNs and ``ls2`` folded into the MLP
        convs, the pooling residual (with ``ls1``) as a :class:`PoolMixerResidual`."""
        mlp = self.mlp
        fc1 = fuse_conv_bn(mlp.fc1, mlp.norm1)
        fc2 = _scale_outputs(fuse_conv_bn(mlp.fc2, mlp.norm2), self.layer_scale_2)
        pool_size = self.token_mixer.pool.kernel_size
        mixer = PoolMixerResidual(self.layer_scale_1, pool_size, height, width)
        return InferenceMeta4D(mixer, nn.Sequential(fc1, nn.GELU(), fc2))


class Meta3D(nn.Module):
    """Attention block on tokens (B, N, C): pre-LayerNorm attention and MLP with layer scales."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-5, key_dim: int = 32, num_heads: int = 8,
                 attn_ratio: int = 4, resolution: int = 7) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixer = Attention(dim, key_dim, num_heads, attn_ratio, resolution)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = LinearMlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), layer_scale_init_value))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), layer_scale_init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1 * self.token_mixer(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))

    @torch.no_grad()
    def fuse(self) -> InferenceMeta3D:
        """The inference block: layer scales folded into ``proj`` and ``fc2`` (reuses this block's layers)."""
        self.mlp.fc2 = _scale_outputs(self.mlp.fc2, self.layer_scale_2)
        return InferenceMeta3D(self.norm1, self.token_mixer.fuse(self.layer_scale_1), self.norm2, self.mlp)


# -- the inference blocks that reparameterize() puts in place ---------------------------------------
class PoolMixerResidual(nn.Module):
    """``x + s * (avgpool_exclude_pad(x) - x)`` for a fixed ``H x W``, without an AvgPool op.

    Given the layer scale ``s`` (C,), the pool size and the map size, it computes
    ``sum_pool(x) * inv_count + (1 - s) * x`` where ``sum_pool`` is a depthwise conv with
    weights ``s`` (zero padding) and ``inv_count`` the constant ``(1, 1, H, W)`` map of
    1/(number of in-image taps). Exclude-pad pooling is thus plain conv and mul arithmetic that
    every converter handles identically.
    """

    def __init__(self, layer_scale: torch.Tensor, pool_size: int, height: int, width: int) -> None:
        super().__init__()
        dim = layer_scale.numel()
        self.sum_pool = nn.Conv2d(dim, dim, pool_size, 1, pool_size // 2, groups=dim, bias=False)
        with torch.no_grad():
            self.sum_pool.weight.copy_(layer_scale.reshape(dim, 1, 1, 1).expand_as(self.sum_pool.weight))
        self.register_buffer("inv_count", 1.0 / pool_tap_count(pool_size, height, width))
        self.register_buffer("residual_scale", (1.0 - layer_scale).detach().reshape(1, dim, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sum_pool(x) * self.inv_count + x * self.residual_scale


def pool_tap_count(pool_size: int, height: int, width: int) -> torch.Tensor:
    """(1, 1, H, W) float map: how many taps of a stride-1, same-padded window fall inside."""
    ones = torch.ones(1, 1, height, width, dtype=torch.float64)
    window = torch.ones(1, 1, pool_size, pool_size, dtype=torch.float64)
    return nn.functional.conv2d(ones, window, padding=pool_size // 2).float()


class InferenceMeta4D(nn.Module):
    """A fused Meta4D: ``x = mixer(x)`` (residual included), then ``x + mlp(x)``."""

    def __init__(self, token_mixer: PoolMixerResidual, mlp: nn.Sequential) -> None:
        super().__init__()
        self.token_mixer = token_mixer
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return x + self.mlp(x)


class InferenceAttention(nn.Module):
    """Attention with the softmax scale inside ``qkv`` and a constant ``(1, heads, N, N)`` bias."""

    def __init__(self, qkv: nn.Linear, proj: nn.Linear, bias: torch.Tensor, num_heads: int,
                 key_dim: int, val_dim: int) -> None:
        super().__init__()
        self.qkv, self.proj = qkv, proj
        self.register_buffer("attention_bias", bias)
        self.num_heads, self.key_dim, self.val_dim = num_heads, key_dim, val_dim
        self.num_tokens = bias.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tokens(x, self.num_tokens)
        x = multi_head_attention(self.qkv(x), self.attention_bias, self.num_heads, self.key_dim,
                                 self.val_dim, 1.0)
        return self.proj(x)


class InferenceMeta3D(nn.Module):
    """A fused Meta3D: the layer scales live in ``token_mixer.proj`` and ``mlp.fc2``."""

    def __init__(self, norm1: nn.LayerNorm, token_mixer: InferenceAttention, norm2: nn.LayerNorm,
                 mlp: LinearMlp) -> None:
        super().__init__()
        self.norm1, self.token_mixer, self.norm2, self.mlp = norm1, token_mixer, norm2, mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _check_tokens(x: torch.Tensor, expected: int) -> None:
    if x.shape[1] != expected:
        side = int(round(expected**0.5))
        raise InvalidArgumentError(
            f"EfficientFormer attention got {x.shape[1]} tokens but its bias table is for {expected} "
            f"({side}x{side}, i.e. {32 * side}x{32 * side} input); build the model for this input size"
        )


@torch.no_grad()
def _scale_outputs(layer: nn.Conv2d | nn.Linear, scale: torch.Tensor) -> nn.Conv2d | nn.Linear:
    """A copy of ``layer`` (with bias) whose outputs are multiplied per channel by ``scale``."""
    out = copy.deepcopy(layer)
    out.weight.mul_(scale.reshape(-1, *([1] * (out.weight.dim() - 1))))
    out.bias.mul_(scale)
    return out


# -- model --------------------------------------------------------------------------------------
class EfficientFormer(EdgeModel):
    """EfficientFormer V1 in the official module layout.

    Args:
        layers: blocks per stage.
        embed_dims: channels per stage.
        vit_num: how many of stage 3's last blocks are attention (Meta3D) blocks.
        image_size: square input size, a multiple of 32; sizes the attention-bias tables
            (``image_size // 32`` per side) and the pooling count maps of the inference graph.
        distillation: build the ``dist_head`` (the official checkpoints have one); eval output
            is then ``(head(x) + dist_head(x)) / 2``.
        key_dim, num_heads, attn_ratio: attention shape (official: 32, 8, 4).
    """

    def __init__(
        self,
        layers: tuple[int, ...],
        embed_dims: tuple[int, ...],
        vit_num: int = 1,
        image_size: int = 224,
        num_classes: int = 1000,
        distillation: bool = True,
        mlp_ratio: float = 4.0,
        pool_size: int = 3,
        layer_scale_init_value: float = 1e-5,
        drop_path_rate: float = 0.0,
        key_dim: int = 32,
        num_heads: int = 8,
        attn_ratio: int = 4,
    ) -> None:
        super().__init__()
        if image_size % 32 or image_size <= 0:
            raise InvalidArgumentError(f"EfficientFormer needs a positive multiple of 32 as image_size, got {image_size}")
        if not 1 <= vit_num <= layers[-1]:
            raise InvalidArgumentError(f"vit_num must be between 1 and the last stage's {layers[-1]} blocks, got {vit_num}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.num_features = embed_dims[-1]
        rates = drop_path_rates(drop_path_rate, layers)
        attention = dict(key_dim=key_dim, num_heads=num_heads, attn_ratio=attn_ratio, resolution=image_size // 32)
        self.patch_embed = stem(3, embed_dims[0])
        network: list[nn.Module] = []
        for i, (depth, dim) in enumerate(zip(layers, embed_dims)):
            if i > 0:
                network.append(Embedding(embed_dims[i - 1], dim))
            first = sum(layers[:i])
            num_attention = vit_num if i == len(layers) - 1 else 0
            blocks: list[nn.Module] = []
            for j in range(depth):
                if j == depth - num_attention:
                    blocks.append(Flat())
                if j >= depth - num_attention:
                    blocks.append(Meta3D(dim, mlp_ratio, rates[first + j], layer_scale_init_value, **attention))
                else:
                    blocks.append(Meta4D(dim, pool_size, mlp_ratio, rates[first + j], layer_scale_init_value))
            network.append(nn.Sequential(*blocks))
        self.network = nn.ModuleList(network)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)
        self.dist_head = nn.Linear(self.num_features, num_classes) if distillation else None
        self._init_weights()

    def _init_weights(self) -> None:
        if self.norm.weight.device.type == "meta":
            return
        for module in self.modules():
            if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def set_dist_head(self, enabled: bool) -> None:
        """Add (freshly initialised) or remove the distillation head."""
        if not enabled:
            self.dist_head = None
        elif self.dist_head is None:
            self.dist_head = nn.Linear(self.num_features, self.num_classes).to(self.head.weight.device)
            trunc_normal_(self.dist_head.weight, std=0.02)
            nn.init.zeros_(self.dist_head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, S, S) to normalised tokens (B, (S/32)^2, C)."""
        x = self.patch_embed(x)
        for stage in self.network:
            x = stage(x)
        return self.norm(x)

    def forward_head(
        self, x: torch.Tensor, pre_logits: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Mean over tokens, then the classifier(s).

        With a ``dist_head``, as the official ``forward``: the average of both heads in eval,
        the ``(head, dist_head)`` pair in training (for the distillation loss).
        """
        x = x.mean(dim=1)
        if pre_logits:
            return x
        out = self.head(x)
        if self.dist_head is None:
            return out
        dist = self.dist_head(x)
        return (out, dist) if self.training else (out + dist) / 2

    def segments(self) -> list[tuple[str, nn.Module]]:
        """stem | stage0 | stage1 | stage2 | stage3.pool (last 4-D map) | stage3 (tokens) | head."""
        net = self.network
        last = list(net[6])
        flat = next(i for i, block in enumerate(last) if isinstance(block, Flat))
        return [
            ("stem", self.patch_embed),
            ("stage0", net[0]),
            ("stage1", nn.Sequential(net[1], net[2])),
            ("stage2", nn.Sequential(net[3], net[4])),
            ("stage3.pool", nn.Sequential(net[5], *last[:flat])),
            ("stage3", nn.Sequential(*last[flat:])),
            ("head", _NormPoolHead(self.norm, self.head, self.dist_head)),
        ]

    def _reparameterize_(self) -> None:
        """Fold BN and layer scales, drop drop-path, gather the bias once, merge the heads."""
        for i in (0, 3):
            self.patch_embed[i] = fuse_conv_bn(self.patch_embed[i], self.patch_embed[i + 1])
            self.patch_embed[i + 1] = nn.Identity()
        size = self.image_size // 4
        for module in self.network:
            if isinstance(module, Embedding):
                module.fuse()
                size //= 2
                continue
            for j, block in enumerate(module):
                if isinstance(block, Meta4D):
                    module[j] = block.fuse(size, size)
                elif isinstance(block, Meta3D):
                    module[j] = block.fuse()
        if self.dist_head is not None:
            self.head = merge_heads(self.head, self.dist_head)
            self.dist_head = None

    def checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm names to official ones (detected from the keys); legacy index tables checked and dropped."""
        if any(key.startswith(("stem.", "stages.")) for key in state_dict):
            state_dict = timm_to_official(state_dict)
        return verify_index_buffers(state_dict, self)


class _NormPoolHead(nn.Module):
    """The ``head`` segment: LayerNorm, mean over tokens, classifier (heads averaged, as in eval)."""

    def __init__(self, norm: nn.LayerNorm, head: nn.Linear, dist_head: nn.Linear | None) -> None:
        super().__init__()
        self.norm, self.head, self.dist_head = norm, head, dist_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x).mean(dim=1)
        out = self.head(x)
        return out if self.dist_head is None else (out + self.dist_head(x)) / 2


# -- checkpoint remapping ----------------------------------------------------------------------
_TIMM_RULES: list[tuple[re.Pattern[str], object]] = [
    (re.compile(r"^stem\.conv1\."), "patch_embed.0."),
    (re.compile(r"^stem\.norm1\."), "patch_embed.1."),
    (re.compile(r"^stem\.conv2\."), "patch_embed.3."),
    (re.compile(r"^stem\.norm2\."), "patch_embed.4."),
    # timm's stage s owns the downsampler before it: official network.{2s-1}
    (re.compile(r"^stages\.(\d+)\.downsample\.conv\."), lambda m: f"network.{2 * int(m[1]) - 1}.proj."),
    (re.compile(r"^stages\.(\d+)\.downsample\.norm\."), lambda m: f"network.{2 * int(m[1]) - 1}.norm."),
    (re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\."), lambda m: f"network.{2 * int(m[1])}.{m[2]}."),
    (re.compile(r"\.ls([12])\.gamma$"), r".layer_scale_\1"),
    (re.compile(r"^head_dist\."), "dist_head."),
]


def timm_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a timm ``efficientformer_l*`` state dict to the official layout.

    The inverse of timm's ``checkpoint_filter_fn``: ``stem.{conv1,norm1,conv2,norm2}`` to
    ``patch_embed.{0,1,3,4}``, ``stages.s.downsample.{conv,norm}`` to
    ``network.{2s-1}.{proj,norm}``, ``stages.s.blocks.j`` to ``network.{2s}.j`` (the Flat index
    is kept by both), ``ls{1,2}.gamma`` to ``layer_scale_{1,2}`` and ``head_dist`` to ``dist_head``.
    """
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in _TIMM_RULES:
            key = pattern.sub(replacement, key)
        out[key] = value
    return out


# -- registered variants -------------------------------------------------------------------------
PREPROCESS = Preprocess(interpolation="bicubic", crop_pct=0.875, resize_mode="crop")


def _info(name: str, params: int, gmacs: float, paper_params_m: float | None, paper_gmacs: float | None,
          image_size: int = 224, is_test: bool = False, num_classes: int = 1000) -> ModelInfo:
    return ModelInfo(
        name=name, family="efficientformer", paper=PAPER, input_size=(3, image_size, image_size),
        params=params, gmacs=gmacs, fixed_size=True, allowed_sizes=(image_size,), num_classes=num_classes,
        has_dist_head=True, paper_params_m=paper_params_m, paper_gmacs=paper_gmacs, preprocess=PREPROCESS,
        is_test=is_test,
    )


@register_model(_info("efficientformer_l1", 12_289_928, 1.2913, 12.3, 1.3))
def efficientformer_l1(**kwargs) -> EfficientFormer:
    return EfficientFormer(layers=(3, 2, 6, 4), embed_dims=(48, 96, 224, 448), vit_num=1, **kwargs)


@register_model(_info("efficientformer_l3", 31_406_000, 3.9066, 31.3, 3.9))
def efficientformer_l3(**kwargs) -> EfficientFormer:
    return EfficientFormer(layers=(4, 4, 12, 6), embed_dims=(64, 128, 320, 512), vit_num=4, **kwargs)


@register_model(_info("efficientformer_l7", 82_229_328, 10.1193, 82.1, 10.2))
def efficientformer_l7(**kwargs) -> EfficientFormer:
    return EfficientFormer(layers=(6, 6, 18, 8), embed_dims=(96, 192, 384, 768), vit_num=8, **kwargs)


#: the tiny variant's hyper-parameters (the golden file was made by the official code with these)
TEST_CONFIG = dict(layers=(1, 1, 2, 2), embed_dims=(16, 32, 48, 64), vit_num=1, key_dim=16, num_heads=2,
                   attn_ratio=2)


@register_model(_info("test_efficientformer", 178_748, 0.003095, None, None, image_size=64, is_test=True, num_classes=10))
def test_efficientformer(**kwargs) -> EfficientFormer:
    """Every block type (Meta4D, Flat, Meta3D, Embedding, both heads) on 64-pixel input (2x2 attention grid)."""
    kwargs.setdefault("image_size", 64)
    kwargs.setdefault("num_classes", 10)
    return EfficientFormer(**TEST_CONFIG, **kwargs)
