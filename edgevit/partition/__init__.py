"""Planning how a model is split across edge devices (ED-ViT and pipelines).

The planning core is pure: value objects in, value objects out, no I/O and no torch.

* :mod:`~edgevit.partition.classes`: class groups (balanced, or confusion-aware);
* :mod:`~edgevit.partition.cost`: sizes, MACs, memory and device times of pieces;
* :mod:`~edgevit.partition.budget`: how wide a pruned ViT may be for a size/memory budget;
* :mod:`~edgevit.partition.placement`: greedy placement of sub-models on devices;
* :mod:`~edgevit.partition.pipeline`: balanced consecutive stages on a chain of devices;
* :mod:`~edgevit.partition.plan`: the plan written to ``plan.json``;
* :mod:`~edgevit.partition.fusion_layout`: the fusion head's input from the sub-models that
  answered (features, then one presence column per sub-model), for the coordinator.

The strategies that *build* a plan (prune, fine-tune, measure, export) need torch and live
in :mod:`edgevit.split`; they are registered here by name, lazily, so listing them imports
nothing heavy. :func:`run_local` (running a plan folder on this machine, one process per
piece, through the torch-free :mod:`edgevit.runtime`) is re-exported from
:mod:`edgevit.cluster.local` on first use, and :func:`fusion_input` / :class:`FusionLayout`
(numpy) from :mod:`~edgevit.partition.fusion_layout`: importing this package imports
neither torch nor numpy.

Example:
    >>> from edgevit.partition import STRATEGIES, balanced_split, run_local
    >>> STRATEGIES.names()
    ['classwise', 'pipeline']
    >>> result = run_local("plan/", images)
"""

from __future__ import annotations

from typing import Any

from edgevit.partition.classes import balanced_split, confusion_split
from edgevit.partition.cost import PieceCost, ViTShape, vit_macs, vit_params
from edgevit.partition.pipeline import PipelinePlan, balance_pipeline
from edgevit.partition.placement import NoFeasibleDevice, Placement, check_devices_fit, place
from edgevit.partition.plan import Plan, PlanPiece
from edgevit.registry import Registry

__all__ = [
    "STRATEGIES",
    "FusionLayout",
    "NoFeasibleDevice",
    "PieceCost",
    "PipelinePlan",
    "Placement",
    "Plan",
    "PlanPiece",
    "ViTShape",
    "balance_pipeline",
    "balanced_split",
    "check_devices_fit",
    "confusion_split",
    "fusion_input",
    "place",
    "run_local",
    "vit_macs",
    "vit_params",
]

#: partition strategies by name; each is a class with ``build(request) -> BuiltPlan`` (edgevit.split)
STRATEGIES: Registry = Registry("partition strategy")
STRATEGIES.register("classwise", "edgevit.split.classwise:ClasswiseStrategy")
STRATEGIES.register("pipeline", "edgevit.split.pipeline:PipelineStrategy")


def __getattr__(name: str) -> Any:
    if name == "run_local":
        from edgevit.cluster.local import run_local

        return run_local
    if name in ("fusion_input", "FusionLayout"):
        from edgevit.partition import fusion_layout as module

        return getattr(module, name)
    raise AttributeError(f"module 'edgevit.partition' has no attribute {name!r}")
