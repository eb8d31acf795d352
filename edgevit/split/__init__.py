"""The torch side of splitting a model across devices (ED-ViT and pipelines).

* :func:`split`: model + data + devices -> a plan folder (exported pieces and ``plan.json``);
* strategies: :class:`~edgevit.split.classwise.ClasswiseStrategy` (class-wise pruned
  sub-models and a fusion MLP) and :class:`~edgevit.split.pipeline.PipelineStrategy`
  (consecutive stages), registered in :data:`edgevit.partition.STRATEGIES`;
* :func:`run_local` / :func:`run_in_process`: run a plan folder on this machine through the
  torch-free runtime (these two import no torch).

Importing this package imports nothing heavy; the planning itself is in
:mod:`edgevit.partition` (pure).

Example:
    >>> from edgevit.split import split, SplitOptions
    >>> plan = split("vit_tiny_patch16_224", "digits", "devices.toml", "plan/",
    ...              weights="vit_tiny_digits.safetensors", target="onnx")
"""

from __future__ import annotations

from typing import Any

__all__ = ["SplitOptions", "run_in_process", "run_local", "split"]

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
