"""EfficientFormer V2: a 4-D (NCHW-only) hybrid of depthwise-conv FFNs and attention.

Paper: "Rethinking Vision Transformers for MobileNet Size and Speed" (Li et al., ICCV 2023,
arXiv 2212.08059). Official code: snap-research/EfficientFormer, ``models/efficientformer_v2.py``
(Apache-2.0, Copyright Snap Inc.). timm has a refactor with other module names
(``timm/models/efficientformer_v2.py``); :meth:`EfficientFormerV2.checkpoint_filter` maps it.

State-dict layout (official names): ``patch_embed.{0,1,3,4}`` (stem: conv, BN, GELU, conv, BN,
GELU), ``network.{0..6}``, ``norm`` (BN), ``head``, ``dist_head``. ``network`` alternates stages
and downsamplers: ``network.{0,2,4,6}`` are block Sequentials, ``network.{1,3}`` conv+BN
``Embedding`` (``proj``/``norm``) and ``network.5`` the attention downsampler (``conv``/``bn``/
``attn``). A block is ``mlp.{fc1,norm1,mid,mid_norm,fc2,norm2}`` + ``layer_scale_2`` [C,1,1];
the last ``num_vit`` blocks of stages 2 and 3 add ``token_mixer`` + ``layer_scale_1``.
Conv+BN pairs are ``nn.Sequential`` (keys ``.0``/``.1``); the attention output projection is
``proj.0`` GELU, ``proj.1`` conv, ``proj.2`` BN.

Attention tables are sized at construction (``image_size``, a multiple of 32): stage 2 attends on
a stride-2 grid of ``image_size/16`` and upsamples back (bilinear x2), stage 3 on ``image_size/32``.
The official checkpoints store ``attention_bias_idxs``; here they are regenerated, non-persistent
buffers, and the ones in a checkpoint are checked and dropped.

Preprocessing follows the official evaluation (``main.py``/``util/datasets.py``): bicubic resize
to 256/224 of the size, centre crop (crop 0.875); the ``crop_pct`` 0.9/0.95 in the official and
timm cfgs are not what the reported accuracies used.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from edgevit.errors import InvalidArgumentError
from edgevit.models._base import EdgeModel
from edgevit.models._checkpoint import verify_index_buffers
from edgevit.models._info import ModelInfo, Preprocess, register_model
from edgevit.models.layers import (
    DropPath,
    attention_bias_index,
    downsample_attention_bias_index,
    fuse_bn_into_following_linear,
    fuse_conv_bn,
    merge_heads,
    trunc_normal_,
)
from edgevit.models.layers.misc import drop_path_rates

PAPER = "Rethinking Vision Transformers for MobileNet Size and Speed (EfficientFormerV2, arXiv 2212.08059)"


# -- building blocks ---------------------------------------------------------------------------
def conv_bn(in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (with bias) then BN, as the official ``nn.Sequential`` (keys ``.0`` and ``.1``)."""
    conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups)
    return nn.Sequential(conv, nn.BatchNorm2d(out_chs))


def _fuse_pair_(seq: nn.Sequential, conv_index: int) -> None:
    """Fold ``seq[conv_index + 1]`` (BN) into ``seq[conv_index]``; the BN slot becomes Identity."""
    seq[conv_index] = fuse_conv_bn(seq[conv_index], seq[conv_index + 1])
    seq[conv_index + 1] = nn.Identity()


@torch.no_grad()
def _scale_output_(conv: nn.Conv2d, scale: torch.Tensor | float) -> None:
    """Multiply a conv's output channels by ``scale`` (a layer scale or the attention scale)."""
    scale = torch.as_tensor(scale, dtype=conv.weight.dtype).flatten()
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias.mul_(scale)


