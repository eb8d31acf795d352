"""Small layers the families share (our own versions of what timm provides)."""

from __future__ import annotations

import math

import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth per sample; the identity in eval mode and after reparameterize()."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """Truncated normal init in [-2std, 2std] (the ViT convention)."""
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


def drop_path_rates(drop_path_rate: float, depths: list[int] | tuple[int, ...]) -> list[float]:
    """Linearly increasing drop-path rates over all blocks."""
    total = sum(depths)
    if total <= 1:
        return [drop_path_rate] * total
    return [drop_path_rate * i / (total - 1) for i in range(total)]


def lecun_uniform_(tensor: torch.Tensor) -> torch.Tensor:
    fan_in = tensor.shape[1] * (tensor[0][0].numel() if tensor.ndim > 2 else 1)
    bound = math.sqrt(3.0 / fan_in)
    return nn.init.uniform_(tensor, -bound, bound)
