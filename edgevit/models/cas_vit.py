"""CAS-ViT: convolutional additive self-attention, a fully convolutional mobile ViT.

Paper: "CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient
Mobile Applications" (Zhang et al., arXiv 2408.03703). Official code: Tianfang-Zhang/CAS-ViT,
``classification/model/rcvit.py`` (class ``RCViT``, factories ``rcvit_xs/s/m/t``), MIT licence.
CAS-ViT is not in timm, so there is no second naming to map from.

State-dict layout (official): ``patch_embed.{0,1,3,4}`` (conv, BN, ReLU, conv, BN, ReLU),
``network.{0..6}`` = ``[stage0, down1, stage1, down2, stage2, down3, stage3]`` with blocks
``network.S.B.{local_perception.network.{0,1,2,4}, norm1, attn.{qkv, oper_q, oper_k, dwc,
proj}, norm2, mlp.{fc1, fc2}}``, then ``norm`` (BN before pooling), ``head`` and the optional
``dist_head``. There are no buffers besides BN statistics.

Everything is a rank-4 NCHW tensor: no reshape, matmul, softmax or LayerNorm. The token mixer
gates q and k with a one-channel spatial gate and a channel gate, adds them, mixes with a
depthwise 3x3 and multiplies by v. Any input whose sides are multiples of 32 works.

Distillation head: the official constructor defaults to ``distillation=True`` and the
published parameter counts include a ``num_classes``-way ``dist_head``, but ``main.py``
trains without it. Our default build has none; loading a checkpoint that has one turns it on
(:meth:`CASViT.set_dist_head`). With it, eval output is ``(head + dist_head) / 2`` and
training output is the pair, as in the official code.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevit.errors import InvalidArgumentError
from edgevit.models._base import EdgeModel
from edgevit.models._info import ModelInfo, Preprocess, register_model
from edgevit.models.layers import (
    DropPath,
    fuse_bn_into_following_conv,
    fuse_bn_into_following_linear,
    fuse_conv_bn,
    merge_heads,
    trunc_normal_,
)
from edgevit.models.layers.misc import drop_path_rates

PAPER = (
    "CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient Mobile "
    "Applications (arXiv 2408.03703)"
)


# -- building blocks ----------------------------------------------------------------------
def _stem(in_chans: int, dim: int) -> nn.Sequential:
    """Two 3x3 stride-2 conv-BN-ReLU layers (/4); indices 0/1/3/4 hold the weights."""
    return nn.Sequential(
        nn.Conv2d(in_chans, dim // 2, 3, 2, 1),
        nn.BatchNorm2d(dim // 2),
        nn.ReLU(),
        nn.Conv2d(dim // 2, dim, 3, 2, 1),
        nn.BatchNorm2d(dim),
        nn.ReLU(),
    )


def _fuse_conv_bn_in(seq: nn.Sequential, conv_index: int) -> None:
    """Fold ``seq[conv_index + 1]`` (BN) into ``seq[conv_index]`` (conv); the BN becomes Identity."""
    seq[conv_index] = fuse_conv_bn(seq[conv_index], seq[conv_index + 1])
    seq[conv_index + 1] = nn.Identity()


class Downsample(nn.Module):
    """Between stages: 3x3 stride-2 conv and BN (official ``Embedding``)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, 3, 2, 1)
        self.norm = nn.BatchNorm2d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))

    def fuse_(self) -> None:
        self.proj = fuse_conv_bn(self.proj, self.norm)
        self.norm = nn.Identity()


class LocalPerception(nn.Module):
    """Residual local branch: 1x1 conv, BN, depthwise 3x3, GELU, 1x1 conv (no norm in front)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.BatchNorm2d(dim),
            nn.Conv2d(dim, dim, 3, 1, 1, groups=dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def fuse_(self) -> None:
        _fuse_conv_bn_in(self.network, 0)


class SpatialGate(nn.Module):
    """``x * sigmoid(conv1x1_to_1(relu(bn(dwconv3x3(x)))))``: one gate value per pixel
    (official ``SpatialOperation``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, groups=dim),
            nn.BatchNorm2d(dim),
            nn.ReLU(),
            nn.Conv2d(dim, 1, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x)

    def fuse_(self) -> None:
        _fuse_conv_bn_in(self.block, 0)


class ChannelGate(nn.Module):
    """``x * sigmoid(conv1x1(global_avg_pool(x)))``: one gate value per channel
    (official ``ChannelOperation``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim, 1, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x)


class AdditiveTokenMixer(nn.Module):
    """Convolutional additive token mixer: ``proj(dwc(gate_q(q) + gate_k(k)) * v)``.

    ``qkv`` is a bias-free 1x1 conv whose output is split into q, k, v in blocked order;
    ``dwc`` and ``proj`` are both depthwise 3x3 convs.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        self.oper_q = nn.Sequential(SpatialGate(dim), ChannelGate(dim))
        self.oper_k = nn.Sequential(SpatialGate(dim), ChannelGate(dim))
        self.dwc = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.proj = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=1)
        return self.proj(self.dwc(self.oper_q(q) + self.oper_k(k)) * v)


