"""Quantization: int8, weight-only int8 and palettized weights for ONNX, TFLite, Core ML and ExecuTorch.

One function, :func:`quantize`, takes a converted float model file, calibration images and a
:class:`Recipe` (the request) and writes the quantized file, returning a
:class:`~edgevit.quantize.search.QuantizeResult` whose recipe says what was kept in float and
why (measured). ``edgevit export --precision int8|w8|w6|w4`` calls it as one pipeline step.

* ``recipe``: schemes, recipes, op kinds and blocks (value objects);
* ``calibration``: calibration images and activation ranges (minmax / percentile / entropy);
* ``search``: the sensitivity pass, the default recipe and ``--max-drop``;
* ``onnx``, ``tflite``, ``coreml``, ``executorch``: one quantizer per target (imported when used).

Example:
    >>> from edgevit.quantize import Recipe, calibration_set, quantize
    >>> calib = calibration_set("digits", 128, spec)
    >>> result = quantize("onnx", "model.onnx", "model.int8.onnx", calib, Recipe("int8"), model=torch_model)
    >>> result.recipe.float_kinds, result.agreement["top1_agreement"]
    (('softmax', 'layernorm', 'gelu'), 99.2)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgevit.quantize.base import (
    QUANTIZERS,
    get_quantizer,
    module_blocks,
    supported_precisions,
)
from edgevit.quantize.calibration import CalibrationSet, calibration_set
from edgevit.quantize.recipe import CALIB_METHODS, KINDS, Recipe, scheme

__all__ = ["quantize", "Recipe", "KINDS", "CALIB_METHODS", "CalibrationSet", "calibration_set", "QUANTIZERS",
           "supported_precisions", "get_quantizer"]


def quantize(target: str, float_path: str | Path, out: str | Path, calibration: CalibrationSet, recipe: Recipe, *,
             model: Any = None, layout: str = "NCHW", options: dict[str, Any] | None = None, sensitivity: bool = True,
             log: Any = None) -> Any:
    """Quantize the converted float model file ``float_path`` of ``target`` into ``out``.

    Args:
        target: a name in :data:`QUANTIZERS` (``"onnx"``, ``"tflite"``, ``"coreml"``, ``"executorch"``).
        calibration: images to calibrate activations on and to measure agreement with float.
        recipe: precision, calibration method, ``max_drop`` and any groups forced to float.
        model: the (reparameterized) torch model the file was converted from, so that ops can be
            grouped by model block (``model.segments()``); optional, except for ExecuTorch, whose PT2E
            quantization works on the PyTorch program before lowering.
        layout: the file's input layout (``NHWC`` for channels-last TFLite).
        options: target settings (Core ML: ``{"deployment_target": "iOS17"}``; ONNX:
            ``{"onnx_int8_format": "u8s8-reduced"}``, see :data:`edgevit.quantize.onnx.INT8_FORMATS`).
        sensitivity: run the sensitivity pass (the default recipe and --max-drop need it).
        log: ``log(message)`` for progress lines.

    Returns:
        A :class:`~edgevit.quantize.search.QuantizeResult`.

    Raises:
        InvalidArgumentError: the target does not support the precision (lists the ones it does).
    """
    from edgevit.quantize.search import quantize_file

    quantizer_class = get_quantizer(target, recipe.precision)
    blocks = module_blocks(model) if model is not None else {}
    with tempfile.TemporaryDirectory(prefix="edgevit-quantize.") as work:
        quantizer = quantizer_class(Path(float_path), scheme(recipe.precision), Path(work), blocks, layout, options,
                                    model=model)
        return quantize_file(quantizer, calibration, recipe, Path(out), sensitivity=sensitivity, log=log)