class Mlp(nn.Module):
    """1x1 conv, BN, GELU, depthwise 3x3, BN, GELU, 1x1 conv, BN (the official ``mid_conv`` Mlp)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        # registered in the official order, so that state_dict() lists keys as the checkpoints do
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.mid = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.mid_norm = nn.BatchNorm2d(hidden)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.norm2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.fc1(x)))
        x = self.act(self.mid_norm(self.mid(x)))
        return self.norm2(self.fc2(x))

    def fuse_(self, out_scale: torch.Tensor | None) -> None:
        """Fold the three BNs into their convs and ``out_scale`` (a layer scale) into ``fc2``."""
        self.fc1, self.norm1 = fuse_conv_bn(self.fc1, self.norm1), nn.Identity()
        self.mid, self.mid_norm = fuse_conv_bn(self.mid, self.mid_norm), nn.Identity()
        self.fc2, self.norm2 = fuse_conv_bn(self.fc2, self.norm2), nn.Identity()
        if out_scale is not None:
            _scale_output_(self.fc2, out_scale)


class _AttentionBias(nn.Module):
    """Holds ``attention_biases`` [heads, offsets] and the index table that spreads it over the logits.

    Before reparameterization the bias is gathered in every forward (weights loaded after
    ``eval()`` are never stale); :meth:`freeze_bias_` gathers it once into the constant buffer
    ``attention_bias`` [heads, Nq, Nk], so the inference graph has no gather.
    """

    def _init_bias(self, num_heads: int, num_offsets: int, index: torch.Tensor) -> None:
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, num_offsets))
        self.register_buffer("attention_bias_idxs", index, persistent=False)
        self.register_buffer("attention_bias", None)

    def bias(self) -> torch.Tensor:
        if self.attention_bias is not None:
            return self.attention_bias
        return self.attention_biases[:, self.attention_bias_idxs]

    @torch.no_grad()
    def freeze_bias_(self) -> None:
        self.attention_bias = self.bias().detach().clone()
        self.attention_biases = None
        self.attention_bias_idxs = None


class Attention2d(_AttentionBias):
    """Multi-head attention on a feature map (official ``Attention4D``), all in 4-D tensors.

    8 heads, key width 32, value width 128 per head. With ``stride`` (stage 2) the map is first
    reduced by a depthwise strided conv and the output bilinearly upsampled back. The logits are
    mixed across heads before and after the softmax by 1x1 convs ("talking heads") on the
    (B, heads, N, N) map, and a depthwise 3x3 conv of the values (``v_local``) is added.
    """

    def __init__(self, dim: int, resolution: int, stride: int | None = None, key_dim: int = 32,
                 num_heads: int = 8, attn_ratio: int = 4) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = attn_ratio * key_dim
        self.scale: float | None = key_dim**-0.5
        self.stride = stride
        self.resolution = math.ceil(resolution / stride) if stride else resolution
        inner = self.value_dim * num_heads
        self.stride_conv = conv_bn(dim, dim, 3, stride, groups=dim) if stride else None
        self.q = conv_bn(dim, key_dim * num_heads)
        self.k = conv_bn(dim, key_dim * num_heads)
        self.v = conv_bn(dim, inner)
        self.v_local = conv_bn(inner, inner, 3, groups=inner)
        self.talking_head1 = nn.Conv2d(num_heads, num_heads, 1)
        self.talking_head2 = nn.Conv2d(num_heads, num_heads, 1)
        self.proj = nn.Sequential(nn.GELU(), nn.Conv2d(inner, dim, 1), nn.BatchNorm2d(dim))
        self._init_bias(num_heads, self.resolution**2, attention_bias_index(self.resolution))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride_conv is not None:
            x = self.stride_conv(x)
        batch, r = x.shape[0], self.resolution
        n = r * r
        q = self.q(x).reshape(batch, self.num_heads, self.key_dim, n).transpose(2, 3)
        k = self.k(x).reshape(batch, self.num_heads, self.key_dim, n)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(batch, self.num_heads, self.value_dim, n).transpose(2, 3)
        attn = q @ k
        if self.scale is not None:
            attn = attn * self.scale
        attn = self.talking_head1(attn + self.bias()).softmax(dim=-1)
        attn = self.talking_head2(attn)
        out = (attn @ v).transpose(2, 3).reshape(batch, self.num_heads * self.value_dim, r, r) + v_local
        if self.stride is not None:
            out = F.interpolate(out, scale_factor=float(self.stride), mode="bilinear", align_corners=False)
        return self.proj(out)

    def fuse_(self, out_scale: torch.Tensor | None) -> None:
        """Fold every BN, the logit scale (into ``q``) and ``out_scale`` (into ``proj``); freeze the bias."""
        for seq in (self.stride_conv, self.q, self.k, self.v, self.v_local):
            if seq is not None:
                _fuse_pair_(seq, 0)
        _scale_output_(self.q[0], self.scale)
        self.scale = None
        _fuse_pair_(self.proj, 1)
        if out_scale is not None:
            _scale_output_(self.proj[1], out_scale)
        self.freeze_bias_()


class LGQuery(nn.Module):
    """Local-global query of the downsampling attention: depthwise 3x3 s2 conv + 2x subsample, then 1x1 conv+BN.

    The official global part is ``AvgPool2d(1, 2, 0)``, which with a 1x1 window is exactly the
    strided subsample ``x[:, :, ::2, ::2]`` (same ``ceil(H/2)`` output size). That sample is the
    centre tap of the 3x3 s2 p1 conv, so :meth:`fuse_` adds 1 to the centre weight instead.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Conv2d(dim, dim, 3, 2, 1, groups=dim))
        self.proj = conv_bn(dim, out_dim)
        self.subsample_folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.local(x)
        if not self.subsample_folded:
            q = q + x[:, :, ::2, ::2]
        return self.proj(q)

    @torch.no_grad()
    def fuse_(self, out_scale: float) -> None:
        self.local[0].weight[:, 0, 1, 1] += 1.0
        self.subsample_folded = True
        _fuse_pair_(self.proj, 0)
        _scale_output_(self.proj[0], out_scale)


