"""Counting parameters and multiply-accumulates the way the papers do.

MACs count convolutions, linear layers and attention matmuls (what torch's FLOP counter
sees, halved); normalisations, activations and element-wise ops are not counted, which is
the convention of the CAS-ViT, TinyViT, EfficientFormer and DeiT papers.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, image_size: int | tuple[int, int], batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass at ``image_size``, batch 1 by default."""
    from torch.utils.flop_counter import FlopCounterMode

    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    x = torch.zeros(batch, 3, height, width)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2 // batch
