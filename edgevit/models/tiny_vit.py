"""TinyViT: a hierarchical ViT with an MBConv stage, windowed attention and local convs.

Paper: "TinyViT: Fast Pretraining Distillation for Small Vision Transformers" (Wu et al.,
ECCV 2022, arXiv 2207.10666). Official code: microsoft/Cream, ``TinyViT/models/tiny_vit.py``
(MIT licence); weights: github.com/wkcn/TinyViT-model-zoo. timm re-implements it as
``timm/models/tiny_vit.py`` (Apache-2.0) with other parameter names.

State-dict layout (official names, kept exactly): ``patch_embed.seq.{0,2}.{c,bn}``,
``layers.0.blocks.j.conv{1,2,3}`` (MBConv), ``layers.{1,2,3}.blocks.j.{attn, local_conv,
mlp}``, ``layers.{0,1,2}.downsample.conv{1,2,3}`` (PatchMerging at the *end* of a stage,
depthwise stride 2), ``norm_head``, ``head``. ``*.attention_bias_idxs`` are regenerated
from the window size (non-persistent); released checkpoints still carry them and they are
checked on load. There is no distillation head: TinyViT distils offline, from stored logits.

Beware look-alike weights: MobileSAM-style copies set the PatchMerging depthwise stride to 1
in the last stages. Their keys and shapes are identical, so they load, but this model (the
classification TinyViT) computes something else with them.

Export notes: the input size is fixed at construction (``image_size`` sets the token grids;
bias tables depend only on the window sizes). The window partition is written with tensors
of rank <= 4 (``(B*nH, ws, nW, ws*C)`` and a swap of axes 1 and 2, instead of the official
rank-6 view) and multi-head attention keeps heads in dimension 1 of 4-D tensors.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from edgevit.errors import CheckpointError, InvalidArgumentError
from edgevit.models._base import EdgeModel
from edgevit.models._checkpoint import verify_index_buffers
from edgevit.models._info import ModelInfo, Preprocess, register_model
from edgevit.models.layers import DropPath, attention_bias_index, fuse_conv_bn, trunc_normal_
from edgevit.models.layers.misc import drop_path_rates

PAPER = "TinyViT: Fast Pretraining Distillation for Small Vision Transformers (ECCV 2022, arXiv 2207.10666)"


# -- building blocks -----------------------------------------------------------------------
class Conv2dBN(nn.Sequential):
    """Bias-free conv followed by BatchNorm (official ``Conv2d_BN``: keys ``c`` and ``bn``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def fuse(self) -> nn.Conv2d:
        """The same function as one conv with bias (BN running statistics folded in)."""
        return fuse_conv_bn(self.c, self.bn)


class PatchEmbed(nn.Module):
    """Two 3x3 stride-2 conv+BN with GELU between: the image to a 1/4-resolution map."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual (1x1 expand, 3x3 depthwise, 1x1 project) with the GELU *after* the add."""

    def __init__(self, dim: int, expand_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim, bn_weight_init=0.0)
        self.act3 = nn.GELU()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.drop_path(self.conv3(y)) + x)


class PatchMerging(nn.Module):
    """Halve the grid and change the width: 1x1, depthwise 3x3 stride 2, 1x1 (with GELUs).

    Takes an NCHW map (after the conv stage) or tokens ``(B, H*W, C)``; returns tokens.
    """

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, 2, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            height, width = self.input_resolution
            x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], height, width)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """Pre-norm MLP: LayerNorm, fc1, GELU, fc2."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(self.norm(x))))
        return self.drop(self.fc2(x))


class Attention(nn.Module):
    """Multi-head self-attention within one ``ws x ws`` window, with a learned offset bias.

    ``qkv`` is per-head interleaved (each head holds ``[q | k | v]``). The bias added to the
    logits is ``attention_biases[:, attention_bias_idxs]``, gathered in every forward until
    :meth:`freeze_bias_` stores it once as the constant buffer ``fixed_bias``.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * num_heads * key_dim)
        self.proj = nn.Linear(num_heads * key_dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.register_buffer("attention_bias_idxs", attention_bias_index(window_size), persistent=False)
        self.register_buffer("fixed_bias", None)

    def bias(self) -> torch.Tensor:
        """The ``[heads, N, N]`` logit bias."""
        if self.fixed_bias is not None:
            return self.fixed_bias
        return self.attention_biases[:, self.attention_bias_idxs]

    @torch.no_grad()
    def freeze_bias_(self) -> None:
        """Gather the bias once into a constant buffer; the table and its index go away."""
        self.fixed_bias = self.bias().detach().clone()
        del self.attention_biases
        del self.attention_bias_idxs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        # (B, N, heads*3d) -> (B, heads, N, 3d): rank 4 throughout
        qkv = self.qkv(self.norm(x)).reshape(batch, tokens, self.num_heads, 3 * self.key_dim).transpose(1, 2)
        q, k, v = qkv.split(self.key_dim, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.bias()
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, self.num_heads * self.key_dim))