class AttentionDownsample(_AttentionBias):
    """Attention from the ``ceil(r/2)`` grid (queries) to the ``r`` grid (keys): official ``Attention4DDownsample``.

    8 heads, key width 16, value width 64 per head; no talking heads. ``v_local`` is a strided
    depthwise conv, so the output is on the query grid.
    """

    def __init__(self, dim: int, out_dim: int, resolution: int, key_dim: int = 16, num_heads: int = 8,
                 attn_ratio: int = 4) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = attn_ratio * key_dim
        self.scale: float | None = key_dim**-0.5
        self.resolution = resolution
        self.resolution_q = math.ceil(resolution / 2)
        inner = self.value_dim * num_heads
        self.q = LGQuery(dim, key_dim * num_heads)
        self.k = conv_bn(dim, key_dim * num_heads)
        self.v = conv_bn(dim, inner)
        self.v_local = conv_bn(inner, inner, 3, stride=2, groups=inner)
        self.proj = nn.Sequential(nn.GELU(), nn.Conv2d(inner, out_dim, 1), nn.BatchNorm2d(out_dim))
        self._init_bias(num_heads, resolution**2, downsample_attention_bias_index(resolution))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, rq = x.shape[0], self.resolution_q
        n = self.resolution**2
        q = self.q(x).reshape(batch, self.num_heads, self.key_dim, rq * rq).transpose(2, 3)
        k = self.k(x).reshape(batch, self.num_heads, self.key_dim, n)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(batch, self.num_heads, self.value_dim, n).transpose(2, 3)
        attn = q @ k
        if self.scale is not None:
            attn = attn * self.scale
        attn = (attn + self.bias()).softmax(dim=-1)
        out = (attn @ v).transpose(2, 3).reshape(batch, self.num_heads * self.value_dim, rq, rq) + v_local
        return self.proj(out)

    def fuse_(self) -> None:
        self.q.fuse_(self.scale)
        self.scale = None
        for seq in (self.k, self.v, self.v_local):
            _fuse_pair_(seq, 0)
        _fuse_pair_(self.proj, 1)
        self.freeze_bias_()


