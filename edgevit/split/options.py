"""What a split is asked to do: :class:`SplitOptions`, the one options object that both
``edgevit.split.split(...)`` and ``edgevit split ...`` take."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgevit.errors import InvalidArgumentError

GROUPINGS = ("balanced", "confusion")
TIMINGS = ("runtime", "pytorch")


@dataclass(frozen=True)
class SplitOptions:
    """Options of a split.

    Attributes:
        strategy: ``"classwise"`` (ED-ViT) or ``"pipeline"`` (``edgevit.split.STRATEGIES``).
        target / precision: how every piece is exported (``edgevit.export``).
        grouping: class split, ``"balanced"`` (contiguous, equal sizes) or ``"confusion"``
            (classes the full model confuses share a sub-model).
        reduction: each sub-model has at most ``1 / reduction`` of the full model's parameters
            (before any tightening for device memory).
        prune_steps: prune -> recover rounds to reach the target widths (the keep ratio falls
            geometrically); each round re-scores the units on the current sub-model.
        recover_epochs: distillation epochs after each prune round.
        lr / batch_size: recovery fine-tuning.
        distill_temperature / distill_alpha: the distillation loss (see ``edgevit.split.recover``).
        score_images: group images used to score units (KL estimate).
        fusion_hidden / fusion_epochs: the fusion MLP.
        fusion_drop: while the fusion head trains, each sub-model's features are missing
            (zeroed, presence column 0) with this probability, per sample, never all at once,
            so the head still answers when devices are down; 0 trains on complete inputs only.
        threads / measure_rounds: timing of the pieces on this machine.
        timing: ``"runtime"`` (default): once exported, the pieces and the unsplit model are
            timed with ``edgevit.runtime`` in a fresh process, as a device runs them, and the
            plan's latencies use those times; ``"pytorch"``: PyTorch eager in the planning
            process only (also the fallback where no fast runtime runs the target here).
        max_tighten: how many times a sub-model that fits no device may be pruned harder.
        verify: check the exported plan against PyTorch on validation images.
        seed: for every random choice.
    """

    strategy: str = "classwise"
    target: str = "onnx"
    precision: str = "fp32"
    grouping: str = "balanced"
    reduction: float = 8.0
    prune_steps: int = 2
    recover_epochs: int = 6
    lr: float = 5e-4
    batch_size: int = 32
    distill_temperature: float = 2.0
    distill_alpha: float = 0.7
    score_images: int = 256
    fusion_hidden: int = 256
    fusion_epochs: int = 60
    fusion_drop: float = 0.25
    threads: int = 1
    measure_rounds: int = 15
    timing: str = "runtime"
    max_tighten: int = 4
    verify: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.grouping not in GROUPINGS:
            raise InvalidArgumentError(f"grouping must be one of {', '.join(GROUPINGS)}, got {self.grouping!r}")
        if self.timing not in TIMINGS:
            raise InvalidArgumentError(f"timing must be one of {', '.join(TIMINGS)}, got {self.timing!r}")
        if not self.reduction >= 1:
            raise InvalidArgumentError(f"reduction must be >= 1 (1 = no pruning), got {self.reduction}")
        if isinstance(self.fusion_drop, bool) or not isinstance(self.fusion_drop, (int, float)) \
                or not 0 <= self.fusion_drop < 1:
            raise InvalidArgumentError(f"fusion_drop must be at least 0 and below 1 (the probability that a "
                                       f"sub-model's features are dropped while the fusion head trains; 0: never), "
                                       f"got {self.fusion_drop!r}")
        for name in ("prune_steps", "recover_epochs", "batch_size", "score_images", "fusion_hidden",
                     "fusion_epochs", "threads", "measure_rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "recover_epochs" else 1):
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")

    def replace(self, **changes: Any) -> SplitOptions:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
