"""OpenVINO on the CPU: runs ``.onnx`` artifacts, read directly (no conversion step, no IR files).

The file is read by OpenVINO's ONNX frontend (what ``openvino.Core().read_model`` uses for an
``.onnx`` path, asked for by name so that a file that is not ONNX is not offered to every other
frontend in turn) and compiled for ``"CPU"`` with the settings OpenVINO's docs advise for
single-image latency:

* ``PERFORMANCE_HINT: LATENCY``: one stream, every thread on the one request;
* ``INFERENCE_NUM_THREADS: threads`` when ``threads`` is given (None keeps OpenVINO's default:
  the machine's cores);
* ``INFERENCE_PRECISION_HINT: f32``: OpenVINO would otherwise lower the float precision on its
  own where the CPU has a faster type (bf16 on CPUs with AMX, f16 on ARM), which the artifact was
  never verified at. fp16 ONNX files keep their fp16 weights; their fp16 ops compute in f32 here.

``ENABLE_CPU_PINNING`` is left as the latency hint sets it (on, on Linux): turned off, it measured
0.91-1.12x of the pinned time on this 2-core machine, no consistent gain (unlike onnxruntime's
spinning, which edgevit turns off).

int8 (QDQ) files run through OpenVINO's low-precision transformations, which place the int8
kernels where the QuantizeLinear/DequantizeLinear pairs allow; the arithmetic is not
onnxruntime's (other fusions, other rounding of the requantization). On the digits-trained test
models the two runtimes' logits are 32-69 dB apart (SQNR), top-1 98.4-100% the same, each as far
from fp32 as the other; on random-init 224-px models 32-41 dB. Export verification stays with
onnxruntime while it is installed (the first backend for ``.onnx``, as for ``auto``).

``backend="auto"`` keeps onnxruntime first for ``.onnx`` (priority 10 against this backend's 20),
as measured by ``benchmarks/openvino_speed.py`` (2 threads, batch 1, this project's one CPU: AMD
EPYC, AVX2 without AVX-512 or VNNI, shared with other work). Once loaded, OpenVINO ran the fp32
exports of four 224-px models in 0.79-1.03x of onnxruntime's time at a load average of 2-4 on 2
cores, but 0.99-1.94x at 6-7, and the int8 ViT-Tiny in 1.5-3.2x; loading took 2-4x longer at fp32
and 6-14x at int8 (int8 compilation: 2.6-7 s), with 30-110 MB more memory. It wins only on a
machine that runs nothing else and loads the model once; ask for it by name there:
``load(path, backend="openvino")``, ``edgevit bench --backend openvino``.

Example:
    >>> from edgevit.runtime import load
    >>> session = load("model.onnx", backend="openvino", threads=2)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgevit.artifact import TensorSpec
from edgevit.errors import ArtifactError, UnsupportedOpError, require
from edgevit.runtime._backend import Backend, BackendModel

DEVICE = "CPU"
#: how OpenVINO 2025.x names unconvertible ops (a GeneralFailure; 2026 raises OpConversionFailure)
_UNSUPPORTED = "does not support the following ONNX operations"


class OpenVINOModel(BackendModel):
    """A compiled OpenVINO model and its one infer request, behind the backend interface.

    Names and shapes come from the model as read (the ONNX file's own input and output names);
    the compiled model's ports may carry other names after OpenVINO's graph rewrites, so feeds
    and outputs are matched by position.
    """

    def __init__(self, compiled, model, threads: int | None) -> None:
        self.compiled = compiled
        self.threads = threads
        self.request = compiled.create_infer_request()
        self.input_specs = tuple(_spec(port) for port in model.inputs)
        self.output_specs = tuple(_spec(port) for port in model.outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # share_inputs: no copy of a C-contiguous array (the call is synchronous); outputs are copies
        results = self.request.infer([feeds[spec.name] for spec in self.input_specs], share_inputs=True)
        return {spec.name: results[i] for i, spec in enumerate(self.output_specs)}

    def close(self) -> None:
        self.request = None
        self.compiled = None


class OpenVINOBackend(Backend):
    name = "openvino"
    suffixes = (".onnx",)
    extra = "openvino"
    distribution = "openvino"
    priority = 20

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def open(self, model_path: Path, threads: int | None) -> OpenVINOModel:
        ov = require("openvino", self.extra, "running ONNX artifacts with OpenVINO")
        model = read_onnx(model_path)
        compiled = ov.Core().compile_model(model, DEVICE, compile_config(threads))
        return OpenVINOModel(compiled, model, threads)


def compile_config(threads: int | None) -> dict[str, object]:
    """The CPU properties edgevit compiles every model with (the module docstring says why)."""
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def read_onnx(model_path: Path):
    """The ``openvino.Model`` of the ONNX file at ``model_path``, or an edgevit error naming the file.

    Raises:
        UnsupportedOpError: OpenVINO has no conversion for some of the file's ops (named).
        ArtifactError: the file is not a readable ONNX model (OpenVINO's reason given).
    """
    frontend_module = require("openvino.frontend", "openvino", "reading ONNX files with OpenVINO")
    frontend = frontend_module.FrontEndManager().load_by_framework("onnx")
    try:
        return frontend.convert(frontend.load(str(model_path)))
    except Exception as exc:  # noqa: BLE001 - the frontend raises GeneralFailure, RuntimeError...
        if isinstance(exc, frontend_module.OpConversionFailure) or _UNSUPPORTED in str(exc):
            raise UnsupportedOpError(
                f"OpenVINO {_version()} cannot run {str(model_path)!r}: {_reason(exc)}; run it with "
                "backend='onnxruntime', or export it again with ops OpenVINO converts"
            ) from exc
        raise ArtifactError(
            f"OpenVINO could not read {str(model_path)!r} as an ONNX model ({_reason(exc)}); the file is "
            "corrupt or not ONNX: export it again, or check that it was copied whole"
        ) from exc


def _reason(exc: BaseException) -> str:
    """OpenVINO's message without its source locations ("Check '...' failed at src/...cpp:151:")."""
    noise = ("Exception from ", "Check '", "FrontEnd API failed with", "Summary:")
    lines = [line.strip(" -").rstrip(".") for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith(noise)]
    return "; ".join(kept) or type(exc).__name__


def _version() -> str:
    return OpenVINOBackend.version()


def _spec(port) -> TensorSpec:
    shape = port.get_partial_shape()
    dims = () if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
    return TensorSpec(port.get_any_name(), dims, port.get_element_type().to_dtype().name)
