"""The edge contract that every zoo model implements.

Every model is an :class:`EdgeModel`:

* ``forward_features(x)``: the image tensor to the pre-head feature map or tokens;
* ``forward_head(features, pre_logits=False)``: features to logits (or to the pooled
  feature vector with ``pre_logits=True``, which the ED-ViT fusion head consumes);
* ``reparameterize()``: a *new* module, the inference graph: BatchNorm folded into its
  neighbouring conv/linear where exact, distillation heads merged, attention-bias tables
  gathered once into constants, no dropout or drop-path. Outputs equal the original's.
  Every export starts from this graph.
* ``split_points()``: names of the places where the network can be cut into consecutive
  pieces. ``segments()`` gives the pieces themselves, so that running them in order equals
  ``forward``; :meth:`EdgeModel.stage` builds a module for a consecutive range.

A registry-driven test (tests/models/test_contract.py) checks all of this for every model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EdgeModel(nn.Module):
    """Base class of every zoo model; see the module docstring for the contract."""

    num_classes: int
    #: set on the module that ``reparameterize()`` returns
    is_reparameterized: bool = False

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- segments -------------------------------------------------------------------------
    def segments(self) -> list[tuple[str, nn.Module]]:
        """Consecutive (name, module) pieces whose composition equals ``forward``.

        The name of a piece is the split point *after* it; the last piece ends in logits.
        """
        raise NotImplementedError

    def split_points(self) -> list[str]:
        """Names of the cut points, in order (every segment boundary but the output)."""
        return [name for name, _ in self.segments()[:-1]]

    def stage(self, start: str | None, end: str | None) -> nn.Module:
        """A module running the network from split point ``start`` (None: the input) up to
        and including split point ``end`` (None: the logits).

        Example:
            >>> first = model.stage(None, "stage1")
            >>> rest = model.stage("stage1", None)
            >>> torch.allclose(rest(first(x)), model(x))
        """
        from edgevit.errors import InvalidArgumentError

        names = [name for name, _ in self.segments()]
        points = names[:-1]
        for point in (start, end):
            if point is not None and point not in points:
                raise InvalidArgumentError(
                    f"{point!r} is not a split point of {type(self).__name__}; valid: {', '.join(points)}"
                )
        lo = 0 if start is None else names.index(start) + 1
        hi = len(names) if end is None else names.index(end) + 1
        if lo >= hi:
            raise InvalidArgumentError(f"empty stage: {start!r} is not before {end!r}")
        return nn.Sequential(*[module for _, module in self.segments()[lo:hi]])

    # -- reparameterization ----------------------------------------------------------------
    def reparameterize(self) -> EdgeModel:
        """Return the inference graph (a deep copy; ``self`` is left unchanged)."""
        model = copy.deepcopy(self).eval()
        model._reparameterize_()
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
        model.is_reparameterized = True
        return model.eval()

    def _reparameterize_(self) -> None:
        """Rewrite this (already copied) module in place into its inference graph."""
        raise NotImplementedError