class Embedding(nn.Module):
    """Downsampler between stages 0-1 and 1-2: conv 3x3 s2 (``proj``) + BN (``norm``)."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chs, out_chs, 3, 2, 1)
        self.norm = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))

    def fuse_(self) -> None:
        self.proj, self.norm = fuse_conv_bn(self.proj, self.norm), nn.Identity()


class AttentionEmbedding(nn.Module):
    """Downsampler into the last stage (official ``Embedding(asub=True)``): ``bn(conv(x)) + attn(x)``."""

    def __init__(self, in_chs: int, out_chs: int, resolution: int) -> None:
        super().__init__()
        self.attn = AttentionDownsample(in_chs, out_chs, resolution)
        self.conv = nn.Conv2d(in_chs, out_chs, 3, 2, 1)
        self.bn = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x) + self.bn(self.conv(x))

    def fuse_(self) -> None:
        self.conv, self.bn = fuse_conv_bn(self.conv, self.bn), nn.Identity()
        self.attn.fuse_()


class Block(nn.Module):
    """``x + ls1 * attention(x)`` (attention blocks only), then ``x + ls2 * mlp(x)``.

    The official ``FFN`` and ``AttnFFN`` in one class; layer scales are [C, 1, 1].
    """

    def __init__(self, dim: int, mlp_ratio: float, token_mixer: Attention2d | None = None,
                 drop_path: float = 0.0, layer_scale_init_value: float = 1e-5) -> None:
        super().__init__()
        self.token_mixer = token_mixer
        if token_mixer is not None:
            self.layer_scale_1 = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init_value))
        else:
            self.register_parameter("layer_scale_1", None)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.layer_scale_2 = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init_value))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.token_mixer is not None:
            x = x + self.drop_path(_layer_scale(self.token_mixer(x), self.layer_scale_1))
        return x + self.drop_path(_layer_scale(self.mlp(x), self.layer_scale_2))

    def fuse_(self) -> None:
        """Fold BNs and layer scales into the branch convs; drop-path becomes Identity."""
        if self.token_mixer is not None:
            self.token_mixer.fuse_(self.layer_scale_1)
            self.layer_scale_1 = None
        self.mlp.fuse_(self.layer_scale_2)
        self.layer_scale_2 = None
        self.drop_path = nn.Identity()


def _layer_scale(x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    return x if scale is None else x * scale


@torch.no_grad()
def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``bn(x) == x * scale + shift`` per channel (eval statistics)."""
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    return scale, bn.bias - bn.running_mean * scale


