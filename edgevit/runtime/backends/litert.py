"""LiteRT (TensorFlow Lite) on the CPU with XNNPACK: runs ``.tflite`` artifacts.

Uses the ``ai-edge-litert`` interpreter, or ``tflite_runtime.interpreter`` where that is
what a device has (older Raspberry Pi / Coral images). The default op resolver applies the
XNNPACK delegate to every op it supports; ``threads`` is passed as ``num_threads`` and
so sets both XNNPACK's and the built-in kernels' thread pool.

Inputs and outputs are named by the model's default signature (``args_0``, ``output_0``
for litert-torch exports) when it has one, otherwise by tensor name.

Example:
    >>> from edgevit.runtime import load
    >>> session = load("model.tflite", backend="litert", threads=2)
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np

from edgevit.artifact import TensorSpec
from edgevit.errors import MissingDependencyError
from edgevit.runtime._backend import Backend, BackendModel

#: (module providing ``Interpreter``, distribution name) in order of preference
INTERPRETERS = (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime"))


class LiteRTModel(BackendModel):
    """A LiteRT ``Interpreter`` with tensors allocated, behind the backend interface."""

    def __init__(self, interpreter, threads: int | None) -> None:
        self.interpreter = interpreter
        self.threads = threads
        inputs, outputs = _named_details(interpreter)
        self._inputs = inputs
        self._outputs = outputs
        self.input_specs = tuple(_spec(name, d) for name, d in inputs.items())
        self.output_specs = tuple(_spec(name, d) for name, d in outputs.items())
        self._dims_signature = {name: d.get("shape_signature", d["shape"]) for name, d in inputs.items()}
        self._current = {name: tuple(d["shape"]) for name, d in inputs.items()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        interpreter = self.interpreter
        self._resize_if_needed(feeds)
        for name, value in feeds.items():
            interpreter.set_tensor(self._inputs[name]["index"], value)
        interpreter.invoke()
        return {name: interpreter.get_tensor(d["index"]) for name, d in self._outputs.items()}

    def _resize_if_needed(self, feeds: dict[str, np.ndarray]) -> None:
        changed = False
        for name, value in feeds.items():
            if value.shape != self._current[name]:
                self.interpreter.resize_tensor_input(self._inputs[name]["index"], list(value.shape), strict=True)
                self._current[name] = value.shape
                changed = True
        if changed:
            self.interpreter.allocate_tensors()

    def close(self) -> None:
        self.interpreter = None


class LiteRTBackend(Backend):
    name = "litert"
    suffixes = (".tflite",)
    extra = "litert"
    priority = 10

    @classmethod
    def available(cls) -> bool:
        return any(_module_exists(module) for module, _ in INTERPRETERS)

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import PackageNotFoundError, version

        for module, dist in INTERPRETERS:
            if _module_exists(module):
                try:
                    return f"{dist} {version(dist)}"
                except PackageNotFoundError:
                    return dist
        return "unknown"

    def open(self, model_path: Path, threads: int | None) -> LiteRTModel:
        interpreter_module = _import_interpreter()
        interpreter = interpreter_module.Interpreter(model_path=str(model_path), num_threads=threads)
        interpreter.allocate_tensors()
        return LiteRTModel(interpreter, threads)


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


def _import_interpreter():
    errors = []
    for module, _ in INTERPRETERS:
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            errors.append(f"{module}: {exc}")
    raise MissingDependencyError(
        "running TFLite artifacts needs the LiteRT interpreter, which is not installed "
        f"({'; '.join(errors)}); install it with: pip install 'edgevit[litert]' "
        "(or pip install tflite-runtime on devices that only have that)"
    )


def _named_details(interpreter) -> tuple[dict[str, dict], dict[str, dict]]:
    """Input and output tensor details keyed by signature name (or tensor name)."""
    by_index_in = {d["index"]: d for d in interpreter.get_input_details()}
    by_index_out = {d["index"]: d for d in interpreter.get_output_details()}
    signatures = interpreter.get_signature_list() if hasattr(interpreter, "get_signature_list") else {}
    if len(signatures) == 1:
        key = next(iter(signatures))
        runner = interpreter.get_signature_runner(key)
        ins = {name: by_index_in[d["index"]] for name, d in _natural(runner.get_input_details())}
        outs = {name: by_index_out[d["index"]] for name, d in _natural(runner.get_output_details())}
        if len(ins) == len(by_index_in) and len(outs) == len(by_index_out):
            return ins, outs
    return ({d["name"]: d for d in by_index_in.values()}, {d["name"]: d for d in by_index_out.values()})


def _natural(details: dict[str, dict]) -> list[tuple[str, dict]]:
    """Signature entries in argument order: ``args_2`` before ``args_10`` (the session maps them by position)."""

    def key(item: tuple[str, dict]) -> tuple[str, int]:
        stem, _, number = item[0].rpartition("_")
        return (stem, int(number)) if number.isdigit() else (item[0], -1)

    return sorted(details.items(), key=key)


def _spec(name: str, detail: dict) -> TensorSpec:
    signature = detail.get("shape_signature")
    dims = signature if signature is not None and len(signature) else detail["shape"]
    shape = tuple(int(d) if d >= 0 else None for d in dims)
    return TensorSpec(name, shape, np.dtype(detail["dtype"]).name)


# -- what the XNNPACK delegate takes (the export op report and the int8 quantizer both ask) ----------


def xnnpack_delegation(path: Path) -> tuple[int, int, list[str]] | None:
    """(delegated ops, all ops, names of the ops left out) as the XNNPACK delegate partitions them."""
    partition = xnnpack_partition(path)
    if partition is None:
        return None
    total, missing = partition
    return total - len(missing), total, [op["op_name"] for op in missing]


def xnnpack_partition(path: Path) -> tuple[int, list[dict]] | None:
    """(number of ops, the op details of those XNNPACK leaves out), or None without LiteRT.

    Each op detail is the interpreter's (``op_name``, ``inputs``, ``outputs`` tensor indices)
    plus ``output_names``: the names of its output tensors.
    """
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:
        return None
    from edgevit._quiet import captured_output

    with captured_output():
        interpreter = litert.Interpreter(model_path=str(path), num_threads=1,
                                         experimental_disable_delegate_node_fusion=True)
        interpreter.allocate_tensors()
        ops = interpreter._get_ops_details()  # every node: the model's ops, then the delegate nodes
        names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    delegate_outputs = {tuple(op["outputs"]) for op in ops if op["op_name"] == "DELEGATE"}
    model_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    missing = [{**op, "output_names": [names.get(i, "") for i in op["outputs"] if i >= 0]}
               for op in model_ops if tuple(op["outputs"]) not in delegate_outputs]
    return len(model_ops), missing
