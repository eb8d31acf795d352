"""Exact BatchNorm folding and head merging, used by ``reparameterize()``.

Each function is given float modules in eval semantics (BN running statistics) and returns
a new module computing the same function; inputs are left unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


def _bn_scale_shift(bn: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) such that ``bn(x) == x * scale + shift`` per channel, in eval mode."""
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``bn(conv(x))`` as one conv with bias."""
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
    )
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused.bias.copy_(bias * scale + shift)
    return fused


@torch.no_grad()
def fuse_linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d) -> nn.Linear:
    """``bn(linear(x))`` as one linear with bias."""
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True)
    fused.weight.copy_(linear.weight * scale[:, None])
    bias = linear.bias if linear.bias is not None else torch.zeros_like(shift)
    fused.bias.copy_(bias * scale + shift)
    return fused


@torch.no_grad()
def fuse_bn_into_following_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """``conv(bn(x))`` as one conv, exact only for an unpadded conv (1x1, padding 0).

    Used for pre-norm BN feeding a 1x1 conv (CAS-ViT ``norm1 -> attn.qkv``).
    """
    padding = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,)
    if conv.padding != "valid" and any(p != 0 for p in padding):
        raise ValueError("folding BN into a following conv is exact only without padding")
    if conv.groups != 1:
        raise ValueError("folding BN into a following grouped conv is not supported")
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, 1, bias=True
    )
    fused.weight.copy_(conv.weight * scale.reshape(1, -1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    fused.bias.copy_(bias + (conv.weight.sum(dim=(2, 3)) @ shift))
    return fused


@torch.no_grad()
def fuse_bn_into_following_linear(bn: nn.BatchNorm2d | nn.BatchNorm1d, linear: nn.Linear) -> nn.Linear:
    """``linear(bn(x))`` (per-feature BN, e.g. BN before global pooling) as one linear."""
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True)
    fused.weight.copy_(linear.weight * scale[None, :])
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
    fused.bias.copy_(bias + linear.weight @ shift)
    return fused


@torch.no_grad()
def merge_heads(head: nn.Linear, dist_head: nn.Linear) -> nn.Linear:
    """``(head(x) + dist_head(x)) / 2`` as one linear (exact)."""
    merged = nn.Linear(head.in_features, head.out_features, bias=True)
    merged.weight.copy_((head.weight + dist_head.weight) / 2)
    merged.bias.copy_((head.bias + dist_head.bias) / 2)
    return merged