class _ChannelAffine(nn.Module):
    """``x * scale + shift`` on pooled (B, C) features: the folded head norm, kept for ``pre_logits``."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.clone())
        self.register_buffer("shift", shift.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _classify(pooled: torch.Tensor, head: nn.Module, dist_head: nn.Module | None, training: bool):
    """Logits; with a distillation head the average of both in eval and, as in the official
    code, the ``(head, dist_head)`` pair while training (for the distillation loss)."""
    out = head(pooled)
    if dist_head is None:
        return out
    dist = dist_head(pooled)
    return (out, dist) if training else (out + dist) / 2


class _HeadSegment(nn.Module):
    """The last segment: head norm, global average pool and classifier(s)."""

    def __init__(self, norm: nn.Module, head: nn.Module, dist_head: nn.Module | None, training: bool) -> None:
        super().__init__()
        self.norm = norm
        self.head = head
        self.dist_head = dist_head
        self.train(training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _classify(self.norm(x).mean(dim=(2, 3)), self.head, self.dist_head, self.training)


# -- model ---------------------------------------------------------------------------------------
class EfficientFormerV2(EdgeModel):
    """EfficientFormer V2 with the official module layout.

    Args:
        depths: blocks per stage (4 stages).
        widths: channels per stage.
        mlp_ratios: per-stage lists of per-block FFN expansion ratios (the official ``e_ratios``).
        num_vit: how many of the last blocks of stages 2 and 3 carry attention.
        image_size: square input size, a multiple of 32; sizes the attention bias tables.
        distillation: build ``dist_head`` (the official checkpoints have one).
    """

    def __init__(
        self,
        depths: tuple[int, ...],
        widths: tuple[int, ...],
        mlp_ratios: tuple[tuple[float, ...], ...],
        num_vit: int,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        distillation: bool = True,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-5,
    ) -> None:
        super().__init__()
        if image_size % 32:
            raise InvalidArgumentError(
                f"EfficientFormerV2 needs an image_size that is a multiple of 32 (its stage-2 attention "
                f"halves and re-doubles a 1/16 grid), got {image_size}; try {max(32, image_size // 32 * 32)}"
            )
        if [len(r) for r in mlp_ratios] != list(depths):
            raise InvalidArgumentError(f"mlp_ratios must give one ratio per block: depths {list(depths)}, "
                                       f"got {[len(r) for r in mlp_ratios]} ratios")
        self.num_classes = num_classes
        self.image_size = image_size
        self.num_features = widths[-1]
        self.patch_embed = nn.Sequential(
            nn.Conv2d(in_chans, widths[0] // 2, 3, 2, 1), nn.BatchNorm2d(widths[0] // 2), nn.GELU(),
            nn.Conv2d(widths[0] // 2, widths[0], 3, 2, 1), nn.BatchNorm2d(widths[0]), nn.GELU(),
        )
        rates = iter(drop_path_rates(drop_path_rate, depths))
        network: list[nn.Module] = []
        for i, depth in enumerate(depths):
            resolution = math.ceil(image_size / 2 ** (i + 2))
            blocks = []
            for j in range(depth):
                attention = None
                if i >= 2 and j >= depth - num_vit:
                    attention = Attention2d(widths[i], resolution, stride=2 if i == 2 else None)
                blocks.append(Block(widths[i], mlp_ratios[i][j], attention, next(rates), layer_scale_init_value))
            network.append(nn.Sequential(*blocks))
            if i + 1 < len(depths):
                down = AttentionEmbedding(widths[i], widths[i + 1], resolution) if i >= 2 else \
                    Embedding(widths[i], widths[i + 1])
                network.append(down)
        self.network = nn.ModuleList(network)
        self.norm = nn.BatchNorm2d(widths[-1])
        self.head = nn.Linear(widths[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.dist_head: nn.Linear | None = None
        self.set_dist_head(distillation)
        self.pre_logits_norm: nn.Module = nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        if self.norm.weight.device.type == "meta":
            return
        for module in self.modules():
            if isinstance(module, Mlp):
                for conv in (module.fc1, module.fc2):
                    trunc_normal_(conv.weight, std=0.02)
                    nn.init.zeros_(conv.bias)
            elif isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def set_dist_head(self, enabled: bool) -> None:
        """Add (freshly initialised) or remove the distillation head."""
        if self.is_reparameterized:
            raise InvalidArgumentError("the distillation head of a reparameterized model is merged into head")
        if not enabled or self.num_classes <= 0:
            self.dist_head = None
        elif self.dist_head is None:
            self.dist_head = nn.Linear(self.num_features, self.num_classes)
            if self.dist_head.weight.device.type != "meta":
                trunc_normal_(self.dist_head.weight, std=0.02)
                nn.init.zeros_(self.dist_head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise InvalidArgumentError(
                f"this EfficientFormerV2 was built for {self.image_size}x{self.image_size} input (its "
                f"attention tables are sized for it), got {x.shape[-2]}x{x.shape[-1]}; build it with "
                "image_size= the size you need"
            )
        x = self.patch_embed(x)
        for module in self.network:
            x = module(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        if pre_logits:
            return self.pre_logits_norm(x)
        return _classify(x, self.head, self.dist_head, self.training)

    def segments(self) -> list[tuple[str, nn.Module]]:
        """``stem``, ``stage0``..``stage3`` (a stage starts with its downsampler), ``head``."""
        net = self.network
        pieces: list[tuple[str, nn.Module]] = [("stem", self.patch_embed), ("stage0", net[0])]
        pieces += [(f"stage{i}", nn.Sequential(net[2 * i - 1], net[2 * i])) for i in range(1, len(net) // 2 + 1)]
        pieces.append(("head", _HeadSegment(self.norm, self.head, self.dist_head, self.training)))
        return pieces

    def _reparameterize_(self) -> None:
        _fuse_pair_(self.patch_embed, 0)
        _fuse_pair_(self.patch_embed, 3)
        for module in list(self.network.modules()):
            if isinstance(module, (Block, Embedding, AttentionEmbedding)):
                module.fuse_()
        # BN commutes with the spatial mean, so the head norm folds into the classifier
        scale, shift = _bn_affine(self.norm)
        head = self.head
        if self.dist_head is not None:
            head = merge_heads(head, self.dist_head)
        self.head = fuse_bn_into_following_linear(self.norm, head) if isinstance(head, nn.Linear) else \
            _ChannelAffine(scale, shift)
        self.dist_head = None
        self.pre_logits_norm = _ChannelAffine(scale, shift)
        self.norm = nn.Identity()

    # -- checkpoint remapping --------------------------------------------------------------------
    def checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map timm-named checkpoints to the official names; check and drop legacy index tables."""
        if any(k.startswith(("stem.", "stages.")) for k in state_dict):
            state_dict = timm_to_official(state_dict)
        return verify_index_buffers(state_dict, self)


