"""The fusion head's input, built from the sub-models that answered (pure: numpy, no torch).

A class-wise plan's fusion head takes one tensor ``[N, F + K]``: the K sub-models' feature
vectors concatenated in plan order (``F`` = the sum of their dims), then K *presence
columns*, 1.0 where that sub-model answered and 0.0 where it is missing. A missing
sub-model's slice is zeros; the head multiplies every slice by its presence column itself,
so what is in a missing slice does not matter. One head thus answers for every subset of
present sub-models ("degraded answers"), as it was trained to (``SplitOptions.fusion_drop``).

A plan written before presence columns existed has a head that takes the features only
(``[N, F]``); it answers only when every sub-model did. :class:`FusionLayout` tells the two
apart from ``plan.fusion.info`` (``presence_columns``, ``feature_dims``).

Example:
    >>> layout = FusionLayout.from_plan(plan)
    >>> x = fusion_input([features0, None, features2], layout.feature_dims, layout.presence)
    >>> x.shape                                     # sub1 is down: its slice zeros, its presence 0
    (N, d0 + d1 + d2 + 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgevit.errors import ArtifactError, InvalidArgumentError

if TYPE_CHECKING:
    from edgevit.partition.plan import Plan

__all__ = ["FusionLayout", "fusion_input"]


@dataclass(frozen=True)
class FusionLayout:
    """What a plan's fusion head takes.

    Attributes:
        feature_dims: each sub-model's feature size, in plan order (None: not recorded, a
            plan older than ``feature_dim`` in its pieces' info).
        presence: whether the head takes the K presence columns after the features; False
            for plans written before them, whose head needs every sub-model.
    """

    feature_dims: tuple[int, ...] | None
    presence: bool

    @property
    def width(self) -> int | None:
        """The head's input width, ``F + K`` (or ``F`` without presence columns)."""
        if self.feature_dims is None:
            return None
        return sum(self.feature_dims) + (len(self.feature_dims) if self.presence else 0)

    @classmethod
    def from_plan(cls, plan: Plan) -> FusionLayout:
        """Read the layout from ``plan.fusion.info``; plans without ``presence_columns`` are features only.

        Raises:
            ArtifactError: ``presence_columns`` or ``feature_dims`` disagree with the plan's pieces.
        """
        if plan.fusion is None:
            raise ArtifactError(f"a {plan.strategy} plan has no fusion head, so it has no fusion input")
        info, k = plan.fusion.info, len(plan.pieces)
        columns = info.get("presence_columns", 0)
        if columns not in (0, k) or isinstance(columns, bool):
            raise ArtifactError(f"plan.json: fusion.info.presence_columns is {columns!r}, but the plan has {k} "
                                f"sub-models (expected {k}, or no such key for a head that takes features only)")
        dims = info.get("feature_dims")
        if dims is None and all("feature_dim" in p.info for p in plan.pieces):
            dims = [p.info["feature_dim"] for p in plan.pieces]
        if dims is not None and (len(dims) != k or not all(_is_dim(d) for d in dims)):
            raise ArtifactError(f"plan.json: fusion.info.feature_dims is {dims!r}; expected {k} positive integers, "
                                "one per sub-model in plan order")
        if columns and dims is None:
            raise ArtifactError("plan.json: the fusion head has presence columns but fusion.info.feature_dims is "
                                "missing; rewrite the plan with `edgevit split`")
        return cls(tuple(int(d) for d in dims) if dims is not None else None, bool(columns))


def fusion_input(features: Sequence[np.ndarray | None], feature_dims: Sequence[int], presence: bool) -> np.ndarray:
    """The fusion head's input ``[N, F + K]`` (``[N, F]`` without ``presence``) as float32.

    Args:
        features: one ``[N, d_i]`` array per sub-model, in plan order; None where that
            sub-model did not answer (its slice becomes zeros, its presence column 0.0).
        feature_dims: ``d_0 ... d_(K-1)``, as in ``FusionLayout.feature_dims``.
        presence: whether the head takes presence columns (``FusionLayout.presence``);
            without them every sub-model must have answered.

    Raises:
        InvalidArgumentError: a count, dim or batch size that does not match, no sub-model
            at all, or a missing one for a head without presence columns.

    Example:
        >>> fusion_input([np.ones((1, 2)), None], [2, 3], presence=True)
        array([[1., 1., 0., 0., 0., 1., 0.]], dtype=float32)
    """
    if len(features) != len(feature_dims):
        raise InvalidArgumentError(f"got {len(features)} feature arrays for {len(feature_dims)} sub-models "
                                   f"(feature_dims {list(feature_dims)}); pass one per sub-model, None where missing")
    bad = [d for d in feature_dims if not _is_dim(d)]
    if bad:
        raise InvalidArgumentError(f"feature_dims must be positive integers, got {list(feature_dims)}")
    present = [f is not None for f in features]
    if not any(present):
        raise InvalidArgumentError(f"no sub-model answered (all {len(features)} missing): the fusion head needs "
                                   "at least one")
    if not presence and not all(present):
        missing = [i for i, p in enumerate(present) if not p]
        raise InvalidArgumentError(f"sub-model(s) {missing} missing, but this plan's fusion head takes features "
                                   "only (no presence columns: written before degraded answers); it needs every "
                                   "sub-model, or rewrite the plan with `edgevit split`")
    batch = _batch_size(features, feature_dims)
    slices = [np.zeros((batch, d), np.float32) if f is None else np.asarray(f, np.float32)
              for f, d in zip(features, feature_dims)]
    if presence:
        slices.append(np.repeat(np.asarray([present], np.float32), batch, axis=0))
    return np.ascontiguousarray(np.concatenate(slices, axis=1), dtype=np.float32)


def _batch_size(features: Sequence[np.ndarray | None], feature_dims: Sequence[int]) -> int:
    batch = None
    for i, (f, d) in enumerate(zip(features, feature_dims)):
        if f is None:
            continue
        shape = tuple(np.shape(f))
        if len(shape) != 2 or shape[1] != d:
            raise InvalidArgumentError(f"features of sub-model {i} have shape {list(shape)}; expected [N, {d}] "
                                       f"(feature_dims {list(feature_dims)})")
        if batch is not None and shape[0] != batch:
            raise InvalidArgumentError(f"features of sub-model {i} are for {shape[0]} images, the others for {batch}; "
                                       "every sub-model must answer the same batch")
        batch = shape[0]
    return batch


def _is_dim(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0
