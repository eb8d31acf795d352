"""The one table of tolerances the tests compare numbers with (house style, rule 12).

Each row is keyed by *what* is compared and says why its numbers are what they are. Exported
artifacts against PyTorch are judged by edgevit's own table, :data:`edgevit.precision.TOLERANCES`
(``ARTIFACT["fp32"]``, ``ARTIFACT["fp16"]``, ``ARTIFACT["int8"]``...), so tests read those rows
instead of repeating their numbers. Where a test checks tighter than a row of that table, the
tighter check is its own row here, with the reason it can be.

Not here, on purpose: sums of milliseconds and statistics computed two ways
(``pytest.approx`` with its default relative 1e-6: arithmetic, not numerics), byte counts, and
wall-clock timings. Imported by name (``from tolerances import GOLDEN``: ``tests/`` is on the path
through its ``conftest.py``; a ``conftest`` of its own would be ambiguous across folders).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevit.precision import TOLERANCES as ARTIFACT  # noqa: F401  (re-exported: the artifact rows)
from edgevit.precision import Tolerance, precision


@dataclass(frozen=True)
class Close:
    """Element-wise ``|actual - expected| <= atol + rtol * |expected|`` (numpy's and torch's rule).

    Attributes:
        rtol: relative to each expected value.
        atol: absolute; with ``scaled``, a share of the largest ``|expected|`` (so a value near
            zero is judged against the output's scale, not its own).
        why: one line: what makes the difference, and what a real error would look like.
        scaled: ``atol`` is relative to the output's largest magnitude.
    """

    rtol: float
    atol: float
    why: str
    scaled: bool = False

    def check(self, actual: Any, expected: Any, msg: str = "") -> None:
        """Assert ``actual`` is within this row of ``expected`` (torch tensors or arrays)."""
        if _is_torch(actual) and _is_torch(expected):
            import torch

            atol = self.atol * float(expected.abs().max()) if self.scaled else self.atol
            torch.testing.assert_close(actual, expected, rtol=self.rtol, atol=atol, msg=msg or None)
            return
        actual, expected = _numpy(actual), _numpy(expected)
        atol = self.atol * float(np.abs(expected).max()) if self.scaled else self.atol
        np.testing.assert_allclose(actual, expected, rtol=self.rtol, atol=atol, err_msg=msg)

    def holds(self, actual: Any, expected: Any) -> bool:
        """Whether ``actual`` is within this row of ``expected``."""
        actual, expected = _numpy(actual), _numpy(expected)
        atol = self.atol * float(np.abs(expected).max()) if self.scaled else self.atol
        return bool(np.allclose(actual, expected, rtol=self.rtol, atol=atol))


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if _is_torch(value) else np.asarray(value)


def max_rel_err(actual: Any, expected: Any, floor: float = 0.0) -> float:
    """Largest ``|actual - expected|`` over the largest ``|expected|`` (at least ``floor``): the
    measure :class:`edgevit.precision.Tolerance` rows judge ``max_rel_err`` by."""
    actual, expected = _numpy(actual), _numpy(expected)
    return float(np.abs(actual - expected).max() / max(float(np.abs(expected).max()), floor, 1e-12))


# -- the same computation ----------------------------------------------------------------------

#: a reshape, a window partition, a checkpoint loaded under other key names, a layout transposed
EXACT = Close(0.0, 0.0, "the same float32 values moved or reloaded: bit-identical, or the rewrite is wrong")

# -- PyTorch against PyTorch -------------------------------------------------------------------

#: one or two float32 ops on values of order 1 (a pool mixer; a tiny model in numpy vs onnxruntime)
ONE_LAYER = Close(1e-5, 1e-6, "a few float32 ops on values of order 1: a few units in the last place")
#: stages composed, branches or scales folded, a group's rows of the head: the same model in another order
REORDERED = Close(1e-5, 1e-5, "the same float32 model computed in another order or composition: rounding only")
#: the same, judged against the output's scale (pre-logits with the head norm folded into the classifier)
REORDERED_SCALED = Close(1e-5, 1e-5, "another order of the same float32 ops, on values far from 1: relative to scale",
                         scaled=True)
#: a whole model before and after ``reparameterize()`` (BN folded, branches merged over every layer)
REPARAMETERIZED = Close(1e-4, 1e-5, "BN folded and branches merged in every block: float32 rounding adds up over depth")
#: a zoo model's ``reparameterize()`` against its training form, judged against the logits' scale
REPARAMETERIZED_SCALED = Close(0.0, 1e-4, "every block folded; a wrong fold moves logits by 1e-2 of their scale",
                               scaled=True)
#: a pruned sub-model reparameterized, on random inputs (activations far from the BN statistics)
PRUNED_REPARAMETERIZED = Close(1e-5, 1e-4, "BN folded after pruning, random inputs: larger activations, larger rounding")

# -- official outputs (golden files) ---------------------------------------------------------

#: our model against the official code's saved output, relative to the output's scale. float32
#: differences from summation order, a few units in the last place per layer, grow to about 2e-6 of
#: the largest logit over a deep model and change with the thread count (measured: EfficientFormerV2's
#: 1.04e-5 on logits of 5.4 with OMP_NUM_THREADS=1, 0.94e-5 with 2). A wrong weight, layer order or
#: normalisation moves the logits by 1e-2 of their scale or more.
GOLDEN = Close(1e-5, 1e-5, "official output, relative to scale: summation order only, thread-count independent",
               scaled=True)
#: the reparameterized model against the official (unfused) output: folding adds its own rounding
GOLDEN_REPARAMETERIZED = Close(1e-4, 1e-4, "folded model vs the official unfused output: folding rounds too",
                               scaled=True)

# -- the runtime -------------------------------------------------------------------------------

#: softmax scores of one float32 model: two layouts, or the runtime against numpy's softmax
SCORES = Close(1e-5, 0.0, "softmax of the same float32 logits: relative rounding of exp and the sum")
#: the same artifacts on the same backend in another process, thread or transport (a cluster)
SAME_ARTIFACTS = Close(1e-5, 1e-5, "same files, same backend: only thread-count dependent reductions differ")
#: a tiny model run by a plugin's numpy backend against PyTorch (tighter than ARTIFACT["fp32"])
NUMPY_BACKEND = Close(1e-5, 1e-5, "an affine map in float32 numpy vs PyTorch: one matmul's rounding")
#: an exported fp32 plan's logits (onnxruntime) against its PyTorch modules, absolute: the split's
#: pieces are small, so this holds tighter than ARTIFACT["fp32"] relative to scale
PLAN_LOGITS = Close(0.0, 1e-4, "small fp32 pieces on onnxruntime vs PyTorch, logits of order 1-10")

# -- data --------------------------------------------------------------------------------------

#: normalisation undone on a grey image: (x * std + mean) of two channels agree
PREPROCESS = Close(0.0, 1e-5, "float32 normalisation of values in [0, 1]: one multiply-add of rounding")

# -- accuracy and agreement (shares of images) -----------------------------------------------


@dataclass(frozen=True)
class Share:
    """A bound on a share of images (top-1 agreement, accuracy) or on a difference of two, with why."""

    value: float
    why: str


FP32 = precision("fp32").tolerance
INT8 = precision("int8").tolerance
#: an exported fp32 class-wise plan against its PyTorch split on the validation images (below
#: ARTIFACT["fp32"].min_top1 = 1.0: the plan's fusion sees the pieces' rounded features)
PLAN_FP32_AGREEMENT = Share(0.99, "fp32 pieces and fusion: a near-tie may flip one image in a hundred")
#: top-1 of the exported plan against the PyTorch plan's, in percentage points
PLAN_TOP1_POINTS = Share(1.0, "the same predictions but for near-ties: within one point")
#: top-1 with a sub-model missing, recorded in plan.json, against the exported plan run without it
DEGRADED_TOP1_POINTS = Share(1.5, "the recorded figure is PyTorch's; the run is onnxruntime's: near-ties")
#: int8 (w8) against float on the calibration images, in percent, for the digits-trained test models
#: (tighter than ARTIFACT["int8"].min_top1: small models and the images they were calibrated on)
INT8_CALIBRATION_AGREEMENT = Share(87.5, "int8 on its own calibration images: at most 2 of 16 flip")
#: signal-to-quantization-noise of int8 logits against float (dB) for the test models
INT8_SQNR_DB = Share(18.0, "int8 logits: noise below 1/8 of the signal's amplitude")
#: w8 (8-bit weights, float activations) against float: weights only, so far closer than int8
W8_AGREEMENT = Share(99.0, "8-bit weights only: at most one image in a hundred flips")
W8_SQNR_DB = Share(30.0, "8-bit weights only: weight noise ~1/256 of the range, logits within 3%")
#: Core ML palettized / linear weights against float, in percent (coremltools on test_cas_vit)
COREML_WEIGHT_AGREEMENT = {"w8": Share(99.0, "8-bit linear weights: near float"),
                           "w6": Share(90.0, "6-bit palette of 64 values: a few flips"),
                           "w4": Share(75.0, "4-bit palette of 16 values: judged like ARTIFACT['w4'] but measured")}
#: integer kernels against the same QDQ graph in float (exact kernels measure 42-145 dB here; a
#: saturating one 4-11 dB)
KERNEL_SQNR_DB = Share(35.0, "integer kernels vs the QDQ graph in float: exact kernels >= 42 dB")
#: one int8 (QDQ) ONNX file in two runtimes (onnxruntime, OpenVINO) on images of its calibration source:
#: each places its integer kernels and rounds its requantization its own way. On the digits-trained test
#: models (128 digits images) the two measure 32-69 dB apart, top-1 98.4-100% the same, and each is as
#: far from fp32 as the other (25-37 dB); against the QDQ graph in float onnxruntime is 43-70 dB, OpenVINO
#: 32-76 dB. Random-init test models, whose logits are near ties, measure 24 dB and up
INT8_BACKENDS_SQNR_DB = Share(20.0, "one QDQ file, two runtimes' int8 kernels: 32-69 dB measured (trained)")
#: XNNPACK's int8 kernels (a lowered .pte) against PT2E's reference graph in PyTorch (float ops between
#: quantize/dequantize): XNNPACK requantizes in fixed point and fuses ops, so it is not bit-exact with the
#: reference; measured 26.8 dB (test_efficientformerv2), 31.2 (test_tiny_vit) and 44-55 (test_vit) on the
#: test models, of the order of int8's own noise against float (INT8_SQNR_DB), which verification judges
XNNPACK_KERNEL_SQNR_DB = Share(25.0, "XNNPACK int8 vs PT2E's reference: fixed-point requantization, not exact")

# -- counts ------------------------------------------------------------------------------------

#: GMACs counted by edgevit against the registry's figure, and against the paper's
COUNTED_GMACS = Share(0.01, "the same counting rule: rounding of the registry's figure")
PAPER_PARAMS = Share(0.02, "the paper rounds its parameter count to two digits")
PAPER_GMACS = Share(0.05, "papers count MACs with slightly different rules (attention, norms)")
#: sampled shares of 'present' in the fusion head's random masks (thousands of samples)
SAMPLED_SHARE = Share(0.02, "a share estimated from 20,000 random draws: ~6 standard errors")

__all__ = ["ARTIFACT", "Close", "Share", "Tolerance", "max_rel_err"]
