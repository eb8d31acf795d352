"""ExecuTorch on the CPU with its XNNPACK backend: runs ``.pte`` artifacts.

Uses the Python runtime of the ``executorch`` wheel (``executorch.runtime``), the C++ runtime
with the XNNPACK backend behind a pybind module. **That module links libtorch and imports
torch**, and takes and returns torch tensors: this backend is the one in ``edgevit.runtime``
that needs torch on the machine it runs on (``pip install 'edgevit[executorch]'`` brings it).
Importing this module and listing backends import nothing heavy; torch is loaded when a
``.pte`` is opened. A device without Python runs the same file with ExecuTorch's C++ runtime
(``libexecutorch`` with the XNNPACK backend linked in), which needs no torch.

``threads`` sizes ExecuTorch's thread pool, which XNNPACK runs on. The pool is one per
process: a session asking for another size resizes it before each of its runs.

Inputs and outputs are named ``input_0``..., ``output_0``... (a ``.pte`` stores no names);
a session maps them to the manifest's by position.

Example:
    >>> from edgevit.runtime import load
    >>> session = load("model.pte", backend="executorch", threads=2)
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.artifact import TensorSpec
from edgevit.errors import ArtifactError, require
from edgevit.formats.pte import SCALAR_TYPES
from edgevit.runtime._backend import Backend, BackendModel

#: what ``require`` says the runtime is needed for
PURPOSE = "running .pte files (ExecuTorch's Python runtime, which also needs torch)"


class ExecuTorchModel(BackendModel):
    """One loaded method of an ExecuTorch program."""

    def __init__(self, program: Any, method_name: str, threads: int | None) -> None:
        self.program = program
        self.method = program.load_method(method_name)
        self.threads = threads
        meta = self.method.metadata
        self.input_specs = tuple(_spec(f"input_{i}", meta.input_tensor_meta(i)) for i in range(meta.num_inputs()))
        self.output_specs = tuple(_spec(f"output_{i}", meta.output_tensor_meta(i)) for i in range(meta.num_outputs()))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if self.threads is not None:
            _set_threads(self.threads)
        inputs = [torch.from_numpy(np.ascontiguousarray(feeds[spec.name])) for spec in self.input_specs]
        try:
            outputs = self.method.execute(inputs)
        except RuntimeError as exc:  # "method->execute() failed with error 0x10": name the code
            raise RuntimeError(_named(str(exc))) from exc
        return {spec.name: value.numpy() for spec, value in zip(self.output_specs, outputs)}

    def close(self) -> None:
        self.method = None
        self.program = None


class ExecuTorchBackend(Backend):
    name = "executorch"
    suffixes = (".pte",)
    extra = "executorch"
    distribution = "executorch"
    priority = 10
    needs_torch = True

    @classmethod
    def available(cls) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in ("executorch", "torch"))

    def open(self, model_path: Path, threads: int | None) -> ExecuTorchModel:
        from edgevit.formats.pte import read_ops

        graph = read_ops(model_path)  # a file that is no ExecuTorch program: an ArtifactError naming it
        runtime_module = require("executorch.runtime", self.extra, PURPOSE)
        runtime = runtime_module.Runtime.get()
        missing = sorted({d.backend for d in graph.raw.delegates} - set(runtime.backend_registry.registered_backend_names))
        if missing:
            raise ArtifactError(
                f"{str(model_path)!r} is delegated to {', '.join(missing)}, which this ExecuTorch runtime "
                f"(executorch {self.version()}) does not have (it has {', '.join(runtime.backend_registry.registered_backend_names)}); "
                "run it where that backend is built in, or export it again with --target executorch (XNNPACK)")
        if threads is not None:
            _set_threads(threads)
        program = runtime.load_program(str(model_path))
        return ExecuTorchModel(program, graph.main if graph.main in program.method_names else "forward", threads)


def _set_threads(threads: int) -> None:
    """Size ExecuTorch's process-wide thread pool (XNNPACK's), if it is not that size already."""
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)


def _spec(name: str, info: Any) -> TensorSpec:
    return TensorSpec(name, tuple(int(d) for d in info.sizes()), SCALAR_TYPES.get(int(info.dtype()), str(info.dtype())))


#: ExecuTorch's runtime error codes (runtime/core/error.h), to name the hex code its errors carry
ERROR_CODES = {0x01: "Internal", 0x02: "InvalidState", 0x03: "EndOfMethod", 0x10: "NotSupported",
               0x11: "NotImplemented", 0x12: "InvalidArgument", 0x13: "InvalidType", 0x14: "OperatorMissing",
               0x20: "NotFound", 0x21: "MemoryAllocationFailed", 0x22: "AccessFailed", 0x23: "InvalidProgram",
               0x25: "OutOfResources", 0x30: "DelegateInvalidCompatibility", 0x31: "DelegateMemoryAllocationFailed",
               0x32: "DelegateInvalidHandle"}


def _named(message: str) -> str:
    """``... error 0x10`` -> ``... error 0x10 (NotSupported: ...)``; other messages unchanged."""
    match = re.search(r"error 0x([0-9a-fA-F]+)", message)
    name = ERROR_CODES.get(int(match.group(1), 16)) if match else None
    if name is None:
        return message
    hint = {"NotSupported": "a kernel or the delegate does not support an op or dtype in this program",
            "OperatorMissing": "the runtime has no kernel for an op outside the delegate"}.get(name)
    return f"{message} ({name}" + (f": {hint})" if hint else ")")
