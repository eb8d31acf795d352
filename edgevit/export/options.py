"""Export options and precisions, as frozen value objects.

:class:`ExportOptions` is what both ``edgevit.export(...)`` and ``edgevit export ...`` take;
the CLI parses its flags into one and calls the same function.

The quantized precisions (``int8``, ``w8``, ``w6``, ``w4``) are made by :mod:`edgevit.quantize`
in the pipeline's ``quantize`` step, from the converted float model and calibration images
(``calib``, ``calib_size``, ``calib_method``); ``max_drop`` bounds their top-1 loss.

Precisions (``fp32``, ``fp16``, ``int8``...) come from the one table in :mod:`edgevit.precision`;
each target says which of them it can produce (``Target.all_precisions``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgevit.errors import InvalidArgumentError
from edgevit.precision import PRECISIONS

#: Core ML deployment targets an ML Program can be built for (ML Programs need iOS15+).
DEPLOYMENT_TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18")
DEFAULT_DEPLOYMENT_TARGET = "iOS16"
#: ONNX opsets: 18 is the oldest with everything the zoo needs (LayerNormalization, ReduceMean axes as input);
#: 20 is the default: GELU is one ``Gelu`` op there (five ops at 18: Div/Erf/Add/Mul/Mul), which onnxruntime
#: and OpenVINO run as one kernel (benchmarks/results/onnx_path.md)
MIN_OPSET = 18
DEFAULT_OPSET = 20
MAX_BATCH = 1024

Batch = int | Literal["dynamic"]


@dataclass(frozen=True)
class ExportOptions:
    """Everything an export is asked to do, besides the model itself.

    Attributes:
        target: a name in ``edgevit.export.TARGETS`` (``"onnx"``, ``"tflite"``, ``"coreml"``, ``"executorch"``).
        precision: a name in :data:`edgevit.precision.PRECISIONS` that the target produces.
        weights: a checkpoint for a zoo model given by name (None: random init).
        image_size / num_classes: build the zoo model at this size / with this many classes.
        batch: a fixed batch size, or ``"dynamic"`` (targets that support it).
        out: the folder in which ``<name>-<target>-<precision>/`` is written.
        verify: run the artifact and compare it with PyTorch (default True).
        quiet: no progress output (progress is also off when stderr is not a terminal).
        channels_last: NHWC input (TFLite), so that a phone's camera frames need no transpose.
        deployment_target: Core ML minimum deployment target (``"iOS16"``...).
        opset: ONNX opset (18 or newer).
        name: the artifact's model name (default: the zoo name or the module's class name).
        calib: calibration images for quantized precisions: ``"digits"`` or an image folder.
        calib_size: how many calibration images (default 128).
        calib_method: activation ranges from ``minmax``, ``percentile`` or ``entropy`` (int8).
        max_drop: keep the most sensitive layers in float until top-1 agreement with float on the
            calibration set is within this many points (quantized precisions).
        data: a labelled set (``"digits"`` or a folder) whose validation-split accuracy of the
            artifact and of PyTorch goes into the verification report.
        onnx_int8_format: how an int8 ONNX file stores weights (``edgevit.quantize.onnx.INT8_FORMATS``):
            ``u8s8-reduced`` (default: 7-bit weights, exact on every CPU), ``u8u8`` (8-bit, exact on
            every CPU, slower on x86) or ``u8s8`` (8-bit, exact only on VNNI x86 and ARM).
        ort_format: also write ``model.ort``, the ONNX file in onnxruntime's ORT format (what
            onnxruntime's mobile and minimal builds load), optimized once and checked against
            ``model.onnx`` (ONNX only).
    """

    target: str = "onnx"
    precision: str = "fp32"
    weights: Path | None = None
    image_size: int | None = None
    num_classes: int | None = None
    batch: Batch = 1
    out: Path = Path(".")
    verify: bool = True
    quiet: bool = False
    channels_last: bool = False
    deployment_target: str = DEFAULT_DEPLOYMENT_TARGET
    opset: int = DEFAULT_OPSET
    name: str | None = None
    calib: str = "digits"
    calib_size: int = 128
    calib_method: str = "minmax"
    max_drop: float | None = None
    data: str | None = None
    onnx_int8_format: str = "u8s8-reduced"
    ort_format: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.weights is not None:
            object.__setattr__(self, "weights", Path(self.weights))
        object.__setattr__(self, "batch", parse_batch(self.batch))
        # matched without regard to case; an unknown one lists the valid ones (target names: export_all)
        object.__setattr__(self, "precision", PRECISIONS.canonical(self.precision))
        if self.deployment_target not in DEPLOYMENT_TARGETS:
            raise InvalidArgumentError(
                f"unknown Core ML deployment target {self.deployment_target!r}; valid: {', '.join(DEPLOYMENT_TARGETS)}"
            )
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or self.opset < MIN_OPSET:
            raise InvalidArgumentError(
                f"ONNX opset must be an integer >= {MIN_OPSET} (LayerNormalization and the torch.onnx dynamo "
                f"exporter need it), got {self.opset!r}"
            )
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise InvalidArgumentError(f"artifact name must be a plain file name, got {self.name!r}")
        from edgevit.quantize.recipe import CALIB_METHODS, check_calib_size, check_max_drop

        object.__setattr__(self, "calib", str(self.calib))
        check_calib_size(self.calib_size)
        if self.calib_method not in CALIB_METHODS:
            raise InvalidArgumentError(
                f"unknown calibration method {self.calib_method!r}; valid: {', '.join(CALIB_METHODS)}"
            )
        if self.max_drop is not None:
            object.__setattr__(self, "max_drop", check_max_drop(self.max_drop))
        if self.data is not None:
            object.__setattr__(self, "data", str(self.data))
        from edgevit.quantize.onnx import int8_format

        int8_format(self.onnx_int8_format)  # unknown format: lists the valid ones and where each is exact
        if not isinstance(self.ort_format, bool):
            raise InvalidArgumentError(f"ort_format must be True or False, got {self.ort_format!r}")

    @property
    def dynamic_batch(self) -> bool:
        return self.batch == "dynamic"

    @property
    def layout(self) -> str:
        return "NHWC" if self.channels_last else "NCHW"

    def replace(self, **changes: Any) -> ExportOptions:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as written to the manifest (paths as strings)."""
        data = dataclasses.asdict(self)
        data["out"] = str(self.out)
        data["weights"] = str(self.weights) if self.weights else None
        return data


