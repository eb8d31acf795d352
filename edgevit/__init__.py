"""edgevit: efficient vision transformers on edge devices.

``import edgevit`` is cheap: it imports no torch and no converter. The heavy parts are
imported on first use::

    import edgevit
    model = edgevit.create_model("cas_vit_xs")            # imports torch
    artifact = edgevit.export("cas_vit_xs", target="onnx")  # imports the converter

The torch-free device side lives in :mod:`edgevit.runtime`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "model_info", "export"]

_LAZY = {
    "create_model": "edgevit.models:create_model",
    "list_models": "edgevit.models:list_models",
    "model_info": "edgevit.models:model_info",
    "export": "edgevit.export:export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'edgevit' has no attribute {name!r}")
