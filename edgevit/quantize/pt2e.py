"""PT2E quantizers that edgevit composes after ExecuTorch's ``XNNPACKQuantizer`` (imports torch
and torchao when called; the ExecuTorch int8 path is the only user)."""

from __future__ import annotations

from typing import Any

__all__ = ["pad_sharing_quantizer"]


def pad_sharing_quantizer() -> Any:
    """A PT2E quantizer run after XNNPACK's: a constant pad of a quantized tensor shares its input's
    quantization parameters, as XNNPACK's own quantizer does for views, permutes and slices.

    XNNPACKQuantizer leaves ``aten.pad`` unannotated, and its partitioner still takes the pad
    between a dequantize and the next quantize as an int8 pad; XNNPACK then refuses the
    program when the runtime loads it (``StaticConstantPad``: ``xnn_status_invalid_parameter``,
    the input and output scales differ). TinyViT pads its windows at sizes other than the
    canonical ones (``tiny_vit_5m_224`` at 64 px, ``test_tiny_vit`` at 32 px)."""
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, Quantizer, SharedQuantizationSpec

    pads = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)

    class PadSharing(Quantizer):
        def annotate(self, model: Any) -> Any:
            for node in model.graph.nodes:
                if node.op != "call_function" or node.target not in pads or "quantization_annotation" in node.meta:
                    continue
                source = node.args[0]
                annotation = getattr(source, "meta", {}).get("quantization_annotation")
                if annotation is None or annotation.output_qspec is None:
                    continue  # a pad of a float tensor stays float
                shared = SharedQuantizationSpec(source)
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={source: shared}, output_qspec=shared, _annotated=True)
            return model

        def validate(self, model: Any) -> None:
            pass

    return PadSharing()
