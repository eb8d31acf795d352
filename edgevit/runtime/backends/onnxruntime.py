"""ONNX Runtime on the CPU: runs ``.onnx`` artifacts.

``threads`` sets ``intra_op_num_threads`` (the threads one operator may use); inter-op
parallelism is off (one op at a time, ``ORT_SEQUENTIAL``), which is what a single-image
edge workload wants and what makes ``threads`` mean the number of busy cores. The graph
is optimised at ``ORT_ENABLE_ALL`` (constant folding, layout and fusion passes).

Idle intra-op threads block instead of spinning (``session.intra_op.allow_spinning=0``) unless
``spin=True`` (``runtime.load(path, spin=True)``, ``edgevit bench --spin``, ``edgevit serve
--spin``). Which wins depends on whether the cores are free, measured on 2-core machines:

* **cores free** (a device that runs only the model): spinning wins, the waking threads skip
  the futex wake-up between ops. On an idle AVX-512 EPYC at 2 threads, each model alone in its
  own process, the same file ran in 0.67-0.90x of the blocking time on seven 224-px zoo models
  (``benchmarks/results/alone.md``);
* **cores shared** (other processes, other models, a coordinator on the same board): blocking
  wins: on an AVX2 EPYC shared with other work, cas_vit_xs at 2 threads ran at a p50 of
  38-46 ms without spinning against 64-75 ms with it (alternating runs, one process), and the
  spinning threads also slowed whatever ran next to them.

Blocking is the default because its worst case is mild and spinning's is not.

Example:
    >>> from edgevit.runtime import load
    >>> session = load("model.onnx", backend="onnxruntime", threads=2)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgevit.artifact import TensorSpec
from edgevit.errors import InvalidArgumentError, require
from edgevit.runtime._backend import Backend, BackendModel

#: ONNX Runtime type strings -> numpy dtype names
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


class OnnxRuntimeModel(BackendModel):
    """An ``onnxruntime.InferenceSession`` behind the backend interface."""

    def __init__(self, session, threads: int | None) -> None:
        self.session = session
        self.threads = threads
        self.input_specs = tuple(_spec(arg) for arg in session.get_inputs())
        self.output_specs = tuple(_spec(arg) for arg in session.get_outputs())
        self._output_names = [spec.name for spec in self.output_specs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._output_names, feeds)
        return dict(zip(self._output_names, values))

    def close(self) -> None:
        self.session = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    suffixes = (".onnx", ".ort")  # .ort: the ORT format, what onnxruntime's mobile and minimal builds load
    extra = "onnxruntime"
    distribution = "onnxruntime"
    priority = 10
    options = {"spin": "intra-op threads spin between ops instead of blocking (faster when the cores are free)"}

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def open(self, model_path: Path, threads: int | None, spin: bool | None = None) -> OnnxRuntimeModel:
        ort = require("onnxruntime", self.extra, "running ONNX artifacts")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if spin is not None and not isinstance(spin, bool):
            raise InvalidArgumentError(f"spin must be True or False, got {spin!r}")
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only; warnings about unused initialisers are noise
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        return OnnxRuntimeModel(session, threads)


def _spec(arg) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else None for dim in (arg.shape or ()))
    return TensorSpec(arg.name, shape, ORT_DTYPES.get(arg.type, arg.type))