class Mlp(nn.Module):
    """1x1 conv, GELU, 1x1 conv."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class AdditiveBlock(nn.Module):
    """Local perception, then BN-pre-normed token mixer and MLP, each residual.

    Drop-path applies to the mixer and MLP branches only, as in the official code.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.local_perception = LocalPerception(dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = AdditiveTokenMixer(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.local_perception(x)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def fuse_(self) -> None:
        """Fold every BN of the block; the pre-norms go into the unpadded 1x1 convs they feed."""
        self.local_perception.fuse_()
        self.attn.qkv = fuse_bn_into_following_conv(self.norm1, self.attn.qkv)
        self.mlp.fc1 = fuse_bn_into_following_conv(self.norm2, self.mlp.fc1)
        self.norm1, self.norm2 = nn.Identity(), nn.Identity()
        for gate in (self.attn.oper_q[0], self.attn.oper_k[0]):
            gate.fuse_()
        self.drop_path = nn.Identity()


def _classify(pooled: torch.Tensor, head: nn.Module, dist_head: nn.Module | None, training: bool):
    """Logits from the pooled features; with a distillation head, the pair while training and
    their mean in eval, as the official ``RCViT.forward``."""
    if dist_head is None:
        return head(pooled)
    out, dist = head(pooled), dist_head(pooled)
    return (out, dist) if training else (out + dist) / 2


class ClassifierHead(nn.Module):
    """The last segment: final BN, global average pool and classifier(s).

    Holds references to the model's own ``norm``/``head``/``dist_head`` (no new weights).
    """

    def __init__(self, norm: nn.Module, head: nn.Module, dist_head: nn.Module | None, training: bool) -> None:
        super().__init__()
        self.norm = norm
        self.head = head
        self.dist_head = dist_head
        self.train(training)

    def forward(self, x: torch.Tensor):
        return _classify(self.norm(x).mean((2, 3)), self.head, self.dist_head, self.training)


# -- model ---------------------------------------------------------------------------------
class CASViT(EdgeModel):
    """CAS-ViT (official ``RCViT``), classification layout (``fork_feat=False``).

    Args:
        depths: blocks per stage (4 stages).
        embed_dims: channels per stage; stage maps are at strides 4, 8, 16, 32.
        mlp_ratio: MLP expansion.
        num_classes: classifier size (at least 1).
        image_size: the default square input size; the network itself takes any size whose
            sides are multiples of 32.
        drop_path_rate: stochastic depth, linearly increasing over all blocks (0.1 in the
            official training recipe).
        distillation: build the optional ``dist_head`` (see the module docstring).
    """

    def __init__(
        self,
        depths: tuple[int, ...] = (2, 2, 4, 2),
        embed_dims: tuple[int, ...] = (48, 56, 112, 220),
        mlp_ratio: float = 4.0,
        in_chans: int = 3,
        num_classes: int = 1000,
        image_size: int = 224,
        drop_path_rate: float = 0.0,
        distillation: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise InvalidArgumentError(f"CAS-ViT needs num_classes >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.embed_dims = tuple(embed_dims)
        self.patch_embed = _stem(in_chans, embed_dims[0])
        rates = drop_path_rates(drop_path_rate, depths)
        network: list[nn.Module] = []
        for i, (depth, dim) in enumerate(zip(depths, embed_dims)):
            if i > 0:
                network.append(Downsample(embed_dims[i - 1], dim))
            first = sum(depths[:i])
            blocks = [AdditiveBlock(dim, mlp_ratio, rates[first + b]) for b in range(depth)]
            network.append(nn.Sequential(*blocks))
        self.network = nn.ModuleList(network)
        self.norm = nn.BatchNorm2d(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.dist_head: nn.Linear | None = None
        self._init_linear(self.head)
        if distillation:
            self.set_dist_head(True)

    @staticmethod
    def _init_linear(linear: nn.Linear) -> None:
        """The official init for classifiers (convs keep PyTorch's default)."""
        if linear.weight.device.type == "meta":
            return
        trunc_normal_(linear.weight, std=0.02)
        nn.init.zeros_(linear.bias)

    def set_dist_head(self, enabled: bool) -> None:
        """Add (a freshly initialised ``num_classes``-way Linear) or remove the distillation head."""
        if not enabled:
            self.dist_head = None
            return
        if self.dist_head is None:
            weight = self.head.weight
            self.dist_head = nn.Linear(
                self.head.in_features, self.num_classes, device=weight.device, dtype=weight.dtype
            )
            self._init_linear(self.dist_head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image to the final stage map after ``norm``, ``(B, C3, H/32, W/32)``.

        After :meth:`reparameterize` the ``norm`` is folded into the head, so this returns the
        map before that affine normalisation.
        """
        x = self.patch_embed(x)
        for module in self.network:
            x = module(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False):
        pooled = x.mean((2, 3))
        return pooled if pre_logits else _classify(pooled, self.head, self.dist_head, self.training)

    def segments(self) -> list[tuple[str, nn.Module]]:
        """``stem``, then ``stage0``, ``down1``, ``stage1``, ... ``stage3``, then ``head``.

        A cut after a ``down*`` piece sends the smallest map of that resolution.
        """
        pieces: list[tuple[str, nn.Module]] = [("stem", self.patch_embed)]
        for index, module in enumerate(self.network):
            name = f"stage{index // 2}" if index % 2 == 0 else f"down{(index + 1) // 2}"
            pieces.append((name, module))
        pieces.append(("head", ClassifierHead(self.norm, self.head, self.dist_head, self.training)))
        return pieces

    def _reparameterize_(self) -> None:
        """Fold every BatchNorm (stem, downsamplers, local perception, spatial gates, the
        pre-norms into qkv/fc1, the final norm into the head), merge the distillation head and
        drop DropPath."""
        _fuse_conv_bn_in(self.patch_embed, 0)
        _fuse_conv_bn_in(self.patch_embed, 3)
        for module in self.network:
            if isinstance(module, Downsample):
                module.fuse_()
                continue
            for block in module:
                block.fuse_()
        # BN -> global mean -> linear: the per-channel affine commutes with the mean
        self.head = fuse_bn_into_following_linear(self.norm, self.head)
        if self.dist_head is not None:
            dist_head = fuse_bn_into_following_linear(self.norm, self.dist_head)
            self.head, self.dist_head = merge_heads(self.head, dist_head), None
        self.norm = nn.Identity()

    # -- checkpoint remapping --------------------------------------------------------------
    def checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official checkpoints are already in this layout (there are no timm-named ones and no
        index buffers); the loader detects ``dist_head`` from the keys."""
        return state_dict


# -- registered variants -------------------------------------------------------------------
CAS_VIT_PREPROCESS = Preprocess(interpolation="bicubic", crop_pct=0.875, resize_mode="crop")


def _cas_vit_info(name: str, params: int, gmacs: float, paper_params_m: float | None,
                  paper_gmacs: float | None, image_size: int = 224, is_test: bool = False,
                  num_classes: int = 1000) -> ModelInfo:
    return ModelInfo(
        name=name, family="cas_vit", paper=PAPER, input_size=(3, image_size, image_size), params=params,
        gmacs=gmacs, fixed_size=False, size_multiple=32, num_classes=num_classes, has_dist_head=False,
        paper_params_m=paper_params_m, paper_gmacs=paper_gmacs, preprocess=CAS_VIT_PREPROCESS,
        is_test=is_test,
    )


@register_model(_cas_vit_info("cas_vit_xs", 2_979_700, 0.5468, 3.20, 0.56))
def cas_vit_xs(**kwargs) -> CASViT:
    return CASViT(depths=(2, 2, 4, 2), embed_dims=(48, 56, 112, 220), **kwargs)


@register_model(_cas_vit_info("cas_vit_s", 5_507_224, 0.9120, 5.76, 0.93))
def cas_vit_s(**kwargs) -> CASViT:
    return CASViT(depths=(3, 3, 6, 3), embed_dims=(48, 64, 128, 256), **kwargs)


@register_model(_cas_vit_info("cas_vit_m", 12_036_520, 1.8591, 12.42, 1.89))
def cas_vit_m(**kwargs) -> CASViT:
    return CASViT(depths=(3, 3, 6, 3), embed_dims=(64, 96, 192, 384), **kwargs)


@register_model(_cas_vit_info("cas_vit_t", 21_250_120, 3.5569, 21.76, 3.6))
def cas_vit_t(**kwargs) -> CASViT:
    return CASViT(depths=(3, 3, 6, 3), embed_dims=(96, 128, 256, 512), **kwargs)


@register_model(
    _cas_vit_info("test_cas_vit", 212_842, 0.004412, None, None, image_size=64, is_test=True, num_classes=10)
)
def test_cas_vit(**kwargs) -> CASViT:
    """Four stages (1, 1, 2, 1 blocks; 16-64 channels) on 64-pixel input, for tests."""
    kwargs.setdefault("image_size", 64)
    kwargs.setdefault("num_classes", 10)
    return CASViT(depths=(1, 1, 2, 1), embed_dims=(16, 32, 48, 64), **kwargs)