# timm (refactored) names -> official ones. Prefixes first (stage-level), then module-local renames
# applied in order: ``q.proj``/``q.local`` of the downsampling query before the generic ``proj``.
_TIMM_STEM = {"stem.conv1.conv.": "patch_embed.0.", "stem.conv1.bn.": "patch_embed.1.",
              "stem.conv2.conv.": "patch_embed.3.", "stem.conv2.bn.": "patch_embed.4."}
_TIMM_LOCAL = [
    (r"\.mlp\.fc1\.conv\.", ".mlp.fc1."), (r"\.mlp\.fc1\.bn\.", ".mlp.norm1."),
    (r"\.mlp\.mid\.conv\.", ".mlp.mid."), (r"\.mlp\.mid\.bn\.", ".mlp.mid_norm."),
    (r"\.mlp\.fc2\.conv\.", ".mlp.fc2."), (r"\.mlp\.fc2\.bn\.", ".mlp.norm2."),
    (r"\.ls([12])\.gamma$", r".layer_scale_\1"),
    (r"\.q\.local\.", ".q.local.0."), (r"\.q\.proj\.conv\.", ".q.proj.0."), (r"\.q\.proj\.bn\.", ".q.proj.1."),
    (r"\.(stride_conv|q|k|v|v_local)\.conv\.", r".\1.0."), (r"\.(stride_conv|q|k|v|v_local)\.bn\.", r".\1.1."),
    (r"\.proj\.conv\.", ".proj.1."), (r"\.proj\.bn\.", ".proj.2."),
]


