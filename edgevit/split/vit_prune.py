"""Class-wise structured pruning of a ViT into a real, smaller ``VisionTransformer``.

Given importance scores (:mod:`edgevit.split.scoring`) and the widths to keep
(:class:`edgevit.partition.budget.Keep`), :func:`prune_vit` builds a new
``VisionTransformer`` with smaller tensors and copies the kept slices into it:

* residual channels: the same kept channels in the patch embedding, class token, position
  embedding, every LayerNorm, the input columns of qkv and fc1, the output rows of proj and
  fc2, and the head's input columns (one coupled group);
* q/k/v: the same number of dims in every head (heads stay equal), each head and layer
  keeping its own best dims; q is rescaled by ``sqrt(d'/d)`` so that the new softmax scale
  ``d'**-0.5`` leaves the kept part of every attention logit unchanged;
* FFN neurons: ranked across all blocks at once (the scores are all in nats of KL, so they
  compare across layers), each block keeping at least ``MIN_MLP_PER_BLOCK``;
* the head keeps only the rows of the group's classes.

Example:
    >>> scores = vit_scores(model, group_images, classes=[3, 4, 5])
    >>> sub = prune_vit(model, scores, Keep(0.5, 96, 32, 4608), classes=[3, 4, 5])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgevit.models.vit import VisionTransformer
from edgevit.partition.budget import MIN_MLP_PER_BLOCK, Keep
from edgevit.partition.cost import ViTShape
from edgevit.split.scoring import VitScores

__all__ = ["allocate_ffn", "prune_vit", "vit_shape"]


def vit_shape(model: VisionTransformer) -> ViTShape:
    """The widths of a built ViT."""
    block = model.blocks[0]
    head = model.head
    return ViTShape(
        image_size=model.image_size,
        patch_size=model.patch_size,
        embed_dim=model.embed_dim,
        num_heads=block.attn.num_heads,
        head_dim=block.attn.head_dim,
        mlp_hidden=tuple(b.mlp.fc1.out_features for b in model.blocks),
        num_classes=head.out_features if isinstance(head, nn.Linear) else 0,
        in_chans=model.patch_embed.proj.in_channels,
    )


def allocate_ffn(scores: list[torch.Tensor], total: int, floor: int = MIN_MLP_PER_BLOCK) -> list[torch.Tensor]:
    """Indices of the FFN neurons to keep per block: the ``total`` best across blocks, at least
    ``floor`` in each block (sorted ascending)."""
    keep: list[set[int]] = []
    for s in scores:
        keep.append(set(torch.topk(s, min(floor, s.numel())).indices.tolist()))
    remaining = total - sum(len(k) for k in keep)
    candidates = [(float(s[j]), i, j) for i, s in enumerate(scores) for j in range(s.numel()) if j not in keep[i]]
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    for _, i, j in candidates[: max(remaining, 0)]:
        keep[i].add(j)
    return [torch.tensor(sorted(k), dtype=torch.long) for k in keep]


def _top(scores: torch.Tensor, count: int) -> torch.Tensor:
    return torch.topk(scores, min(count, scores.numel())).indices.sort().values


@torch.no_grad()
def prune_vit(model: VisionTransformer, scores: VitScores, keep: Keep, classes: list[int] | None = None) -> VisionTransformer:
    """A new, smaller ViT keeping the best-scored units (see the module docstring).

    Args:
        classes: head rows to keep (indices into ``model``'s outputs); None keeps all.
    """
    shape = vit_shape(model)
    res = _top(scores.residual, keep.embed_dim)
    head_dim = min(keep.head_dim, shape.head_dim)
    ffn = allocate_ffn(scores.ffn, min(keep.mlp_total, sum(shape.mlp_hidden)))
    rows = torch.tensor(classes if classes is not None else range(shape.num_classes), dtype=torch.long)
    sub = VisionTransformer(
        image_size=shape.image_size, patch_size=shape.patch_size, in_chans=shape.in_chans,
        num_classes=len(rows), embed_dim=len(res), depth=shape.depth, num_heads=shape.num_heads,
        head_dim=head_dim, mlp_hidden=[len(f) for f in ffn],
    )
    sub.patch_embed.proj.weight.copy_(model.patch_embed.proj.weight[res])
    sub.patch_embed.proj.bias.copy_(model.patch_embed.proj.bias[res])
    sub.cls_token.copy_(model.cls_token[..., res])
    sub.pos_embed.copy_(model.pos_embed[..., res])
    q_scale = math.sqrt(head_dim / shape.head_dim)
    for i, (old, new) in enumerate(zip(model.blocks, sub.blocks)):
        _copy_norm(new.norm1, old.norm1, res)
        _copy_norm(new.norm2, old.norm2, res)
        dims = torch.stack([_top(scores.head_dims[i, h], head_dim) for h in range(shape.num_heads)])
        attn_idx = (torch.arange(shape.num_heads)[:, None] * shape.head_dim + dims).flatten()
        width = shape.attn_dim
        qkv_idx = torch.cat([attn_idx + part * width for part in range(3)])
        new.attn.qkv.weight.copy_(old.attn.qkv.weight[qkv_idx][:, res])
        new.attn.qkv.bias.copy_(old.attn.qkv.bias[qkv_idx])
        q_rows = slice(0, len(attn_idx))
        new.attn.qkv.weight[q_rows] *= q_scale
        new.attn.qkv.bias[q_rows] *= q_scale
        new.attn.proj.weight.copy_(old.attn.proj.weight[res][:, attn_idx])
        new.attn.proj.bias.copy_(old.attn.proj.bias[res])
        new.mlp.fc1.weight.copy_(old.mlp.fc1.weight[ffn[i]][:, res])
        new.mlp.fc1.bias.copy_(old.mlp.fc1.bias[ffn[i]])
        new.mlp.fc2.weight.copy_(old.mlp.fc2.weight[res][:, ffn[i]])
        new.mlp.fc2.bias.copy_(old.mlp.fc2.bias[res])
    _copy_norm(sub.norm, model.norm, res)
    sub.head.weight.copy_(model.head.weight[rows][:, res])
    sub.head.bias.copy_(model.head.bias[rows])
    sub.model_name = getattr(model, "model_name", "vit")
    return sub.eval()


def _copy_norm(new: nn.LayerNorm, old: nn.LayerNorm, index: torch.Tensor) -> None:
    new.weight.copy_(old.weight[index])
    new.bias.copy_(old.bias[index])
