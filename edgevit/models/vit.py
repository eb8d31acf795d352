"""ViT / DeiT: the plain vision transformer, the base model the ED-ViT splitter cuts up.

Papers: "An Image is Worth 16x16 Words" (Dosovitskiy et al., ICLR 2021, arXiv 2010.11929)
and "Training data-efficient image transformers & distillation through attention" (DeiT,
Touvron et al., ICML 2021, arXiv 2012.12877). Official code: facebookresearch/deit
(Apache-2.0), whose models are timm's ``VisionTransformer``.

State-dict layout (DeiT/timm): ``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``, ``head``.
The fused qkv is in blocked order ``[Q_all | K_all | V_all]``.

Unlike timm, the attention width (``heads * head_dim``) and the MLP width are explicit, so a
class-wise pruned sub-model (``edgevit.partition``) is a real, smaller VisionTransformer.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevit.models._base import EdgeModel
from edgevit.models._info import ModelInfo, Preprocess, register_model
from edgevit.models.layers import DropPath, trunc_normal_
from edgevit.models.layers.misc import drop_path_rates

PAPER = "DeiT: Training data-efficient image transformers & distillation through attention (arXiv 2012.12877)"


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens with one strided conv (``patch_embed.proj``)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with an explicit per-head width (``head_dim``)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(num_heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        # (B, N, 3*H, d) -> (B, 3*H, N, d): rank 4 throughout, for mobile converters
        qkv = self.qkv(x).reshape(batch, tokens, 3 * self.num_heads, self.head_dim).transpose(1, 2)
        q, k, v = qkv.split(self.num_heads, dim=1)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: attention and MLP, each in a residual branch."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_hidden: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, head_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TokenStem(nn.Module):
    """Image to tokens: patch embedding, class token and position embedding (segment 0)."""

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__()
        self.patch_embed = model.patch_embed
        self.cls_token = model.cls_token
        self.pos_embed = model.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed


class VisionTransformer(EdgeModel):
    """ViT with a class token and learned absolute position embedding (DeiT layout).

    Args:
        image_size: square input size (a multiple of ``patch_size``); fixes ``pos_embed``.
        head_dim: per-head q/k/v width (default ``embed_dim // num_heads``).
        mlp_hidden: MLP width (default ``4 * embed_dim``).
    """

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        head_dim: int | None = None,
        mlp_hidden: int | list[int] | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.image_size = image_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        head_dim = head_dim or embed_dim // num_heads
        hidden = mlp_hidden if mlp_hidden is not None else 4 * embed_dim
        hiddens = hidden if isinstance(hidden, list) else [hidden] * depth
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        rates = drop_path_rates(drop_path_rate, [depth])
        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, head_dim, hiddens[i], rates[i]) for i in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        if self.pos_embed.device.type == "meta":
            return
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0]
        return x if pre_logits else self.head(x)

    def segments(self) -> list[tuple[str, nn.Module]]:
        pieces: list[tuple[str, nn.Module]] = [("patch_embed", TokenStem(self))]
        pieces += [(f"blocks.{i}", block) for i, block in enumerate(self.blocks)]
        pieces.append(("head", _NormHead(self.norm, self.head)))
        return pieces

    def _reparameterize_(self) -> None:
        for i, block in enumerate(self.blocks):
            if isinstance(block.drop_path, DropPath):
                self.blocks[i].drop_path = nn.Identity()

    def checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """DeiT checkpoints are already in this layout; timm's ``fc_norm``-free ViTs too."""
        return state_dict


class _NormHead(nn.Module):
    def __init__(self, norm: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x)[:, 0])


DEIT_PREPROCESS = Preprocess(interpolation="bicubic", crop_pct=0.875, resize_mode="crop")


def _vit_info(name: str, params: int, gmacs: float, paper_params_m: float | None, paper_gmacs: float | None,
              image_size: int = 224, is_test: bool = False, num_classes: int = 1000) -> ModelInfo:
    return ModelInfo(
        name=name, family="vit", paper=PAPER, input_size=(3, image_size, image_size), params=params,
        gmacs=gmacs, fixed_size=True, size_multiple=16, paper_params_m=paper_params_m,
        paper_gmacs=paper_gmacs, preprocess=DEIT_PREPROCESS, is_test=is_test, num_classes=num_classes,
    )


@register_model(_vit_info("vit_tiny_patch16_224", 5_717_416, 1.254, 5.7, 1.3))
def vit_tiny_patch16_224(**kwargs) -> VisionTransformer:
    return VisionTransformer(embed_dim=192, depth=12, num_heads=3, **kwargs)


@register_model(_vit_info("vit_small_patch16_224", 22_050_664, 4.599, 22.0, 4.6))
def vit_small_patch16_224(**kwargs) -> VisionTransformer:
    return VisionTransformer(embed_dim=384, depth=12, num_heads=6, **kwargs)


@register_model(_vit_info("vit_base_patch16_224", 86_567_656, 17.564, 86.0, 17.6))
def vit_base_patch16_224(**kwargs) -> VisionTransformer:
    return VisionTransformer(embed_dim=768, depth=12, num_heads=12, **kwargs)


@register_model(_vit_info("test_vit", 214_218, 0.00369, None, None, image_size=32, is_test=True, num_classes=10))
def test_vit(**kwargs) -> VisionTransformer:
    """A 4-block, 64-wide ViT on 32-pixel input with 8-pixel patches, for tests."""
    kwargs.setdefault("image_size", 32)
    kwargs.setdefault("num_classes", 10)
    return VisionTransformer(patch_size=8, embed_dim=64, depth=4, num_heads=4, **kwargs)