def parse_batch(value: Any) -> Batch:
    """``1``, ``"4"`` or ``"dynamic"`` -> ``1``, ``4`` or ``"dynamic"``; anything else is refused."""
    if value == "dynamic":
        return "dynamic"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH:
        raise InvalidArgumentError(
            f"batch must be a positive integer up to {MAX_BATCH} or 'dynamic', got {value!r}"
        )
    return value


def split_names(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"onnx,tflite"`` or ``["onnx", "tflite"]`` -> ``["onnx", "tflite"]`` (order kept, duplicates dropped)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [item.strip() for item in items if item and item.strip()]
    if not names:
        raise InvalidArgumentError(f"expected at least one name, got {value!r}")
    return list(dict.fromkeys(names))


#: options that mean something only for some targets or precisions: (what they apply to, test)
_ONLY_FOR: dict[str, tuple[str, Any]] = {
    "opset": ("ONNX (--target onnx)", lambda t, p: t == "onnx"),
    "deployment_target": ("Core ML (--target coreml)", lambda t, p: t == "coreml"),
    "ort_format": ("ONNX (--target onnx)", lambda t, p: t == "onnx"),
    "onnx_int8_format": ("ONNX int8 (--target onnx --precision int8)", lambda t, p: t == "onnx" and p == "int8"),
    **{name: ("the quantized precisions (--precision int8, w8, w6 or w4)", lambda t, p: PRECISIONS.get(p).quantized)
       for name in ("calib", "calib_size", "calib_method", "max_drop")},
}


def check_options_apply(options: ExportOptions, targets: list[str], precisions: list[str]) -> None:
    """Refuse an option set away from its default that no requested target/precision uses, before
    any work: it would be silently ignored (``--opset 30 --target tflite``).

    Raises:
        InvalidArgumentError: naming the option, what it applies to and what was asked.
    """
    defaults = ExportOptions.__dataclass_fields__
    for name, (applies_to, applies) in _ONLY_FOR.items():
        if getattr(options, name) == defaults[name].default:
            continue
        if not any(applies(t, p) for t in targets for p in precisions):
            flag = "--" + name.replace("_", "-")
            raise InvalidArgumentError(
                f"{flag} applies only to {applies_to}, and this export is {', '.join(targets)} at "
                f"{', '.join(precisions)}; drop {flag}, or add a target or precision it applies to")
