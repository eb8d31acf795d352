"""LeViT-style attention-bias index tables (EfficientFormer V1/V2, TinyViT).

The learnable ``attention_biases`` has shape ``[heads, num_offsets]``; the bias added to the
attention logits is ``attention_biases[:, idx]`` with ``idx`` of shape ``[Nq, Nk]``. The
official code builds ``idx`` by numbering each distinct absolute offset ``(|dy|, |dx|)`` in
order of first appearance (query row-major outer loop, key inner loop). For the grids used
here this equals the closed forms below, which is what we compute; checkpoints that carry a
legacy ``attention_bias_idxs`` are checked against these tables on load.
"""

from __future__ import annotations

import torch


def attention_bias_index(height: int, width: int | None = None) -> torch.Tensor:
    """Index table ``[H*W, H*W]`` for attention within an ``H x W`` grid.

    Returns ``idx[i, j] = |y_i - y_j| * W + |x_i - x_j|`` (int64), the official
    first-appearance numbering for a full grid.
    """
    width = height if width is None else width
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = (ys[:, None] - ys[None, :]).abs()
    dx = (xs[:, None] - xs[None, :]).abs()
    return (dy * width + dx).long()


def downsample_attention_bias_index(resolution: int, resolution_q: int | None = None) -> torch.Tensor:
    """Index table ``[Nq, Nk]`` for EfficientFormerV2's downsampling attention.

    Queries lie on the ``ceil(r/2)`` grid, placed at ``(a*s, b*s)`` with
    ``s = ceil(r / ceil(r/2))``; keys on the full ``r`` grid. ``idx = |a*s - y|*r + |b*s - x|``.
    """
    r = resolution
    rq = -(-r // 2) if resolution_q is None else resolution_q
    step = -(-r // rq)
    qa, qb = torch.meshgrid(torch.arange(rq), torch.arange(rq), indexing="ij")
    ky, kx = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
    qa, qb = qa.flatten() * step, qb.flatten() * step
    ky, kx = ky.flatten(), kx.flatten()
    return ((qa[:, None] - ky[None, :]).abs() * r + (qb[:, None] - kx[None, :]).abs()).long()


def first_appearance_index(points_q: list[tuple[int, int]], points_k: list[tuple[int, int]]) -> torch.Tensor:
    """The official construction, used by tests to check the closed forms."""
    offsets: dict[tuple[int, int], int] = {}
    rows = []
    for qy, qx in points_q:
        row = []
        for ky, kx in points_k:
            off = (abs(qy - ky), abs(qx - kx))
            if off not in offsets:
                offsets[off] = len(offsets)
            row.append(offsets[off])
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)
