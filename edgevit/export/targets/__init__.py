"""Export targets, one file each, registered lazily so that listing them imports no converter.

Example:
    >>> from edgevit.export.targets import TARGETS
    >>> TARGETS.names()
    ['coreml', 'executorch', 'onnx', 'tflite']
    >>> target = TARGETS.get("onnx")()
"""

from __future__ import annotations

from edgevit.export.targets.base import INPUT_NAME, OUTPUT_NAME, Target
from edgevit.registry import Registry

TARGETS: Registry[type[Target]] = Registry("export target")
TARGETS.register("onnx", "edgevit.export.targets.onnx:OnnxTarget")
TARGETS.register("tflite", "edgevit.export.targets.tflite:TfliteTarget")
TARGETS.register("coreml", "edgevit.export.targets.coreml:CoreMLTarget")
TARGETS.register("executorch", "edgevit.export.targets.executorch:ExecuTorchTarget")

__all__ = ["TARGETS", "Target", "INPUT_NAME", "OUTPUT_NAME", "get_target"]


def get_target(name: str) -> Target:
    """An instance of the target called ``name``; an unknown name lists the valid ones."""
    return TARGETS.get(name)()
