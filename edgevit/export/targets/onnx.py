"""ONNX: ``torch.onnx.export(..., dynamo=True)``, checked with ``onnx.checker``.

fp16 exports the model in half precision between a cast after the input and a cast before
the output, so the file's inputs and outputs stay float32 while weights and compute are
float16. A dynamic batch exports the first dimension as the symbol ``batch``. The op report
reads the file with :mod:`edgevit.formats.onnx` (shape-inferred, every function and subgraph).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgevit.errors import ConversionError, require
from edgevit.export.graph import batch_dim, prepare_graph
from edgevit.export.ops import ONNX_GATHER_OPS, OpReport, gather_warning, rank_warning
from edgevit.export.options import ExportOptions
from edgevit.export.targets.base import INPUT_NAME, OUTPUT_NAME, Target
from edgevit.export.targets.onnx_forms import faster_forms
from edgevit.formats import OpGraph
from edgevit.formats.onnx import read_ops
from edgevit.quantize.base import supported_precisions


class OnnxTarget(Target):
    name = "onnx"
    precisions = ("fp32", "fp16")
    quantized_precisions = supported_precisions("onnx")  # made by edgevit.quantize
    dynamic_batch = True
    packages = ("torch", "onnx", "onnxscript")

    def convert(self, model: Any, example: Any, options: ExportOptions, path: Path) -> None:
        import torch

        require("onnxscript", self.extra, "the torch.onnx dynamo exporter")
        onnx = require("onnx", self.extra, "ONNX export")
        graph = prepare_graph(model, options.layout, half=options.precision == "fp16")
        dynamic = ({0: batch_dim()},) if options.dynamic_batch else None
        program = torch.onnx.export(
            graph, (example,), dynamo=True, opset_version=options.opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_shapes=dynamic, optimize=True, verbose=False,
        )
        program.save(str(path))  # weights inline below 2 GB, as model.onnx.data above
        faster_forms(path)  # forms onnxruntime runs faster, the same sums (a conv split on its channels)
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ConversionError(f"the exported ONNX file fails onnx.checker: {str(exc).splitlines()[0]}") from exc

    def read_ops(self, path: Path) -> OpGraph:
        return read_ops(path)

    def inspect(self, path: Path, options: ExportOptions) -> OpReport:
        graph = read_ops(path)
        counts = graph.counts()
        constants = graph.constants() | {out for op in graph.ops if op.type == "Constant" for out in op.outputs}
        computed = Counter(
            op.type for op in graph.ops
            if op.type in ONNX_GATHER_OPS and not all(name in constants for name in op.inputs[1:2])
        )
        constant_gathers = sum(counts[op] for op in ONNX_GATHER_OPS) - sum(computed.values())
        warnings = [
            gather_warning(dict(computed), "are slow on mobile execution providers and often unsupported by NPUs"),
            rank_warning(graph.high_rank(constants=False), "the XNNPACK, NNAPI and CoreML execution providers"),
        ]
        details = {"opset": graph.opset}
        if constant_gathers:
            details["constant_index_gathers"] = constant_gathers
        return OpReport.build(counts, [w for w in warnings if w], details)

    def diagnosis_programs(self, program: Any) -> list[Any]:
        """Also decomposed the way torch.onnx does (ops without an ONNX function become prims)."""
        programs = super().diagnosis_programs(program)
        try:  # private API, used only to name a failing op; without it the op is still named
            from torch.onnx._internal.exporter import _fx_passes, _registration

            registry = _registration.ONNXRegistry.from_torchlib()
            programs.append(_fx_passes.decompose_with_registry(program, registry))
        except Exception:  # noqa: BLE001
            pass
        return programs

    def structural_check(self, path, options, inputs, outputs) -> dict[str, Any]:
        onnx = require("onnx", self.extra, "reading ONNX files")
        problems = []
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except onnx.checker.ValidationError as exc:
            problems.append(f"onnx.checker: {str(exc).splitlines()[0]}")
        graph = read_ops(path)
        names = (list(graph.inputs), list(graph.outputs))
        expected = ([s.name for s in inputs], [s.name for s in outputs])
        if names != expected:
            problems.append(f"inputs/outputs are {names}, expected {expected}")
        return {"ok": not problems, "checks": ["onnx.checker (full)", "input/output names"], "problems": problems}

    def companions(self, path: Path, options: ExportOptions) -> dict[str, dict[str, Any]]:
        """``model.ort`` when ``options.ort_format``: see :func:`write_ort`."""
        if not options.ort_format:
            return {}
        target = path.with_suffix(ORT_SUFFIX)
        return {target.name: write_ort(path, target)}

    def notes(self, options: ExportOptions) -> list[str]:
        if options.precision == "fp16":
            return ["fp16: weights and compute in float16; inputs and outputs stay float32 (cast in the graph)"]
        return []


ORT_SUFFIX = ".ort"
#: graph optimizers left out of an ORT-format file: NCHWc blocking is for x86 only, and a file
#: saved with it would not run on the ARM phones and boards the format is for
ORT_DISABLED_OPTIMIZERS = ("NchwcTransformer",)


def write_ort(onnx_path: Path, ort_path: Path) -> dict[str, Any]:
    """Save ``onnx_path`` in onnxruntime's ORT format at ``ort_path``, with every graph optimization
    that is portable applied once (what ``python -m onnxruntime.tools.convert_onnx_models_to_ort``
    does by default: level ``all``, "fixed" style, NCHWc left out), so that a mobile or minimal
    build loads it without optimizing it again. Returns how it was made, for the manifest."""
    ort = require("onnxruntime", "onnxruntime", "writing ORT-format files")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(ort_path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS))
    except Exception as exc:  # noqa: BLE001  onnxruntime raises its own exception types
        raise ConversionError(f"onnxruntime could not save {onnx_path.name} in ORT format: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if not ort_path.is_file():
        raise ConversionError(f"onnxruntime did not write {ort_path.name}")
    return {"backend": "onnxruntime", "format": "ORT", "optimization": "all, NCHWc left out (portable to ARM)",
            "onnxruntime": ort.__version__}
