"""TFLite (LiteRT): ``litert_torch.convert``, run with the LiteRT interpreter and XNNPACK.

* Input ``input``, output ``logits`` (the signature names), float32 at both ends.
* ``--channels-last`` takes NHWC input, so camera frames need no transpose on the phone;
  the permute is folded into the first convolution by the converter.
* fp16 is TFLite's float16 quantization: convolution and fully-connected weights are stored
  as float16 with a DEQUANTIZE op (ai-edge-quantizer's float-casting recipe). XNNPACK on
  the CPU computes in float32 (or fp16 where the CPU has it); the GPU delegate in fp16.
* A dynamic batch is refused: litert-torch cannot lower reshapes with a symbolic batch size.

The op report counts the flatbuffer's operators (every subgraph's, read by
:mod:`edgevit.formats.tflite`) and asks the interpreter which of them XNNPACK took (node
fusion off, so every delegated op becomes its own delegate node).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgevit._files import write_bytes
from edgevit.errors import require
from edgevit.export.graph import prepare_graph
from edgevit.export.ops import TFLITE_GATHER_OPS, OpReport, gather_warning, rank_warning
from edgevit.export.options import ExportOptions
from edgevit.export.targets.base import INPUT_NAME, Target
from edgevit.formats import OpGraph
from edgevit.formats.tflite import read_ops
from edgevit.quantize.base import supported_precisions
from edgevit.runtime.backends.litert import xnnpack_delegation

#: ops the fp16 recipe stores in float16 (ai-edge-quantizer's float casting supports these)
FP16_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE")


class TfliteTarget(Target):
    name = "tflite"
    precisions = ("fp32", "fp16")
    quantized_precisions = supported_precisions("tflite")  # made by edgevit.quantize
    layouts = ("NCHW", "NHWC")
    dynamic_batch = False
    dynamic_batch_note = "litert-torch cannot lower reshapes whose batch size is symbolic"
    packages = ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer")

    def convert(self, model: Any, example: Any, options: ExportOptions, path: Path) -> None:
        litert_torch = require("litert_torch", self.extra, "TFLite export")
        graph = prepare_graph(model, options.layout, half=False, named_output=True)
        edge_model = litert_torch.convert(graph, sample_kwargs={INPUT_NAME: example})
        if options.precision == "fp16":
            fp32_path = path.with_name(path.stem + ".fp32" + path.suffix)
            edge_model.export(str(fp32_path))
            _float16_weights(fp32_path, path)
            fp32_path.unlink()
        else:
            edge_model.export(str(path))

    def read_ops(self, path: Path) -> OpGraph:
        return read_ops(path)

    def inspect(self, path: Path, options: ExportOptions) -> OpReport:
        graph = read_ops(path)
        counts = graph.counts()
        high_rank = graph.high_rank()
        gathers = {op: n for op, n in counts.items() if op in TFLITE_GATHER_OPS}
        warnings = [gather_warning(gathers, "run outside XNNPACK on the reference kernels"),
                    rank_warning(high_rank, "XNNPACK and the GPU delegate")]
        details: dict[str, Any] = {}
        delegation = xnnpack_delegation(path)
        if delegation is not None:
            delegated, total, missing = delegation
            details["xnnpack_delegated"] = f"{delegated}/{total}"
            if missing:
                listing = ", ".join(f"{op} x{n}" for op, n in sorted(Counter(missing).items()))
                warnings.append(f"{total - delegated} of {total} ops are not delegated to XNNPACK and run on "
                                f"the slow reference CPU kernels: {listing}")
        else:
            details["xnnpack_delegated"] = "not checked (LiteRT interpreter unavailable)"
        return OpReport.build(counts, [w for w in warnings if w], details)

    def structural_check(self, path, options, inputs, outputs) -> dict[str, Any]:
        problems = []
        try:
            self.inspect(path, options)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
            problems.append(f"the flatbuffer cannot be read: {exc}")
        return {"ok": not problems, "checks": ["flatbuffer parses"], "problems": problems}

    def notes(self, options: ExportOptions) -> list[str]:
        notes = []
        if options.precision == "fp16":
            notes.append("fp16: conv/fully-connected weights stored as float16 with DEQUANTIZE (TFLite float16 "
                         "quantization); XNNPACK computes in float32 on most CPUs, the GPU delegate in fp16")
        if options.channels_last:
            notes.append("channels-last: the input is NHWC [N, H, W, 3]")
        return notes


def _float16_weights(source: Path, destination: Path) -> None:
    """Store conv / fully-connected weights of ``source`` as float16 with DEQUANTIZE ops."""
    from edgevit._quiet import captured_output

    require("ai_edge_quantizer", "export", "fp16 TFLite export")
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    with captured_output():
        qt = quantizer.Quantizer(str(source))
        for op in FP16_WEIGHT_OPS:
            qt.add_weight_only_config(regex=".*", operation_name=getattr(qtyping.TFLOperationName, op),
                                      num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
        result = qt.quantize()
    write_bytes(destination, bytes(result.quantized_model))
