"""Choosing what to quantize, by measurement: the sensitivity pass, the default recipe, --max-drop.

Given a target's quantizer (calibrated once), :func:`quantize_file`:

1. runs the float model on the calibration images (the reference logits);
2. **sensitivity pass**: for every group of ops (each op kind, the first and last layers)
   builds a model that quantizes *only that group* and measures the SQNR of its logits
   against float on (up to 32 of) the calibration images: the error each group adds on its
   own. Once the default recipe is chosen (3), each model block is measured the same way,
   quantized as the recipe quantizes it;
3. **default recipe**: quantizes the kinds with fast integer kernels on the target
   (``default_kinds``); kinds without one stay float (quantizing them would only add error
   and Q/DQ work), with their measured SQNR in the reason. Convolutions and linear layers,
   where the multiply-adds are, are always quantized; every other group (attention matmuls,
   residual adds, LayerNorm / Softmax / GELU where the target has int8 kernels for them, and
   the first and last layers) is kept in float only if quantizing it alone adds at least a
   quarter of the noise that quantizing all conv and linear layers adds
   (:data:`FRAGILE_NOISE_SHARE`); the first and last layers, being conv or linear layers
   themselves, only when that share is also at least twice their share of those layers (in a
   two-layer fusion head each layer is half of them and adds about half the noise: that is its
   size, not fragility). The measured numbers are recorded either way. A recipe that would
   leave nothing quantized is refused rather than written as a float file labelled quantized;
4. **--max-drop P**: while the top-1 agreement with float on the calibration set is more than
   P points below 100 %, keeps the most sensitive remaining group in float and rebuilds; whole
   conv / depthwise / linear kinds are tried only after every block and smaller kind (on
   EfficientFormer-L1 in Core ML, the 2-conv stem block held as much error as all convolutions
   together: keeping the stem float is what helps, not giving up int8 convolutions);
5. writes the final file and a :class:`QuantizeResult` for the manifest.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import ConversionError
from edgevit.quantize.base import TargetQuantizer
from edgevit.quantize.calibration import CalibrationSet
from edgevit.quantize.metrics import compare_logits, sqnr_db
from edgevit.quantize.recipe import (
    DEFAULT_SENSITIVITY_SIZE,
    POSITIONS,
    Recipe,
    Unit,
    select,
)

#: a group is kept in float when quantizing it alone adds at least this share of the conv+linear layers' noise
FRAGILE_NOISE_SHARE = 0.25
#: kinds that are the point of int8 (where the multiply-adds are); never kept float by the default rule
CORE_KINDS = ("conv", "dwconv", "linear")
_CORE_GROUPS = tuple(f"kind:{k}" for k in CORE_KINDS)
#: the --max-drop search stops after this many groups moved to float
MAX_DROP_STEPS = 24


@dataclass
class QuantizeResult:
    """What quantization did, for the manifest (``quantization``) and the report."""

    recipe: Recipe
    calibration: dict[str, Any]
    agreement: dict[str, Any]
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    full: dict[str, Any] | None = None
    max_drop_steps: list[dict[str, Any]] = field(default_factory=list)
    units: dict[str, Any] = field(default_factory=dict)
    kernels: dict[str, Any] = field(default_factory=dict)
    finish: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "calibration": self.calibration,
                "agreement_on_calibration": self.agreement, "all_quantized": self.full,
                "sensitivity": self.sensitivity, "max_drop_steps": self.max_drop_steps, "units": self.units,
                "runtime_kernels": self.kernels, "file": self.finish, "seconds": round(self.seconds, 1)}


def quantize_file(quantizer: TargetQuantizer, calibration: CalibrationSet, recipe: Recipe, out: Path,
                  sensitivity: bool = True, sensitivity_size: int = DEFAULT_SENSITIVITY_SIZE,
                  log: Any = None) -> QuantizeResult:
    """Calibrate, choose the recipe by measurement and write the quantized model at ``out``.

    Args:
        quantizer: the target's quantizer over the converted float file.
        calibration: the calibration images (also the set agreement is measured on).
        recipe: the request: precision, calibration method, groups already forced to float,
            ``max_drop``. With ``chosen_by="given"`` the recipe is used as it is (no default rule).
        sensitivity: run the one-group-at-a-time pass (the default rule needs it; ``max_drop`` runs it
            regardless). Without it only conv and linear layers are quantized (``"unmeasured"``).
        log: ``log(message)`` for progress lines, or None.
    """
    start = time.perf_counter()
    say = log or (lambda message: None)
    images = calibration.images
    units = quantizer.units()
    if not units:
        raise ConversionError(f"the {quantizer.target} quantizer found nothing to quantize in this model")
    recipe = recipe.replace(calib_used=len(images), options={**quantizer.recipe_options(), **recipe.options})
    reference = quantizer.run(quantizer.float_path, images)
    if quantizer.scheme.needs_calibration:
        say(f"calibrating activations on {len(images)} images ({recipe.calib_method})")
        quantizer.calibrate(images, recipe.calib_method)
    work = Path(tempfile.mkdtemp(prefix="candidates.", dir=quantizer.work))
    try:
        search = _Search(quantizer, units, reference, images, work, sensitivity_size, say)
        table, full = [], None
        if (sensitivity or recipe.max_drop is not None) and recipe.chosen_by != "given":
            table, full = search.sensitivity(recipe)
            recipe = default_recipe(recipe, table, full, quantizer)
            block_table, _ = search.sensitivity(recipe, blocks=True)
            table = sorted(table + block_table, key=lambda row: row["sqnr_db"])
        elif recipe.chosen_by != "given":
            recipe = unmeasured_recipe(recipe, quantizer)
        path, agreement = search.measure(recipe, images, reference)
        steps: list[dict[str, Any]] = []
        if recipe.max_drop is not None:
            path, agreement, recipe, steps = search.max_drop(recipe, table, path, agreement)
        kernels = {**quantizer.describe_file(path), **quantizer.kernel_check(path, images[:sensitivity_size])}
        shutil.copyfile(path, out) if path.is_file() else shutil.copytree(path, out)
        finish = quantizer.finish(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    selected = select(units, recipe, quantizer.default_kinds())
    if not selected:
        raise ConversionError(
            f"the {recipe.precision} recipe keeps every op of this model in float ({', '.join(recipe.float_groups)}), "
            f"so the file would be float labelled {recipe.precision}; export it at fp32, or quantize a larger model")
    return QuantizeResult(
        recipe=recipe, calibration={"source": recipe.calib_source, "asked": recipe.calib_size, "used": len(images),
                                    "method": recipe.calib_method if quantizer.scheme.needs_calibration else None},
        agreement=agreement, sensitivity=table, full=full, max_drop_steps=steps,
        units=_unit_counts(units, selected), kernels=kernels, finish=finish,
        seconds=time.perf_counter() - start)


def default_recipe(recipe: Recipe, table: list[dict[str, Any]], full: dict[str, Any] | None,
                   quantizer: TargetQuantizer) -> Recipe:
    """Apply the measured fragile-group rule (see the module docstring) to ``recipe``."""
    default = quantizer.default_kinds()
    by_group = {row["group"]: row for row in table}
    for kind in quantizer.kinds():
        if kind not in default and any(row["group"] == f"kind:{kind}" for row in table):
            sqnr = by_group[f"kind:{kind}"]["sqnr_db"]
            recipe = recipe.with_float(f"kind:{kind}", f"{quantizer.kind_note(kind)} (alone: {sqnr:.1f} dB)")
    core = [by_group[f"kind:{k}"] for k in CORE_KINDS if f"kind:{k}" in by_group]
    if not core and full is None:
        return recipe
    core_noise = sum(_noise(row["sqnr_db"]) for row in core) if core else _noise(full["sqnr_db"])
    core_units = sum(row.get("units", 0) for row in core)
    core_db = -10.0 * np.log10(core_noise) if core_noise > 0 else float("inf")
    for group in [f"kind:{k}" for k in default if k not in CORE_KINDS] + list(POSITIONS):
        row = by_group.get(group)
        if row is None or group in recipe.float_groups:
            continue
        share = _noise(row["sqnr_db"]) / core_noise if core_noise > 0 else 0.0
        row["noise_share"] = round(share, 4)
        threshold = FRAGILE_NOISE_SHARE
        if group in POSITIONS and core_units:  # a first/last layer is one of the core layers: weigh its size
            threshold = max(threshold, 2 * row.get("units", 1) / core_units)
        if share >= threshold:
            recipe = recipe.with_float(group, f"quantizing it alone adds {_share(share)} of the noise of all conv and "
                                              f"linear layers quantized (alone: {row['sqnr_db']:.1f} dB, conv+linear: "
                                              f"{core_db:.1f} dB)")
        else:
            row["decision"] = (f"quantized: alone it adds {share:.1%} of the noise of all conv and linear layers "
                               f"({row['sqnr_db']:.1f} vs {core_db:.1f} dB)")
    return recipe


def unmeasured_recipe(recipe: Recipe, quantizer: TargetQuantizer) -> Recipe:
    """Without a sensitivity pass: only conv and linear layers are quantized; every other kind
    stays float, because nothing was measured to show it is safe."""
    for kind in quantizer.kinds():
        if kind not in CORE_KINDS:
            recipe = recipe.with_float(f"kind:{kind}", "not measured (sensitivity pass skipped): kept in float")
    return recipe.replace(chosen_by="unmeasured")


class _Search:
    """Builds and measures candidate files for one calibrated quantizer."""

    def __init__(self, quantizer: TargetQuantizer, units: list[Unit], reference: np.ndarray, images: np.ndarray,
                 work: Path, sensitivity_size: int, say: Any) -> None:
        self.quantizer = quantizer
        self.units = units
        self.reference = reference
        self.images = images
        self.work = work
        self.sub = slice(0, min(sensitivity_size, len(images)))
        self.say = say
        self.count = 0

    def build(self, selected: list[Unit], recipe: Recipe) -> Path:
        self.count += 1
        path = self.work / f"candidate{self.count}{self.quantizer.float_path.suffix}"
        self.quantizer.build(selected, recipe, path)
        return path

    def measure(self, recipe: Recipe, images: np.ndarray, reference: np.ndarray) -> tuple[Path, dict[str, Any]]:
        path = self.build(select(self.units, recipe, self.quantizer.default_kinds()), recipe)
        return path, compare_logits(reference, self.quantizer.run(path, images))

    def sensitivity(self, recipe: Recipe, blocks: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """SQNR of the logits with only one group quantized, for every group; and with all of them.

        Kind and position groups are measured over every unit of that kind; block groups
        (``blocks=True``) over the units ``recipe`` quantizes in that block.
        """
        images, reference = self.images[self.sub], self.reference[self.sub]
        default, kinds = self.quantizer.default_kinds(), self.quantizer.kinds()
        groups: dict[str, list[Unit]] = {}
        chosen = {u.id for u in select(self.units, recipe, default)}
        for unit in self.units:
            for group in unit.groups():
                if group.startswith("block:"):
                    if blocks and unit.id in chosen:
                        groups.setdefault(group, []).append(unit)
                elif not blocks and unit.kind in (kinds if group.startswith("kind:") else default):
                    groups.setdefault(group, []).append(unit)
        self.say(f"sensitivity pass: {len(groups)} {'block' if blocks else 'op-kind'} groups on {len(images)} images")
        table = []
        for group, members in groups.items():
            path = self.build(members, recipe)
            logits = self.quantizer.run(path, images)
            _remove(path)
            table.append({"group": group, "units": len(members), "sqnr_db": round(sqnr_db(reference, logits), 2),
                          "top1_agreement": round(float((logits.argmax(1) == reference.argmax(1)).mean() * 100), 2)})
        table.sort(key=lambda row: row["sqnr_db"])
        selected = select(self.units, recipe, default) if blocks else [u for u in self.units if u.kind in default]
        path = self.build(selected, recipe)
        full = compare_logits(reference, self.quantizer.run(path, images))
        _remove(path)
        return table, full

    def max_drop(self, recipe: Recipe, table: list[dict[str, Any]], path: Path,
                 agreement: dict[str, Any]) -> tuple[Path, dict[str, Any], Recipe, list[dict[str, Any]]]:
        """Keep the most sensitive groups in float until the top-1 drop is within ``recipe.max_drop``."""
        candidates = [row["group"] for row in table if not row["group"].startswith("kind:")
                      or row["group"][5:] in self.quantizer.default_kinds()]
        # a whole core kind (every conv, every linear layer) goes last: a block or a smaller kind that
        # holds the error is tried first, so that int8 is not given up everywhere for one hot spot
        order = [g for g in candidates if g not in _CORE_GROUPS] + [g for g in candidates if g in _CORE_GROUPS]
        steps = [{"float": list(recipe.float_groups), **agreement}]
        for group in order:
            if 100.0 - agreement["top1_agreement"] <= recipe.max_drop or len(steps) > MAX_DROP_STEPS:
                break
            quantized = select(self.units, recipe, self.quantizer.default_kinds())
            if group in recipe.float_groups or not any(group in u.groups() for u in quantized):
                continue  # already float, or nothing of it is quantized any more
            row = next(r for r in table if r["group"] == group)
            recipe = recipe.with_float(group, f"--max-drop {recipe.max_drop:g}: top-1 agreement was "
                                              f"{agreement['top1_agreement']:.2f}%; most sensitive remaining group "
                                              f"(alone: {row['sqnr_db']:.1f} dB)")
            self.say(f"--max-drop: keeping {group} in float")
            _remove(path)
            path, agreement = self.measure(recipe, self.images, self.reference)
            steps.append({"float": list(recipe.float_groups), **agreement})
        met = 100.0 - agreement["top1_agreement"] <= recipe.max_drop
        recipe = recipe.replace(chosen_by="max-drop", reasons={
            **recipe.reasons, "max_drop": (f"met: top-1 drop {100 - agreement['top1_agreement']:.2f} <= "
                                           f"{recipe.max_drop:g} points" if met else
                                           f"NOT met: top-1 drop {100 - agreement['top1_agreement']:.2f} > "
                                           f"{recipe.max_drop:g} points after {len(steps) - 1} groups in float")})
        return path, agreement, recipe, steps


def _share(share: float) -> str:
    """0.31 -> '31%'; 896.0 -> '896x'."""
    return f"{share:.0%}" if share < 10 else f"{share:.0f}x"


def _noise(sqnr: float) -> float:
    return float(10.0 ** (-sqnr / 10.0))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _unit_counts(units: list[Unit], selected: list[Unit]) -> dict[str, Any]:
    chosen = {u.id for u in selected}
    by_kind: dict[str, list[int]] = {}
    for unit in units:
        counts = by_kind.setdefault(unit.kind, [0, 0])
        counts[0] += unit.id in chosen
        counts[1] += 1
    return {"quantized": len(chosen), "total": len(units),
            "by_kind": {kind: f"{q}/{n}" for kind, (q, n) in sorted(by_kind.items())}}
