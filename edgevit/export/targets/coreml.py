"""Core ML: ``torch.export`` then ``coremltools.convert`` to an ML Program (``.mlpackage``).

* The deployment target (``iOS15``..``iOS18``) sets the MIL opset; fp16 and fp32 are
  coremltools' ``compute_precision`` (fp16 is what the Neural Engine computes in). Inputs
  and outputs are float32 either way.
* A dynamic batch becomes a ``RangeDim`` on the first input dimension.
* Core ML cannot predict on Linux. Verification runs where a backend can: ``coreml`` on
  macOS, the numpy reference executor (``coreml-reference``) elsewhere; otherwise it is
  :meth:`CoreMLTarget.structural_check`, and the report says the numbers were not checked.

The op report reads the program with :mod:`edgevit.formats.mlprogram` (every function, nested
blocks included; ``const`` ops are counted apart).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevit.errors import require
from edgevit.export.graph import batch_dim, prepare_graph
from edgevit.export.ops import MIL_OFF_ANE_OPS, OpReport, gather_warning, rank_warning
from edgevit.export.options import MAX_BATCH, ExportOptions
from edgevit.export.targets.base import INPUT_NAME, OUTPUT_NAME, Target
from edgevit.formats import OpGraph
from edgevit.formats.mlprogram import SPEC_VERSIONS, read_ops
from edgevit.quantize.base import supported_precisions
from edgevit.quantize.coreml import check_deployment, save_mlpackage

#: multiArray data types (ArrayFeatureType.ArrayDataType) -> numpy names
ARRAY_DTYPES = {65568: "float32", 65600: "float64", 65552: "float16", 131104: "int32", 131080: "int8"}


class CoreMLTarget(Target):
    name = "coreml"
    precisions = ("fp32", "fp16")
    quantized_precisions = supported_precisions("coreml")  # made by edgevit.quantize
    dynamic_batch = True
    packages = ("torch", "coremltools")
    extra = "export"

    def convert(self, model: Any, example: Any, options: ExportOptions, path: Path) -> None:
        import numpy as np
        import torch

        ct = require("coremltools", self.extra, "Core ML export")
        graph = prepare_graph(model, "NCHW", half=False)
        dynamic = ({0: batch_dim(MAX_BATCH)},) if options.dynamic_batch else None
        program = torch.export.export(graph, (example,), dynamic_shapes=dynamic).run_decompositions({})
        shape = tuple(example.shape)
        if options.dynamic_batch:
            shape = (ct.RangeDim(1, MAX_BATCH, default=1), *shape[1:])
        mlmodel = ct.convert(
            program,
            inputs=[ct.TensorType(name=INPUT_NAME, shape=shape, dtype=np.float32)],
            outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, options.deployment_target),
            # quantized precisions start from the fp16 program (what devices run; coremltools'
            # activation quantization expects fp16)
            compute_precision=ct.precision.FLOAT32 if options.precision == "fp32" else ct.precision.FLOAT16,
            compute_units=ct.ComputeUnit.ALL,
            skip_model_load=True,
        )
        save_mlpackage(mlmodel, path)

    def check(self, options: ExportOptions) -> None:
        super().check(options)
        check_deployment(options.precision, SPEC_VERSIONS[options.deployment_target])

    def read_ops(self, path: Path) -> OpGraph:
        return read_ops(path)

    def inspect(self, path: Path, options: ExportOptions) -> OpReport:
        graph = read_ops(path)
        counts = graph.counts(op for op in graph.ops if op.type != "const")
        high_rank = graph.high_rank()
        off_ane = {op: n for op, n in counts.items() if op in MIL_OFF_ANE_OPS}
        warnings = [
            gather_warning({k: v for k, v in off_ane.items() if "gather" in k or "scatter" in k},
                           "leave the Neural Engine (they run on the CPU or GPU)"),
            rank_warning(high_rank, "the Neural Engine"),
        ]
        others = {k: v for k, v in off_ane.items() if "gather" not in k and "scatter" not in k}
        if others:
            listing = ", ".join(f"{op} x{n}" for op, n in sorted(others.items()))
            warnings.append(f"{listing}: ops that are reported to leave the Neural Engine")
        if options.precision == "fp32":
            warnings.append("fp32 compute: the Neural Engine computes only in fp16, so Core ML runs this model "
                            "on the GPU or CPU; export --precision fp16 to use the Neural Engine")
        if options.dynamic_batch:
            warnings.append("dynamic batch: flexible input shapes can keep Core ML off the Neural Engine; "
                            "prefer a fixed batch for on-device use")
        details = {"const_ops": sum(1 for op in graph.ops if op.type == "const"),
                   "opset": graph.opset, "spec_version": graph.version}
        return OpReport.build(counts, [w for w in warnings if w], details)

    def structural_check(self, path, options, inputs, outputs) -> dict[str, Any]:
        checks, problems = [], []
        graph = read_ops(path)
        spec = graph.raw
        checks.append("the spec loads")
        if spec.WhichOneof("Type") != "mlProgram":
            problems.append(f"the model is a {spec.WhichOneof('Type')}, not an ML Program")
        expected_version = SPEC_VERSIONS[options.deployment_target]
        checks.append(f"spec version {expected_version} ({options.deployment_target})")
        if spec.specificationVersion > expected_version:
            problems.append(f"spec version {spec.specificationVersion} needs a newer OS than {options.deployment_target}")
        unknown = unknown_ops({op.type for op in graph.ops}, options.deployment_target)
        checks.append(f"every op is a MIL op of {options.deployment_target}")
        if unknown:
            problems.append(f"ops unknown to {options.deployment_target}: {', '.join(sorted(unknown))}")
        checks.append("inputs and outputs as declared")
        problems += _io_problems(spec.description.input, inputs, "input")
        problems += _io_problems(spec.description.output, outputs, "output")
        return {"ok": not problems, "checks": checks, "problems": problems}

    def notes(self, options: ExportOptions) -> list[str]:
        if options.precision == "fp16":
            return ["fp16: Core ML compute precision float16 (weights stored in fp16); inputs and outputs float32"]
        return []


def unknown_ops(op_types: set[str], deployment_target: str) -> set[str]:
    """MIL op types not defined in coremltools' op registry for ``deployment_target`` or older."""
    import coremltools as ct
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    limit = getattr(ct.target, deployment_target)
    unknown = set()
    for op_type in op_types:
        versions = SSAOpRegistry.core_ops.get(op_type, {})
        if not any(version <= limit for version in versions):
            unknown.add(op_type)
    return unknown


def _io_problems(features, expected, kind: str) -> list[str]:
    problems = []
    if [f.name for f in features] != [s.name for s in expected]:
        return [f"{kind}s are {[f.name for f in features]}, expected {[s.name for s in expected]}"]
    for feature, spec in zip(features, expected):
        array = feature.type.multiArrayType
        dtype = ARRAY_DTYPES.get(int(array.dataType), str(array.dataType))
        if dtype != spec.dtype:
            problems.append(f"{kind} {spec.name!r} is {dtype}, expected {spec.dtype}")
        shape = tuple(int(d) for d in array.shape)
        fixed = tuple(1 if d is None else d for d in spec.shape)  # a flexible dim declares its default
        if shape != fixed:
            problems.append(f"{kind} {spec.name!r} has shape {shape}, expected {fixed}")
    return problems
