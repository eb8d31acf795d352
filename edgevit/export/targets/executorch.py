"""ExecuTorch (``.pte``): ``torch.export``, then ExecuTorch's lowering to the XNNPACK delegate.

* Before lowering, edgevit rewrites the few op forms ExecuTorch's XNNPACK partitioner refuses
  (LayerNorm, ``split``, ``select``, no-op ``expand``, one-dim ``mean``) into ones it takes,
  so XNNPACK runs the whole graph as one delegated subgraph instead of dozens with CPU
  kernels between them (:mod:`edgevit.quantize.executorch`, which also holds the int8
  quantizer: PT2E quantizes the PyTorch program before lowering).
* fp32, and int8 through PT2E. No fp16: ExecuTorch 1.5.1's XNNPACK partitioner refuses fp16
  GELU and every dtype cast, so ``test_vit`` exported in half precision (the model between
  casts, as the ONNX target does it) left 15 casts and 4 GELUs outside the delegate, in 5
  subgraphs (its numbers were fine: 6.6e-4 relative error).
* Input ``[N, 3, H, W]`` float32 (NCHW; XNNPACK converts layouts inside the delegate), a fixed
  batch: the rewrites specialize shapes.
* Verified with ExecuTorch's own Python runtime (the ``executorch`` runtime backend), which
  needs torch on the machine that runs it (see :mod:`edgevit.runtime.backends.executorch`).

The op report reads the program with :mod:`edgevit.formats.pte` (no torch): how many
subgraphs XNNPACK was given, what they hold, and the ops left outside, with a warning when
there are any.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevit._files import write_bytes
from edgevit.errors import require
from edgevit.export.graph import prepare_graph
from edgevit.export.ops import OpReport
from edgevit.export.options import ExportOptions
from edgevit.export.targets.base import Target
from edgevit.formats import OpGraph
from edgevit.formats.pte import DELEGATE_PREFIX, delegated_subgraphs, outside_delegates, read_ops
from edgevit.quantize.base import supported_precisions

#: the delegate edgevit lowers to
XNNPACK = "XnnpackBackend"


class ExecuTorchTarget(Target):
    name = "executorch"
    precisions = ("fp32",)
    quantized_precisions = supported_precisions("executorch")  # made by edgevit.quantize
    dynamic_batch = False
    dynamic_batch_note = "edgevit's rewrites for the XNNPACK delegate specialize the graph to one batch size"
    packages = ("torch", "executorch", "torchao")
    extra = "executorch"

    def convert(self, model: Any, example: Any, options: ExportOptions, path: Path) -> None:
        require("executorch.exir", self.extra, "ExecuTorch export")
        from edgevit.quantize.executorch import export_program, to_pte

        write_bytes(path, to_pte(export_program(prepare_graph(model, "NCHW"), example)))

    def read_ops(self, path: Path) -> OpGraph:
        return read_ops(path)

    def inspect(self, path: Path, options: ExportOptions) -> OpReport:
        graph = read_ops(path)
        return OpReport.build(graph.counts(), delegation_warnings(graph), delegation_details(graph))

    def verification_backends(self) -> tuple[str, ...]:
        return ("executorch",)

    def structural_check(self, path, options, inputs, outputs) -> dict[str, Any]:
        problems = []
        try:
            graph = read_ops(path)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
            return {"ok": False, "checks": ["the program parses"], "problems": [str(exc)]}
        shapes = ([graph.tensors[k].shape for k in graph.inputs], [graph.tensors[k].shape for k in graph.outputs])
        expected = ([s.shape for s in inputs], [s.shape for s in outputs])
        if shapes != expected:
            problems.append(f"input/output shapes are {shapes}, expected {expected}")
        if not delegated_subgraphs(graph):
            problems.append("nothing is delegated to XNNPACK")
        return {"ok": not problems, "checks": ["the program parses", "input/output shapes", "XNNPACK delegate"],
                "problems": problems}

    def notes(self, options: ExportOptions) -> list[str]:
        return ["runs with the ExecuTorch runtime and its XNNPACK backend; edgevit's Python runtime runs it through "
                "the executorch wheel's runtime, which needs torch"]


def delegation_details(graph: OpGraph) -> dict[str, Any]:
    """What the report says about delegation: subgraphs, XNNPACK nodes and the ops left outside."""
    outside = outside_delegates(graph)
    nodes = sum(1 for op in graph.ops if op.graph != graph.main)
    return {"delegated_subgraphs": delegated_subgraphs(graph), "xnnpack_nodes": nodes,
            "outside_delegate": dict(sorted(outside.items())) if outside else 0}


def delegation_warnings(graph: OpGraph) -> list[str]:
    """One line when ops run outside XNNPACK (on ExecuTorch's CPU kernels, between delegate calls)."""
    warnings = []
    backends = sorted({op.type.removeprefix(DELEGATE_PREFIX) for op in graph.main_ops
                       if op.type.startswith(DELEGATE_PREFIX)} - {XNNPACK})
    if backends:
        warnings.append(f"delegated to {', '.join(backends)} besides XNNPACK; edgevit's runtime may not have them")
    outside = outside_delegates(graph)
    if not delegated_subgraphs(graph):
        warnings.append("nothing is delegated to XNNPACK: every op runs on ExecuTorch's portable CPU kernels")
    elif outside:
        listing = ", ".join(f"{op} x{n}" for op, n in sorted(outside.items()))
        warnings.append(f"{sum(outside.values())} op(s) run outside the XNNPACK delegate on ExecuTorch's CPU kernels, "
                        f"splitting the graph into {delegated_subgraphs(graph)} delegated subgraphs: {listing}")
    return warnings
