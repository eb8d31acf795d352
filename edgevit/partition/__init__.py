"""Planning how a model is split across edge devices (ED-ViT and pipelines).

The planning core is pure: value objects in, value objects out, no I/O and no torch.

* :mod:`~edgevit.partition.classes`: class groups (balanced, or confusion-aware);
* :mod:`~edgevit.partition.cost`: sizes, MACs, memory and device times of pieces (measured
  here and scaled by a speed, or predicted from a device's profile);
* :mod:`~edgevit.partition.budget`: how wide a pruned ViT may be for a size/memory budget;
* :mod:`~edgevit.partition.placement`: greedy placement of sub-models on devices;
* :mod:`~edgevit.partition.pipeline`: balanced consecutive stages on a chain of devices;
* :mod:`~edgevit.partition.plan`: the plan written to ``plan.json``;
* :mod:`~edgevit.partition.fusion_layout`: the fusion head's input from the sub-models that
  answered (features, then one presence column per sub-model), for the coordinator.

The strategies that *build* a plan (prune, fine-tune, measure, export) need torch; they and
their registry (:data:`edgevit.split.STRATEGIES`) live in :mod:`edgevit.split`, and running a
plan folder on this machine is :func:`edgevit.cluster.local.run_local`. This package imports
nothing above it (errors, the registry, devices and itself). :func:`fusion_input` /
:class:`FusionLayout` (numpy) are imported from :mod:`~edgevit.partition.fusion_layout` on
first use: importing this package imports neither torch nor numpy.

Example:
    >>> from edgevit.partition import balanced_split
    >>> balanced_split(10, 3)
    ((0, 1, 2, 3), (4, 5, 6), (7, 8, 9))
"""

from __future__ import annotations

from typing import Any

from edgevit.partition.classes import balanced_split, confusion_split
from edgevit.partition.cost import PieceCost, ProfiledTime, ViTShape, vit_macs, vit_params
from edgevit.partition.pipeline import PipelinePlan, balance_pipeline
from edgevit.partition.placement import NoFeasibleDevice, Placement, check_devices_fit, place
from edgevit.partition.plan import Plan, PlanPiece

__all__ = [
    "FusionLayout",
    "NoFeasibleDevice",
    "PieceCost",
    "PipelinePlan",
    "Placement",
    "Plan",
    "PlanPiece",
    "ProfiledTime",
    "ViTShape",
    "balance_pipeline",
    "balanced_split",
    "check_devices_fit",
    "confusion_split",
    "fusion_input",
    "place",
    "vit_macs",
    "vit_params",
]


def __getattr__(name: str) -> Any:
    if name in ("fusion_input", "FusionLayout"):
        from edgevit.partition import fusion_layout as module

        return getattr(module, name)
    raise AttributeError(f"module 'edgevit.partition' has no attribute {name!r}")