def window_partition(x: torch.Tensor, batch: int, height: int, width: int, window: int) -> torch.Tensor:
    """``(B, H*W, C)`` or ``(B, H, W, C)`` tokens to ``(B*nH*nW, ws*ws, C)`` windows, rank <= 4.

    Viewing the row-major grid as ``(B*nH, ws, nW, ws*C)`` and swapping axes 1 and 2 orders
    the tokens window by window, each window row-major: the official rank-6 partition.
    """
    channels = x.shape[-1]
    rows, cols = height // window, width // window
    x = x.reshape(batch * rows, window, cols, window * channels).transpose(1, 2)
    return x.reshape(batch * rows * cols, window * window, channels)


def window_reverse(x: torch.Tensor, batch: int, height: int, width: int, window: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`, returning ``(B, H*W, C)``."""
    channels = x.shape[-1]
    rows, cols = height // window, width // window
    x = x.reshape(batch * rows, cols, window, window * channels).transpose(1, 2)
    return x.reshape(batch, height * width, channels)


class TinyViTBlock(nn.Module):
    """Windowed attention (residual), depthwise 3x3 conv+BN (no residual), MLP (residual).

    Tokens ``(B, H*W, C)`` in and out. A grid that is not a multiple of the window is
    zero-padded bottom/right before the attention (its own LayerNorm included) and cropped
    after, with no mask, as the official code does; at the canonical sizes no padding occurs.
    """

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int,
                 mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0, local_conv_size: int = 3) -> None:
        super().__init__()
        if dim % num_heads:
            raise InvalidArgumentError(f"TinyViT block width {dim} is not divisible by its {num_heads} heads")
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, window_size)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.local_conv = Conv2dBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.input_resolution
        batch, tokens, channels = x.shape
        x = x + self.drop_path(self._window_attention(x))
        x = x.transpose(1, 2).reshape(batch, channels, height, width)
        x = self.local_conv(x).flatten(2).transpose(1, 2)
        return x + self.drop_path(self.mlp(x))

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.input_resolution
        ws = self.window_size
        if height == ws and width == ws:
            return self.attn(x)
        batch, tokens, channels = x.shape
        pad_b, pad_r = (ws - height % ws) % ws, (ws - width % ws) % ws
        padded_h, padded_w = height + pad_b, width + pad_r
        if pad_b or pad_r:
            x = F.pad(x.reshape(batch, height, width, channels), (0, 0, 0, pad_r, 0, pad_b))
        x = self.attn(window_partition(x, batch, padded_h, padded_w, ws))
        x = window_reverse(x, batch, padded_h, padded_w, ws)
        if pad_b or pad_r:
            x = x.reshape(batch, padded_h, padded_w, channels)[:, :height, :width].reshape(batch, tokens, channels)
        return x


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on an NCHW map, then PatchMerging (NCHW in, tokens out)."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, drop_path: list[float],
                 out_dim: int, expand_ratio: float = 4.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, expand_ratio, drop_path[i]) for i in range(depth)])
        self.downsample = PatchMerging(input_resolution, dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks on tokens, then PatchMerging unless it is the last stage."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 drop_path: list[float], out_dim: int | None, mlp_ratio: float = 4.0, drop: float = 0.0,
                 local_conv_size: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, drop, drop_path[i], local_conv_size)
            for i in range(depth)
        ])
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PoolNormHead(nn.Module):
    """Mean over tokens, ``norm_head`` LayerNorm, then the classifier (the last segment)."""

    def __init__(self, norm_head: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.norm_head = norm_head
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm_head(x.mean(1)))


# -- the model -----------------------------------------------------------------------------
class TinyViT(EdgeModel):
    """TinyViT for classification at a fixed square input size.

    Args:
        image_size: input size, a multiple of 32; sets every stage's token grid (and so how
            many windows, and whether padding, each attention stage uses).
        embed_dims, depths, num_heads, window_sizes: per stage (stage 0 is convolutional and
            ignores its heads and window).
        drop_path_rate: stochastic depth, linearly increasing over all blocks (training only).
    """

    def __init__(
        self,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: tuple[int, ...] = (96, 192, 384, 768),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
    ) -> None:
        super().__init__()
        stride = 4 * 2 ** (len(depths) - 1)
        if not isinstance(image_size, int) or image_size <= 0 or image_size % stride:
            raise InvalidArgumentError(
                f"TinyViT takes square inputs whose size is a multiple of {stride}, got {image_size!r}"
            )
        self.num_classes = num_classes
        self.image_size = image_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        rates = drop_path_rates(drop_path_rate, depths)
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            grid = image_size // 4 // 2**i
            resolution = (grid, grid)
            stage_rates = rates[sum(depths[:i]):sum(depths[:i + 1])]
            out_dim = embed_dims[i + 1] if i + 1 < len(depths) else None
            if i == 0:
                layer = ConvLayer(embed_dims[0], resolution, depth, stage_rates, embed_dims[1], mbconv_expand_ratio)
            else:
                layer = BasicLayer(embed_dims[i], resolution, depth, num_heads[i], window_sizes[i], stage_rates,
                                   out_dim, mlp_ratio, drop_rate, local_conv_size)
            self.layers.append(layer)
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        if self.norm_head.weight.device.type == "meta":
            return
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image to the last stage's tokens ``(B, (S/32)**2, C3)``."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm_head(x.mean(1))
        return x if pre_logits else self.head(x)

    def segments(self) -> list[tuple[str, nn.Module]]:
        """Cut after the stem, after every block and after every PatchMerging."""
        pieces: list[tuple[str, nn.Module]] = [("patch_embed", self.patch_embed)]
        for i, layer in enumerate(self.layers):
            pieces += [(f"layers.{i}.blocks.{j}", block) for j, block in enumerate(layer.blocks)]
            if layer.downsample is not None:
                pieces.append((f"layers.{i}.downsample", layer.downsample))
        pieces.append(("head", PoolNormHead(self.norm_head, self.head)))
        return pieces

    def _reparameterize_(self) -> None:
        """Fold every conv+BN, freeze the attention biases, drop DropPath/Dropout."""
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, Conv2dBN):
                    setattr(parent, name, child.fuse())
                elif isinstance(child, (DropPath, nn.Dropout)):
                    setattr(parent, name, nn.Identity())
                elif isinstance(child, Attention):
                    child.freeze_bias_()

    def set_dist_head(self, enabled: bool) -> None:
        """Refuse a distillation head: TinyViT has none, not even an optional one.

        (So, unlike CAS-ViT, there is no ``dist_head`` attribute: the loader calls this only
        for a checkpoint that carries ``dist_head.*`` keys, which is not a TinyViT's.)
        """
        if enabled:
            raise CheckpointError(
                "the checkpoint has dist_head.* weights, but TinyViT has no distillation head (it is "
                "distilled offline, from stored teacher logits): is it a TinyViT checkpoint?"
            )

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official (Cream) names pass through; timm names are mapped to them.

        Legacy ``*.attention_bias_idxs`` (in the released checkpoints) are checked against the
        regenerated tables and dropped.
        """
        if is_timm_state_dict(state_dict):
            state_dict = timm_to_official(state_dict)
        return verify_index_buffers(state_dict, self)


def is_timm_state_dict(state_dict: dict[str, torch.Tensor]) -> bool:
    """timm's TinyVit names its stages ``stages.N`` and its stem ``patch_embed.conv1``."""
    return any(k.startswith(("stages.", "patch_embed.conv1.", "head.fc.")) for k in state_dict)


_TIMM_RULES = (
    # timm's stage i+1 starts with the PatchMerging that ends official layer i
    (re.compile(r"^stages\.(\d+)\.downsample\."), lambda m: f"layers.{int(m[1]) - 1}.downsample."),
    (re.compile(r"^stages\.(\d+)\."), lambda m: f"layers.{m[1]}."),
    (re.compile(r"^patch_embed\.conv1\."), lambda m: "patch_embed.seq.0."),
    (re.compile(r"^patch_embed\.conv2\."), lambda m: "patch_embed.seq.2."),
    (re.compile(r"\.conv\.weight$"), lambda m: ".c.weight"),  # ConvNorm.conv -> Conv2d_BN.c
    (re.compile(r"^head\.norm(_head)?\."), lambda m: "norm_head."),  # older timm: head.norm_head
    (re.compile(r"^head\.fc\."), lambda m: "head."),
)


def timm_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a timm ``TinyVit`` state dict to the official layout (shapes are identical)."""
    out = {}
    for key, value in state_dict.items():
        for pattern, replace in _TIMM_RULES:
            key = pattern.sub(replace, key, count=1)
        out[key] = value
    return out


# -- registered variants -------------------------------------------------------------------
PREPROCESS_224 = Preprocess(interpolation="bicubic", crop_pct=0.875, resize_mode="crop")
PREPROCESS_WARP = Preprocess(interpolation="bicubic", crop_pct=1.0, resize_mode="warp")

DIMS_5M, HEADS_5M = (64, 128, 160, 320), (2, 4, 5, 10)
DIMS_11M, HEADS_11M = (64, 128, 256, 448), (2, 4, 8, 14)
DIMS_21M, HEADS_21M = (96, 192, 384, 576), (3, 6, 12, 18)
DEPTHS = (2, 2, 6, 2)


def _info(name: str, params: int, gmacs: float, paper_params_m: float | None, paper_gmacs: float | None,
          image_size: int = 224, is_test: bool = False, num_classes: int = 1000) -> ModelInfo:
    return ModelInfo(
        name=name, family="tiny_vit", paper=PAPER, input_size=(3, image_size, image_size), params=params,
        gmacs=gmacs, fixed_size=True, size_multiple=32, num_classes=num_classes, paper_params_m=paper_params_m,
        paper_gmacs=paper_gmacs, preprocess=PREPROCESS_224 if image_size <= 224 else PREPROCESS_WARP,
        is_test=is_test,
    )


def _build(image_size: int, defaults: dict, kwargs: dict) -> TinyViT:
    return TinyViT(**{"image_size": image_size, **defaults, **kwargs})


@register_model(_info("tiny_vit_5m_224", 5_392_764, 1.2552, 5.4, 1.3))
def tiny_vit_5m_224(**kwargs) -> TinyViT:
    return _build(224, dict(embed_dims=DIMS_5M, depths=DEPTHS, num_heads=HEADS_5M, window_sizes=(7, 7, 14, 7),
                            drop_path_rate=0.0), kwargs)


@register_model(_info("tiny_vit_11m_224", 10_996_972, 2.0160, 11.0, 2.0))
def tiny_vit_11m_224(**kwargs) -> TinyViT:
    return _build(224, dict(embed_dims=DIMS_11M, depths=DEPTHS, num_heads=HEADS_11M, window_sizes=(7, 7, 14, 7),
                            drop_path_rate=0.1), kwargs)


@register_model(_info("tiny_vit_21m_224", 21_198_568, 4.2503, 21.0, 4.3))
def tiny_vit_21m_224(**kwargs) -> TinyViT:
    return _build(224, dict(embed_dims=DIMS_21M, depths=DEPTHS, num_heads=HEADS_21M, window_sizes=(7, 7, 14, 7),
                            drop_path_rate=0.2), kwargs)


@register_model(_info("tiny_vit_21m_384", 21_230_488, 13.6979, 21.0, 13.8, image_size=384))
def tiny_vit_21m_384(**kwargs) -> TinyViT:
    return _build(384, dict(embed_dims=DIMS_21M, depths=DEPTHS, num_heads=HEADS_21M,
                            window_sizes=(12, 12, 24, 12), drop_path_rate=0.1), kwargs)


@register_model(_info("tiny_vit_21m_512", 21_268_120, 26.8836, 21.0, 27.0, image_size=512))
def tiny_vit_21m_512(**kwargs) -> TinyViT:
    return _build(512, dict(embed_dims=DIMS_21M, depths=DEPTHS, num_heads=HEADS_21M,
                            window_sizes=(16, 16, 32, 16), drop_path_rate=0.1), kwargs)


TEST_CONFIG = dict(embed_dims=(16, 32, 48, 64), depths=(1, 2, 2, 1), num_heads=(1, 2, 3, 4),
                   window_sizes=(4, 4, 4, 2), drop_path_rate=0.0)


@register_model(_info("test_tiny_vit", 154_386, 0.004503, None, None, image_size=64, is_test=True, num_classes=10))
def test_tiny_vit(**kwargs) -> TinyViT:
    """A tiny TinyViT on 64-pixel input: 4 windows in stage 1, one window in stages 2 and 3."""
    kwargs.setdefault("num_classes", 10)
    return _build(64, TEST_CONFIG, kwargs)