def timm_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a timm ``efficientformerv2_*`` state dict to the official layout.

    timm's ``stages.{s}.downsample`` is official ``network.{2s-1}`` (``conv.conv``/``conv.bn`` ->
    ``proj``/``norm``, or ``conv``/``bn`` next to ``attn``), ``stages.{s}.blocks`` is
    ``network.{2s}``, ``ls{1,2}.gamma`` [C] is ``layer_scale_{1,2}`` [C,1,1], ``ConvNorm``'s
    ``conv``/``bn`` are Sequential ``.0``/``.1`` and ``head_dist`` is ``dist_head``.
    """
    attn_stages = {m[1] for k in state_dict if (m := re.match(r"stages\.(\d+)\.downsample\.attn\.", k))}
    out = {}
    for key, value in state_dict.items():
        new = key
        for old, rep in _TIMM_STEM.items():
            new = rep + new[len(old):] if new.startswith(old) else new
        if m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.", new):
            new = f"network.{2 * int(m[1])}.{m[2]}." + new[m.end():]
        elif m := re.match(r"stages\.(\d+)\.downsample\.", new):
            conv, norm = ("conv", "bn") if m[1] in attn_stages else ("proj", "norm")
            rest = re.sub(r"^conv\.bn\.", f"{norm}.", re.sub(r"^conv\.conv\.", f"{conv}.", new[m.end():]))
            new = f"network.{2 * int(m[1]) - 1}.{rest}"
        elif new.startswith("head_dist."):
            new = "dist_head." + new[len("head_dist."):]
        for pattern, rep in _TIMM_LOCAL:
            new = re.sub(pattern, rep, new)
        if new.endswith((".layer_scale_1", ".layer_scale_2")) and value.dim() == 1:
            value = value.reshape(-1, 1, 1)
        out[new] = value
    return out


# -- registered variants ---------------------------------------------------------------------------
EFFICIENTFORMERV2_PREPROCESS = Preprocess(interpolation="bicubic", crop_pct=0.875, resize_mode="crop")


def _info(name: str, params: int, gmacs: float, paper_params_m: float | None, paper_gmacs: float | None,
          image_size: int = 224, is_test: bool = False, num_classes: int = 1000) -> ModelInfo:
    return ModelInfo(
        name=name, family="efficientformerv2", paper=PAPER, input_size=(3, image_size, image_size),
        params=params, gmacs=gmacs, fixed_size=True, size_multiple=32, num_classes=num_classes,
        has_dist_head=True, paper_params_m=paper_params_m, paper_gmacs=paper_gmacs,
        preprocess=EFFICIENTFORMERV2_PREPROCESS, is_test=is_test,
    )


# Params include dist_head (as the checkpoints and the timm cards do). The repo README's smaller
# 3.5/6.1/12.6/26.1 M come from toolbox.py's profiler (also with dist_head), which skips BN, layer
# scales and attention biases and counts a conv's bias as weight.size(1): 3.53/6.09/12.55/26.07 M.
@register_model(_info("efficientformerv2_s0", 3_600_256, 0.39589, 3.6, 0.40))
def efficientformerv2_s0(**kwargs) -> EfficientFormerV2:
    ratios = ((4, 4), (4, 4), (4, 3, 3, 3, 4, 4), (4, 3, 3, 4))
    return EfficientFormerV2((2, 2, 6, 4), (32, 48, 96, 176), ratios, num_vit=2, **kwargs)


@register_model(_info("efficientformerv2_s1", 6_185_560, 0.65197, 6.2, 0.65))
def efficientformerv2_s1(**kwargs) -> EfficientFormerV2:
    ratios = ((4,) * 3, (4,) * 3, (4, 4, 3, 3, 3, 3, 4, 4, 4), (4, 4, 3, 3, 4, 4))
    return EfficientFormerV2((3, 3, 9, 6), (32, 48, 120, 224), ratios, num_vit=2, **kwargs)


@register_model(_info("efficientformerv2_s2", 12_710_112, 1.24686, 12.7, 1.25))
def efficientformerv2_s2(**kwargs) -> EfficientFormerV2:
    kwargs.setdefault("drop_path_rate", 0.02)
    ratios = ((4,) * 4, (4,) * 4, (4, 4, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4), (4, 4, 3, 3, 3, 3, 4, 4))
    return EfficientFormerV2((4, 4, 12, 8), (32, 64, 144, 288), ratios, num_vit=4, **kwargs)


@register_model(_info("efficientformerv2_l", 26_322_288, 2.55255, 26.3, 2.56))
def efficientformerv2_l(**kwargs) -> EfficientFormerV2:
    kwargs.setdefault("drop_path_rate", 0.1)
    ratios = ((4,) * 5, (4,) * 5, (4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4), (4, 4, 4, 3, 3, 3, 3, 4, 4, 4))
    return EfficientFormerV2((5, 5, 15, 10), (40, 80, 192, 384), ratios, num_vit=6, **kwargs)


@register_model(_info("test_efficientformerv2", 271_668, 0.0031773, None, None, image_size=64, is_test=True,
                      num_classes=10))
def test_efficientformerv2(**kwargs) -> EfficientFormerV2:
    """One FFN and one attention block in stages 2 and 3 (strided + plain attention, attention
    downsampler, per-block ratios) at 16-32 channels and 64-pixel input, with ``dist_head``."""
    kwargs.setdefault("image_size", 64)
    kwargs.setdefault("num_classes", 10)
    ratios = ((4,), (4,), (3, 4), (4, 3))
    return EfficientFormerV2((1, 1, 2, 2), (16, 16, 24, 32), ratios, num_vit=1, **kwargs)
