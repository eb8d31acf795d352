"""``coreml-reference``: a numpy executor for Core ML ML Programs, so ``.mlpackage`` files can
be checked numerically where Core ML does not run (Linux CI).

coremltools converts on Linux but predicts only on macOS. This backend reads the package
itself (the spec through coremltools' generated protobuf classes, loaded without importing
coremltools or torch; the weight file with numpy) and runs the ``main`` function op by op.
It is a checker, not a device simulator: each op computes in float32 and stores its result
in the program's declared type, so fp16 programs round and overflow at op boundaries as on
a device, while the accumulation order inside an op is numpy's, not the Neural Engine's.
Ops it does not implement raise :class:`~edgevit.errors.UnsupportedOpError` at load time;
the supported list is :func:`supported_ops` (and docs/coreml_reference.md).

Example:
    >>> from edgevit.runtime import load
    >>> with load("cas_vit_xs-coreml-fp16", backend="coreml-reference") as session:
    ...     logits = session.run({"input": x})["logits"]
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from edgevit.runtime._backend import Backend, BackendModel
from edgevit.runtime.backends.coreml_reference._proto import EXTRA, proto_folder, protobuf_available

__all__ = ["CoreMLReferenceBackend", "ReferenceModel", "supported_ops"]


def supported_ops() -> dict[str, str]:
    """Every MIL op the executor runs, with the iOS versions of the definitions it implements."""
    from edgevit.runtime.backends.coreml_reference.ops import supported_ops as table

    return table()


class ReferenceModel(BackendModel):
    """A loaded ML Program behind the backend interface."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from edgevit.runtime.backends.coreml_reference.package import read_package
        from edgevit.runtime.backends.coreml_reference.program import Program

        self.path = path
        self.threads = None
        self._blas = None
        if threads is not None:
            self._blas = _blas_controller(threads)
            self.threads = threads if self._blas is not None else None
        self.package = read_package(path)
        try:
            self.program = Program(self.package)
        finally:
            self.package.close()  # every weight has been copied out of the file
        self.input_specs = self.program.input_specs()
        self.output_specs = self.program.output_specs()

    def run(self, feeds: dict[str, np.ndarray], profile: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """Run the program; ``profile``, when given, accumulates seconds per op type."""
        limit = self._blas.limit(limits=self.threads, user_api="blas") if self._blas else nullcontext()
        with limit:
            return self.program.run(feeds, profile)

    def close(self) -> None:
        self.program = None


class CoreMLReferenceBackend(Backend):
    name = "coreml-reference"
    suffixes = (".mlpackage",)
    extra = EXTRA
    priority = 90  # the real Core ML runtime, where it exists, comes first

    @classmethod
    def available(cls) -> bool:
        return proto_folder() is not None and protobuf_available()

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"numpy {np.__version__}, coremltools protos {version('coremltools')}"
        except PackageNotFoundError:
            return "unknown"

    def open(self, model_path: Path, threads: int | None) -> ReferenceModel:
        """Load ``model_path`` (an ``.mlpackage``); ``threads`` limits numpy's BLAS threads while it runs."""
        return ReferenceModel(Path(model_path), threads)


def _blas_controller(threads: int):
    """A threadpoolctl controller for numpy's BLAS, or None (with a warning) when it is not installed.

    Limiting matters on a busy machine: two BLAS threads contending for cores shared with other
    work can be many times slower than one.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        warnings.warn(
            f"threads={threads} is not applied: limiting numpy's BLAS threads needs threadpoolctl "
            f"(pip install 'edgevit[{EXTRA}]')",
            stacklevel=4,
        )
        return None
    return ThreadpoolController()
