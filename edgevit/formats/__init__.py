"""Model files read back into one shape: a reader per format, each ``read_ops(path) -> OpGraph``.

The export op report (``Target.inspect``, ``Target.structural_check``) and the quantizers
(which ops to quantize, which tensors to calibrate, what a built file holds) read files only
through these readers, so each format is parsed in one place:

* :mod:`edgevit.formats.onnx`: ``.onnx`` (``onnx``);
* :mod:`edgevit.formats.tflite`: ``.tflite`` flatbuffers (``ai-edge-litert``'s schema, no interpreter);
* :mod:`edgevit.formats.mlprogram`: Core ML ML Programs (``coremltools``).

This package needs no torch; each reader imports its format's library when called.

Example:
    >>> from edgevit.formats.onnx import read_ops
    >>> graph = read_ops("resnet-onnx-fp32/model.onnx")  # doctest: +SKIP
    >>> graph.counts().most_common(1)  # doctest: +SKIP
    [('Conv', 20)]
"""

from __future__ import annotations

from edgevit.formats.graph import MAX_FAST_RANK, Op, OpGraph, Tensor, TensorKey

__all__ = ["MAX_FAST_RANK", "Op", "OpGraph", "Tensor", "TensorKey"]
