"""The one table of precisions: what each numeric format stores, computes, costs and is judged by.

Every part of edgevit that needs to know a precision reads :data:`PRECISIONS`: the export
options (which names exist), the quantizers (bits, linear or palettized weights, whether
activations are calibrated), verification (its :class:`Tolerance` row), partition's memory
model (:meth:`Precision.weight_bytes`) and the CLI help. Which *targets* produce a precision is
the target's business (``Target.precisions`` in :mod:`edgevit.export.targets`).

Pure value objects; imports nothing heavy. Adding a precision is one ``PRECISIONS.register``
line here, then adding its name to the targets (and their quantizers) that can make it::

    PRECISIONS.register("w2", Precision("w2", "2-bit palettized weights, float activations",
                                        weight_bits=2, weights="palettized",
                                        tolerance=Tolerance(None, 0.8, 0.5, "2-bit: cosine and top-1")))

Example:
    >>> from edgevit.precision import precision
    >>> w4 = precision("w4")
    >>> w4.quantized, w4.needs_calibration, w4.weight_bytes(1_000_000)
    (True, False, 500000)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgevit.errors import InvalidArgumentError
from edgevit.registry import Registry

__all__ = ["Precision", "Tolerance", "PRECISIONS", "TOLERANCES", "precision", "ordered", "quantized_names",
           "check_quantized", "N_HELD_OUT"]

#: held-out images of the calibration source that precisions judged in domain are verified on
N_HELD_OUT = 16


@dataclass(frozen=True)
class Tolerance:
    """Thresholds one precision is judged by when an artifact is verified; None: reported, not judged.

    Attributes:
        max_rel_err: largest absolute difference over the largest reference magnitude.
        min_cosine: lowest cosine similarity of one sample's outputs.
        min_top1: lowest share of samples whose arg-max class agrees.
        why: one line for the verification report.
        judge_random: whether random-tensor samples are judged (int8 activations are calibrated on
            images, and random tensors fall outside any calibration set: reported, not judged).
        in_domain: judged on held-out images of the calibration source when there are any
            (calibrated activations); the other samples are then reported, not judged.
    """

    max_rel_err: float | None
    min_cosine: float
    min_top1: float
    why: str
    judge_random: bool = True
    in_domain: bool = False


@dataclass(frozen=True)
class Precision:
    """A numeric format an artifact is stored and run in.

    Attributes:
        name: registry name (``"fp32"``, ``"int8"``...).
        description: one line for reports and ``--help``.
        weight_bits: bits per stored weight value.
        activation_bits: bits of the *integer* activations the runtime computes with; None: the
            activations stay float (at the precision of ``weights == "float"`` formats, else the
            target's float).
        weights: ``"float"``, ``"linear"`` (integers with a scale and zero point per output
            channel) or ``"palettized"`` (a k-means look-up table of ``2**weight_bits`` values per
            weight tensor).
        tolerance: how verification judges an artifact at this precision.
    """

    name: str
    description: str
    weight_bits: int
    activation_bits: int | None = None
    weights: Literal["float", "linear", "palettized"] = "float"
    tolerance: Tolerance = Tolerance(1e-4, 0.99999, 1.0, "float32")

    @property
    def quantized(self) -> bool:
        """Made by edgevit.quantize from the converted float model (int8, w8, w6, w4)."""
        return self.weights != "float"

    @property
    def needs_calibration(self) -> bool:
        """Whether making it needs representative inputs (integer activations)."""
        return self.activation_bits is not None

    @property
    def activation_bytes(self) -> int:
        """Bytes of one activation value as a runtime holds it between ops (int8 runtimes keep
        float tensors at the boundaries of the quantized regions, so int8 counts as 4)."""
        return 4 if self.quantized else self.weight_bits // 8

    def weight_bytes(self, params: int, float_params: int = 0) -> int:
        """Bytes of ``params`` weights stored at this precision, ``float_params`` of them kept in
        float32 by a quantization recipe (look-up tables and per-channel scales are under 1% of a
        model and not counted). Float precisions ignore ``float_params``.

        Example:
            >>> PRECISIONS.get("w8").weight_bytes(1_000_000, float_params=100_000)
            1300000
        """
        if not 0 <= float_params <= params:
            raise InvalidArgumentError(f"float_params must be between 0 and params ({params}), got {float_params}; "
                                       "count the float parameters of the same weights")
        kept = float_params if self.quantized else 0
        return int(round((params - kept) * self.weight_bits / 8 + kept * 4))


PRECISIONS: Registry[Precision] = Registry("precision")
PRECISIONS.register("fp32", Precision(
    "fp32", "32-bit float weights and compute", 32,
    tolerance=Tolerance(1e-4, 0.99999, 1.0, "float32 everywhere: only the order of operations differs")))
PRECISIONS.register("fp16", Precision(
    "fp16", "16-bit float weights; fp16 compute where the target computes in fp16", 16,
    tolerance=Tolerance(2e-2, 0.999, 0.75, "float16 weights/compute: ~3 significant digits per layer")))
# Quantized precisions: made by edgevit.quantize from the converted float model. Judged by cosine
# similarity and top-1 agreement only (element-wise error of int8 logits says little).
PRECISIONS.register("int8", Precision(
    "int8", "int8 weights (per channel) and int8 activations (calibrated)", 8, 8, "linear",
    Tolerance(None, 0.95, 0.75, "int8 weights and activations: judged by cosine and top-1 agreement on held-out "
              "images of the calibration source (on the photos when it has none left); inputs outside the "
              "calibration domain are reported only", judge_random=False, in_domain=True)))
PRECISIONS.register("w8", Precision(
    "w8", "int8 weights (per channel), float activations", 8, None, "linear",
    Tolerance(None, 0.99, 0.75, "int8 weights, float activations: judged by cosine and top-1 agreement")))
PRECISIONS.register("w6", Precision(
    "w6", "6-bit palettized weights (k-means look-up table), float activations", 6, None, "palettized",
    Tolerance(None, 0.98, 0.75, "6-bit palettized weights: judged by cosine and top-1 agreement")))
PRECISIONS.register("w4", Precision(
    "w4", "4-bit palettized weights (k-means look-up table), float activations", 4, None, "palettized",
    Tolerance(None, 0.9, 0.5, "4-bit palettized weights: judged by cosine and top-1 agreement")))

#: ``{name: Tolerance}``: the verification thresholds, read from the table (one row per precision)
TOLERANCES: dict[str, Tolerance] = {name: PRECISIONS.get(name).tolerance for name in PRECISIONS.names()}


def precision(name: str) -> Precision:
    """The precision called ``name`` (any case); an unknown name lists the valid ones.

    Raises:
        InvalidArgumentError: not a precision.
    """
    return PRECISIONS.get(PRECISIONS.canonical(name))


def ordered() -> tuple[Precision, ...]:
    """Every precision, floats first, then by falling weight bits (integer activations first)."""
    table = [PRECISIONS.get(n) for n in PRECISIONS.names()]
    return tuple(sorted(table, key=lambda p: (p.quantized, -p.weight_bits, p.activation_bits is None)))


def quantized_names() -> tuple[str, ...]:
    """``("int8", "w8", "w6", "w4")``: the precisions edgevit.quantize makes."""
    return tuple(p.name for p in ordered() if p.quantized)


def check_quantized(name: str) -> Precision:
    """The quantized precision ``name``; a float or unknown one is refused, listing the quantized ones."""
    found = PRECISIONS.get(name) if name in PRECISIONS.names() else None
    if found is None or not found.quantized:
        raise InvalidArgumentError(f"{name!r} is not a quantized precision; valid: {', '.join(quantized_names())}")
    return found
