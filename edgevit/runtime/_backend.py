"""The interface every runtime backend implements, and the backend registry.

A backend is a small class found by name; its heavy import happens in ``open``::

    @BACKENDS.register("onnxruntime")   # or lazily: BACKENDS.register(name, "module:Class")
    class OnnxRuntimeBackend(Backend):
        name = "onnxruntime"
        suffixes = (".onnx",)
        extra = "onnxruntime"          # the pip extra that provides it

        def open(self, model_path, threads): ...  -> BackendModel

A :class:`BackendModel` is one loaded model: ``input_specs``, ``output_specs`` and
``run(feeds) -> outputs`` on numpy arrays. Sessions (edgevit.runtime.session) add
validation, preprocessing and prediction on top.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgevit.artifact import TensorSpec
from edgevit.registry import Registry


class BackendModel(ABC):
    """One model loaded by a backend."""

    input_specs: tuple[TensorSpec, ...]
    output_specs: tuple[TensorSpec, ...]

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on already-validated inputs; return every output by name."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources."""


class Backend(ABC):
    """A way of running model files of some kinds on this machine."""

    name: ClassVar[str]
    #: model-file suffixes this backend can open (".onnx", ".tflite", ".mlpackage")
    suffixes: ClassVar[tuple[str, ...]]
    #: pip extra that installs what it needs
    extra: ClassVar[str]
    #: lower is preferred by backend="auto" among backends that can open a file
    priority: ClassVar[int] = 50
    #: whether running needs torch installed (only a runtime that links libtorch: ExecuTorch's pybindings)
    needs_torch: ClassVar[bool] = False
    #: keyword options ``open`` takes beyond ``threads`` (``runtime.load(..., spin=True)``), with what each does
    options: ClassVar[dict[str, str]] = {}

    @classmethod
    def available(cls) -> bool:
        """Whether the backend's dependencies import on this machine (cheap check)."""
        return True

    #: the installed distribution whose version :meth:`version` reports (None: "unknown")
    distribution: ClassVar[str | None] = None

    @classmethod
    def version(cls) -> str:
        """The version of :attr:`distribution`, or "unknown" when it is not installed."""
        from importlib.metadata import PackageNotFoundError, version

        if cls.distribution is None:
            return "unknown"
        try:
            return version(cls.distribution)
        except PackageNotFoundError:
            return "unknown"

    @abstractmethod
    def open(self, model_path: Path, threads: int | None, **options: Any) -> BackendModel:
        """Load ``model_path``; ``threads`` None means the backend's default; ``options`` are among :attr:`options`."""


BACKENDS: Registry[type[Backend]] = Registry("runtime backend")
