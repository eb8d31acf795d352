"""The torch side of splitting a model across devices (ED-ViT and pipelines).

* :func:`split`: model + data + devices -> a plan folder (exported pieces and ``plan.json``);
* strategies: :class:`~edgevit.split.classwise.ClasswiseStrategy` (class-wise pruned
  sub-models and a fusion MLP) and :class:`~edgevit.split.pipeline.PipelineStrategy`
  (consecutive stages), registered by name in :data:`STRATEGIES` (lazily: listing them
  imports no torch);
* :func:`run_local` / :func:`run_in_process`: run a plan folder on this machine through the
  torch-free runtime (these two import no torch).

Importing this package imports nothing heavy; the planning itself is in
:mod:`edgevit.partition` (pure).

Example:
    >>> from edgevit.split import STRATEGIES, split, SplitOptions
    >>> STRATEGIES.names()
    ['classwise', 'pipeline']
    >>> plan = split("vit_tiny_patch16_224", "digits", "devices.toml", "plan/",
    ...              weights="vit_tiny_digits.safetensors", target="onnx")
"""

from __future__ import annotations

from typing import Any

from edgevit.registry import Registry

__all__ = ["STRATEGIES", "SplitOptions", "run_in_process", "run_local", "split"]

#: partition strategies by name; each is a class with ``build(request) -> BuiltPlan``
#: (:mod:`edgevit.split.request`)
STRATEGIES: Registry = Registry("partition strategy")
STRATEGIES.register("classwise", "edgevit.split.classwise:ClasswiseStrategy")
STRATEGIES.register("pipeline", "edgevit.split.pipeline:PipelineStrategy")

_LAZY = {
    "split": "edgevit.split.api:split",
    "SplitOptions": "edgevit.split.options:SplitOptions",
    "run_local": "edgevit.cluster.local:run_local",
    "run_in_process": "edgevit.cluster.local:run_in_process",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'edgevit.split' has no attribute {name!r}")
