"""How wide a class-wise pruned ViT may be for a size or memory budget (pure).

One keep ratio ``r`` scales all three pruned widths of ED-ViT's formulation at once: the
residual width ``D``, the per-head q/k/v width ``d`` (every head keeps the same number), and
the total number of FFN neurons across blocks (which the scorer then shares out between
blocks by importance, never fewer than :data:`MIN_MLP_PER_BLOCK` in a block). Parameters then
shrink roughly as ``r**2``. :func:`keep_for_budget` finds the largest ``r`` whose sub-model
meets a parameter budget and a memory budget, and :func:`smallest_shape` is the floor: the
smallest sub-model the pruner will build.

Example:
    >>> full = ViTShape(64, 16, 192, 3, 64, (768,) * 12, 10)
    >>> keep = keep_for_budget(full, group_classes=5, max_params=vit_params(full) // 8)
    >>> keep.embed_dim, keep.head_dim, keep.mlp_total
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgevit.errors import PlanningError
from edgevit.partition.cost import (
    ViTShape,
    activation_bytes_per_value,
    vit_activation_values,
    vit_params,
    weight_bytes,
)

__all__ = ["Keep", "keep_for_budget", "keep_for_ratio", "smallest_shape", "MIN_KEEP_RATIO"]

#: the floor of the keep ratio: below it a sub-model is not considered feasible
MIN_KEEP_RATIO = 1 / 16
MIN_EMBED = 4
MIN_MLP_PER_BLOCK = 4


@dataclass(frozen=True)
class Keep:
    """Widths to keep: residual channels, q/k/v dims per head, FFN neurons in total."""

    ratio: float
    embed_dim: int
    head_dim: int
    mlp_total: int

    def shape(self, full: ViTShape, num_classes: int) -> ViTShape:
        """A ViT shape with these widths (FFN neurons spread evenly; the real split is by score)."""
        depth = full.depth
        base, extra = divmod(self.mlp_total, depth)
        hidden = tuple(base + (i < extra) for i in range(depth))
        return full.with_widths(self.embed_dim, self.head_dim, hidden, num_classes)

    def to_dict(self) -> dict:
        return {"ratio": self.ratio, "embed_dim": self.embed_dim, "head_dim": self.head_dim,
                "mlp_total": self.mlp_total}


def keep_for_ratio(full: ViTShape, ratio: float, align: int = 4) -> Keep:
    """Widths for keep ratio ``ratio`` (0 < ratio <= 1), residual and FFN widths rounded to ``align``."""
    if not 0 < ratio <= 1:
        raise PlanningError(f"keep ratio must be in (0, 1], got {ratio}")
    ratio = max(ratio, MIN_KEEP_RATIO)
    embed = min(full.embed_dim, max(MIN_EMBED, _round_to(ratio * full.embed_dim, align)))
    head = min(full.head_dim, max(1, round(ratio * full.head_dim)))
    mlp_full = sum(full.mlp_hidden)
    mlp = min(mlp_full, max(MIN_MLP_PER_BLOCK * full.depth, _round_to(ratio * mlp_full, align)))
    return Keep(ratio, embed, head, mlp)


def smallest_shape(full: ViTShape, num_classes: int) -> ViTShape:
    """The smallest sub-model the pruner builds (keep ratio :data:`MIN_KEEP_RATIO`)."""
    return keep_for_ratio(full, MIN_KEEP_RATIO).shape(full, num_classes)


def keep_for_budget(full: ViTShape, group_classes: int, max_params: int | None = None,
                    max_memory_bytes: int | None = None, precision: str = "fp32", align: int = 4) -> Keep:
    """The widest keep whose sub-model has at most ``max_params`` parameters and needs at most
    ``max_memory_bytes`` (weights at ``precision`` plus activations).

    Raises:
        PlanningError: even the smallest feasible sub-model exceeds the budget (the numbers are named).
    """

    def fits(keep: Keep) -> bool:
        shape = keep.shape(full, group_classes)
        params = vit_params(shape)
        memory = weight_bytes(params, precision) + vit_activation_values(shape) * activation_bytes_per_value(precision)
        return (max_params is None or params <= max_params) and (max_memory_bytes is None or memory <= max_memory_bytes)

    floor = keep_for_ratio(full, MIN_KEEP_RATIO, align)
    if not fits(floor):
        shape = floor.shape(full, group_classes)
        raise PlanningError(
            f"even the smallest feasible sub-model ({vit_params(shape):,} parameters, keep ratio "
            f"{MIN_KEEP_RATIO:.4g}) exceeds the budget (max_params={max_params}, max_memory_bytes={max_memory_bytes})"
        )
    lo, hi = MIN_KEEP_RATIO, 1.0
    if fits(keep_for_ratio(full, hi, align)):
        return keep_for_ratio(full, hi, align)
    for _ in range(40):  # bisection on the ratio; widths are monotone in it
        mid = (lo + hi) / 2
        if fits(keep_for_ratio(full, mid, align)):
            lo = mid
        else:
            hi = mid
    return keep_for_ratio(full, lo, align)


def _round_to(value: float, align: int) -> int:
    return max(align, int(math.floor(value / align + 0.5)) * align)
