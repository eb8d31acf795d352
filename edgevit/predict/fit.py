"""Per-kernel cost models fitted to a device profile (numpy least squares, non-negative).

For each kernel kind and precision the profile timed, the model is linear in the kind's
features (:data:`edgevit.predict.kernels.KINDS`)::

    ms = overhead + sum(coefficient[f] * feature[f])        every term >= 0

fitted on the profile's timings minus the ``run`` timing (the fixed cost of one inference
call, measured on an empty model, which a whole model pays once).

A kernel alone in its calibration model costs more than the same kernel inside a model (its
threads wake for it, its code and weights are cold). Where a profile timed a kind both alone and
in chains (several copies one after another: a copy's ``extra`` holds the others), the fit gives
that kind one more term, an **isolation** cost paid once per calibration model, told apart
from the per-kernel cost by the two model shapes; predictions leave it out. Every model is linear in
its parameters, so all kinds are fitted in one system: a calibration model's time is the sum
of its kernel's cost and its ``extra`` kernels' costs (the layout transposes around a TFLite
convolution, the QuantizeLinear before an int8 product), each in its own block of columns. A
kind seen only as an extra (a DEQUANTIZE) is fitted from the models it appears in.

**A call's own copying.** A runtime's ``run`` copies the model's inputs in and its outputs
out (LiteRT's ``set_tensor`` / ``get_tensor``, onnxruntime's output allocation), and a
calibration model of a memory-bound kernel pays about as much for that as for its kernel: on
this project's AVX2 machine a 2-D transpose of 37,824 floats took 0.012 ms in LiteRT's
``invoke`` and 0.050 ms as a whole call (``benchmarks/results/tflite_copies.md``). Where the
profile records each timed model's input and output bytes (``io_bytes``), the fit prices them
first, at one cost per byte (:attr:`CostModel.io_ms_per_byte`), from the kinds timed both alone
and in chains, whose chains copy once for several kernels: per kind and precision, a least-squares
fit of each model's time to a constant, its bytes in and out, and its kernels' main feature and
count; the median over the kinds of the per-byte cost (:func:`io_cost`). Every timing is then
fitted less its own copying, and a prediction charges it once, on the predicted model's own
inputs and outputs. Fitting it as one more column of the joint system instead let it take costs
that belong to the kernels (0.12 ms/MB on this machine's LiteRT profile, the element-wise ops
priced at 0), against 0.045-0.07 ms/MB from each chained kind alone.

**Reference models.** A model's kernels, each priced from its own calibration models, still do
not add up to the model: a kernel inside a model runs after others (warm threads, a layout
already converted, caches holding what the last one wrote), and the fit cannot tell that from
calibration models alone. On this project's AVX2 machine the sum over-predicted 25 to 31 of 32
cells (ONNX and TFLite, fp32 and int8), by a median of 13-21%. A profile may hold whole models timed the
same way (:class:`~edgevit.predict.profile.ReferenceTiming`); the fit then gives each precision
one **scale**, the median over its references of measured / predicted (less the ``run`` time
both). ``fit(profile, leave_out=family)`` leaves a family's references out, so a model of that
family is predicted from other families' models only (how ``benchmarks/predictor.py`` judges
the predictor).

The references do not miss by one factor for every kind: the token kinds (:data:`TOKEN_KINDS`:
linear layers, attention products, softmax, LayerNorm, GELU) of an attention-heavy ViT and the
convolutions of a conv-heavy CAS-ViT can land apart. Since predictor version 10 each precision
gets two factors, ``a`` for the token kinds and ``b`` for the rest (:attr:`CostModel.group_scales`,
:func:`group_scales`): least squares on the references' relative errors,
``(fixed + a * token + b * rest) / measured - 1``, damped toward the single median factor by
:data:`SCALE_DAMPING` (as many references' weight pulling each factor to it): a handful of
references cannot pin two free factors (undamped, this project's benchmark scored worse on 7 of 8
sets of measurements; damped, 405 cells within ±10% against 383 of 896 over four runs:
``docs/predict.md``). Predictions multiply their token kernels by ``a`` and the rest by ``b``.

**One request after an idle gap.** The calibration and reference models are timed back to
back. A device asked once in a while (a split plan's piece, once per end-to-end request) runs
each request with its threads asleep and its caches cold: on this project's AVX2 VM, without
a CPU quota, a 1.3 ms ViT sub-model took 2.75 ms after 20 ms idle, a 0.82 ms linear 1.97 ms, a
4.4 ms CAS-ViT 5.8 ms and a 46 ms EfficientFormer-L1 52 ms. The cost is not proportional (x11
for an empty model, x1.1 at 15 ms), and under a CPU quota it can turn into a saving (a request
after idle starts with a fresh period's share). Where the profile timed a ladder of calibration
models and its references that way too (``idle_ms``), the fit keeps the measured ratio
``idle_ms / ms`` as a curve over ``log(ms)``: the models are grouped by size in quarter decades,
each group gives its median size and ratio, and a model of any size gets the ratio interpolated
between the groups around it (flat beyond the smallest and the largest). A prediction gives
both figures (:attr:`~edgevit.predict.predictor.Prediction.idle_ms`); the references of the
family left out stay out of the curve.

The solver is an active-set non-negative least squares on columns scaled to [0, 1]: the most
negative coefficient is dropped and the rest refitted until none is, so a feature that does
not explain this device's times gets 0 rather than a negative cost. With fewer timings than
terms, a kind's trailing features are left out (the first is the main one: FLOPs, elements
or bytes).

Example:
    >>> model = fit(load_profile("here.json"))  # doctest: +SKIP
    >>> model.ms(Kernel.of("softmax", ROWS=788, COLS=197))  # doctest: +SKIP
    0.052
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from edgevit.predict.kernels import KINDS, MAPPING_VERSION, Kernel, features
from edgevit.predict.profile import DeviceProfile, KernelTiming, ReferenceTiming

__all__ = ["SCALE_DAMPING", "STAND_INS", "TOKEN_KINDS", "CostModel", "KindModel", "fit", "group_scales", "idle_curve",
           "idle_ratio", "idle_time", "io_cost", "mapping_note"]

#: changes whenever fitting or kernel mapping changes what a prediction is (recorded in predictions and plans)
PREDICTOR_VERSION = 10
#: the kinds that work on a ViT's tokens; the reference scale gives them a factor of their own (:func:`group_scales`)
TOKEN_KINDS = frozenset({"linear", "matmul", "softmax", "layernorm", "gelu"})
#: how hard the two reference factors are pulled toward the single median one, in references' weight
SCALE_DAMPING = 3.0
#: kinds never timed alone -> the kind (fp32) whose fitted model costs them
STAND_INS = {"quantize": "elementwise", "dequantize": "elementwise"}


@dataclass(frozen=True)
class KindModel:
    """The fitted cost of one kernel kind in one precision.

    Attributes:
        overhead_ms: the per-kernel constant (dispatch, threads waking).
        coefficients: ``((feature, ms per unit), ...)``, features left out of the fit absent.
        samples: timings it was fitted on.
        max_error_ms: the largest absolute residual on them.
        isolation_ms: what a calibration model of this kind paid for running it alone (0 when
            the profile timed no chains of it); not part of :meth:`ms`.
        stand_in: the kind whose fitted model this is (:data:`STAND_INS`), or ``""``.
    """

    kind: str
    dtype: str
    overhead_ms: float
    coefficients: tuple[tuple[str, float], ...]
    samples: int
    max_error_ms: float
    isolation_ms: float = 0.0
    stand_in: str = ""

    def ms(self, kernel: Kernel) -> float:
        values = features(kernel)
        return self.overhead_ms + sum(c * values[name] for name, c in self.coefficients)


@dataclass(frozen=True)
class CostModel:
    """The fitted models of one profile: ``run_ms`` once per inference, plus each kernel's cost.

    ``scales``: ``{precision: (factor, references)}``, what a model of that precision multiplies
    its kernels' sum by, and how many reference models gave it (none: 1.0); ``scale_ranges``:
    ``{precision: (lowest, highest)}``, the references' own ratios the factor is the median of (how
    far a model's kernels can land from its price, as far as the references tell);
    ``group_scales``: ``{precision: (token kinds' factor, the rest's factor)}`` (:func:`group_scales`),
    what a prediction multiplies its kernels by (see :meth:`factor`).
    ``idle_curve``: ``((ms, ratio), ...)``, a model's time one request after an idle gap of
    ``idle_gap_ms`` over its back-to-back time, by size (:func:`idle_ratio`), from ``idle_points``
    models timed both ways (empty: not measured). ``io_ms_per_byte``: what a call pays per byte
    of the model's inputs and outputs (:func:`io_cost`; 0: the profile did not record them).
    ``notes``: what the fit could not vouch for (:func:`mapping_note`); a prediction shows them.
    """

    backend: str
    run_ms: float
    models: Mapping[tuple[str, str], KindModel] = field(hash=False)
    profile: str = ""
    cpu_flags: tuple[str, ...] = ()
    scales: Mapping[str, tuple[float, int]] = field(default_factory=dict, hash=False)
    scale_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict, hash=False)
    group_scales: Mapping[str, tuple[float, float]] = field(default_factory=dict, hash=False)
    idle_curve: tuple[tuple[float, float], ...] = ()
    idle_gap_ms: float = 0.0
    idle_points: int = 0
    io_ms_per_byte: float = 0.0
    notes: tuple[str, ...] = ()

    def factor(self, kind: str, precision: str) -> float:
        """What a kernel of ``kind`` in a model of ``precision`` is multiplied by: its group's factor
        (:attr:`group_scales`), else the precision's single factor, else 1."""
        if precision in self.group_scales:
            token, rest = self.group_scales[precision]
            return token if kind in TOKEN_KINDS else rest
        return self.scales.get(precision, (1.0, 0))[0]

    def io_ms(self, nbytes: int) -> float:
        """What one call pays to copy ``nbytes`` of inputs and outputs."""
        return self.io_ms_per_byte * nbytes

    def ms(self, kernel: Kernel) -> float | None:
        """The predicted time of ``kernel``; 0 for a free one; None when the profile has no timing of its kind and precision."""
        if KINDS[kernel.kind].free:
            return 0.0
        model = self.models.get((kernel.kind, kernel.dtype))
        return None if model is None else model.ms(kernel)

    def price(self, kernel: Kernel) -> tuple[float | None, bool]:
        """``(ms, approximated)``: :meth:`ms`, or for an int8 kernel whose kind the profile timed in
        float only, the float kernel's (``approximated`` True); ``(None, False)`` when neither was timed."""
        ms = self.ms(kernel)
        if ms is None and kernel.dtype != "fp32":
            ms = self.ms(replace(kernel, dtype="fp32"))
            return ms, ms is not None
        return ms, False


def fit(profile: DeviceProfile, leave_out: str | None = None) -> CostModel:
    """Fit one :class:`KindModel` per (kind, precision) in the profile, all in one least-squares
    system; the kinds of :data:`STAND_INS` first, from the timings without them, as their stand-in;
    then each precision's scale from the profile's reference models, those of family ``leave_out`` left out."""
    runs = [t for t in profile.timings if t.kernel.kind == "run"]
    run_ms = float(np.median([t.ms for t in runs])) if runs else 0.0
    timings = [t for t in profile.timings if t.kernel.kind != "run" and not KINDS[t.kernel.kind].free]
    notes = tuple(note for note in (mapping_note(profile),) if note)
    if not timings:
        return CostModel(profile.backend, run_ms, {}, profile.summary(), profile.cpu_flags, notes=notes)
    io = io_cost(timings, run_ms)  # the kernels (and the empty model) are fitted less each call's own copying
    if io:
        run_ms = float(np.median([max(0.0, t.ms - io * t.io_bytes) for t in runs])) if runs else 0.0
        timings = [replace(t, ms=max(0.0, t.ms - io * t.io_bytes)) for t in timings]
    own = {(t.kernel.kind, t.kernel.dtype) for t in timings}
    stood = {key: (STAND_INS[k.kind], "fp32") for t in timings for k in t.extra
             if (key := (k.kind, k.dtype)) not in own and k.kind in STAND_INS and (STAND_INS[k.kind], "fp32") in own}
    known: dict[tuple[str, str], KindModel] = {}
    if stood:  # the stand-ins' models from the timings that hold none of the stood-in kinds
        base = _solve([t for t in timings if not any((k.kind, k.dtype) in stood for k in t.extra)], run_ms, {})
        known = {key: replace(base[stand_in], kind=key[0], dtype=key[1], samples=0, isolation_ms=0.0,
                              stand_in=stand_in[0]) for key, stand_in in stood.items() if stand_in in base}
    model = CostModel(profile.backend, run_ms, {**_solve(timings, run_ms, known), **known}, profile.summary(),
                      profile.cpu_flags, io_ms_per_byte=io, notes=notes)
    references = [r for r in profile.references if r.family != leave_out]
    pairs = [(t.ms, t.idle_ms) for t in (*profile.timings, *references) if t.idle_ms is not None and t.ms > 0]
    sums = _reference_sums(model, references)
    ratios = {precision: [own / (token + rest) for _, own, token, rest in rows] for precision, rows in sums.items()}
    return replace(model, scales={precision: (float(np.median(r)), len(r)) for precision, r in ratios.items()},
                   scale_ranges={precision: (min(r), max(r)) for precision, r in ratios.items()},
                   group_scales={precision: group_scales(rows) for precision, rows in sums.items()},
                   idle_curve=idle_curve(pairs), idle_gap_ms=profile.measurement.idle_gap_ms if pairs else 0.0,
                   idle_points=len(pairs))


def group_scales(references: list[tuple[float, float, float, float]], damping: float | None = None) -> tuple[float, float]:
    """``(a, b)``: the factors of the token kinds and of the rest, from ``references``, each
    ``(measured ms, measured less the fixed costs, token kernels' sum, the rest's sum)``.

    Least squares of the relative errors ``(fixed + a * token + b * rest) / measured - 1`` plus
    ``damping`` (default :data:`SCALE_DAMPING`) times ``(a - s)^2 + (b - s)^2``, ``s`` the median of
    ``own / (token + rest)``: the single factor, which the two equal when every reference agrees
    with it. A negative factor gives ``(s, s)``.
    """
    damping = SCALE_DAMPING if damping is None else damping
    single = float(np.median([own / (token + rest) for _, own, token, rest in references]))
    x = [[token / ms, rest / ms] for ms, _, token, rest in references]
    y = [own / ms for ms, own, _, _ in references]
    if damping:
        x += list(np.sqrt(damping) * np.eye(2))
        y += [np.sqrt(damping) * single] * 2
    (token, rest), *_ = np.linalg.lstsq(np.array(x), np.array(y), rcond=None)
    return (single, single) if min(token, rest) < 0 else (float(token), float(rest))


def mapping_note(profile: DeviceProfile) -> str | None:
    """Why ``profile``'s kernels may not be the ones this edgevit maps, or None when they are.

    The probe maps each calibration model's other kernels (``extra``, subtracted by the fit) and
    each reference model's kernels (the scale's denominator) when it probes, and the profile keeps
    them as mapped. After a change to the fusion rules (:data:`~edgevit.predict.kernels.MAPPING_VERSION`)
    the same files map to other kernels, and the scale compares the measured times with kernel
    sums this edgevit would not form (version 8 changed onnxruntime's int8 groups, and with them
    the int8 references' kernel sums). Only a new probe maps them again.
    """
    if profile.mapping_version == MAPPING_VERSION:
        return None
    said = (f"was mapped to kernels with mapping version {profile.mapping_version}" if profile.mapping_version is not None
            else "does not record which kernel mapping its probe used (it predates edgevit recording it)")
    return (f"{profile.device}'s profile {said}; this edgevit maps with version {MAPPING_VERSION}. Its calibration and "
            "reference models may map to other kernels now, and the fit and the reference scale built on them may be "
            "off: probe the device again")


#: the width of a size group of the idle curve, in decades of milliseconds
IDLE_BIN_DECADES = 0.25


def idle_curve(pairs: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """``((ms, ratio), ...)`` in rising ``ms``: the models timed back to back (``ms``) and one
    request after an idle gap, grouped by size in :data:`IDLE_BIN_DECADES`, each group's median size
    and median ``idle / ms`` (empty: no pairs)."""
    groups: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for ms, idle in pairs:
        groups[int(np.floor(np.log10(ms) / IDLE_BIN_DECADES))].append((ms, idle / ms))
    return tuple((float(np.median([m for m, _ in g])), float(np.median([r for _, r in g])))
                 for _, g in sorted(groups.items()))


def idle_time(curve: tuple[tuple[float, float], ...], ms: float) -> float | None:
    """A model of back-to-back time ``ms`` one request after an idle gap: ``ms`` times the curve's
    ratio at ``ms`` (None for an empty curve: the profile did not time models that way)."""
    return ms * idle_ratio(curve, ms) if curve else None


def idle_ratio(curve: tuple[tuple[float, float], ...], ms: float) -> float:
    """The curve's ``idle / back-to-back`` ratio at ``ms``: interpolated in ``log(ms)`` between the
    groups around it, flat beyond the ends; 1.0 for an empty curve."""
    if not curve:
        return 1.0
    sizes, ratios = zip(*curve, strict=True)
    return float(np.interp(np.log(max(ms, 1e-9)), np.log(sizes), ratios))


def _reference_sums(model: CostModel, references: list[ReferenceTiming]) -> dict[str, list[tuple[float, float, float, float]]]:
    """``{precision: [(measured, measured less the run time and the copying of its inputs and
    outputs, its token kernels' predicted sum, the rest's)]}``, a row per reference; a reference
    with a kernel the model cannot price, or none, is left out."""
    sums: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    for reference in references:
        prices = [(model.price(k)[0], n, k.kind in TOKEN_KINDS) for k, n in reference.kernels]
        if all(ms is not None for ms, _, _ in prices) and sum(ms * n for ms, n, _ in prices) > 0 and reference.ms > 0:
            own = reference.ms - model.run_ms - model.io_ms(reference.io_bytes)
            token = sum(ms * n for ms, n, is_token in prices if is_token)
            sums[reference.precision].append((reference.ms, max(0.0, own), token,
                                              sum(ms * n for ms, n, is_token in prices if not is_token)))
    return dict(sorted(sums.items()))


#: timings a kind needs (alone and in chains together) to give its estimate of the copying cost
IO_MIN_TIMINGS = 6


def io_cost(timings: list[KernelTiming] | tuple[KernelTiming, ...], run_ms: float) -> float:
    """ms per byte of a call's inputs and outputs (0 when no timing recorded them, or no kind was
    timed both alone and in chains often enough).

    Per kind and precision, over its calibration models that hold only kernels of that kind (a
    kernel alone, or a chain of them), least squares of ``ms - run_ms`` on a constant (the model's
    isolation), its ``io_bytes``, the sum of its kernels' main feature and their count; the chains
    copy once for several kernels, which tells the copying apart from the kernels. The median over
    the kinds of the non-negative per-byte estimates.
    """
    groups: dict[tuple[str, str], list[KernelTiming]] = defaultdict(list)
    for t in timings:
        key = (t.kernel.kind, t.kernel.dtype)
        if t.io_bytes and all((k.kind, k.dtype) == key for k in t.extra):
            groups[key].append(t)
    estimates = []
    for group in groups.values():
        main = next(iter(features(group[0].kernel)), None)
        if main is None or len(group) < IO_MIN_TIMINGS or len({copies(t) for t in group}) < 2:
            continue
        x = np.array([[1.0, t.io_bytes, sum(features(k)[main] for k in (t.kernel, *t.extra)), copies(t)]
                      for t in group])
        y = np.array([t.ms - run_ms for t in group])
        scale = _column_scale(x)
        solution, *_ = np.linalg.lstsq(x / scale, y, rcond=None)
        if solution[1] > 0:
            estimates.append(solution[1] / scale[1])
    return float(np.median(estimates)) if estimates else 0.0


def _solve(timings: list[KernelTiming], run_ms: float,
           known: dict[tuple[str, str], KindModel]) -> dict[tuple[str, str], KindModel]:
    """The joint fit of ``timings`` (less ``run_ms`` and the cost of the kernels whose model is ``known``)."""
    blocks = _blocks(timings, known)
    width = sum(1 + len(names) for _, names in blocks.values())
    isolated = _isolation_columns(timings, width)
    width += len(isolated)
    x = np.array([_row(t, blocks, isolated, known, width) for t in timings])
    y = np.array([max(0.0, t.ms - run_ms - sum(known[k.kind, k.dtype].ms(k) for k in t.extra if (k.kind, k.dtype) in known))
                  for t in timings])
    beta = _nonnegative_least_squares(x, y)
    residuals = np.abs(x @ beta - y)
    models = {}
    for key, (offset, names) in blocks.items():
        mine = [i for i, t in enumerate(timings) if (t.kernel.kind, t.kernel.dtype) == key]
        models[key] = KindModel(key[0], key[1], float(beta[offset]),
                                tuple((n, float(beta[offset + 1 + i])) for i, n in enumerate(names)), len(mine),
                                float(max(residuals[mine], default=0.0)),
                                float(beta[isolated[key]]) if key in isolated else 0.0)
    return models


def copies(timing: KernelTiming) -> int:
    """How many kernels of its own kind and precision a calibration model ran (1: alone; more: a chain)."""
    key = (timing.kernel.kind, timing.kernel.dtype)
    return 1 + sum((k.kind, k.dtype) == key for k in timing.extra)


def _isolation_columns(timings, first: int) -> dict[tuple[str, str], int]:
    """``{(kind, dtype): column}`` of the isolation term, for each kind timed both alone and in a chain."""
    shapes = defaultdict(set)
    for t in timings:
        shapes[t.kernel.kind, t.kernel.dtype].add(copies(t))
    keys = [key for key, seen in shapes.items() if len(seen) > 1]
    return {key: first + i for i, key in enumerate(keys)}


def _blocks(timings, known) -> dict[tuple[str, str], tuple[int, list[str]]]:
    """``{(kind, dtype): (first column, feature names)}`` for every kernel the timings hold but
    those whose model is ``known``.

    A kind gets as many features as its own timings allow (one fewer than their count, the
    overhead taking one); a kind timed only as another's extra gets its overhead and main feature.
    """
    own = defaultdict(int)
    for t in timings:
        own[t.kernel.kind, t.kernel.dtype] += 1
    blocks: dict[tuple[str, str], tuple[int, list[str]]] = {}
    column = 0
    for t in timings:
        for kernel in (t.kernel, *t.extra):
            key = (kernel.kind, kernel.dtype)
            if key in blocks or key in known or KINDS[kernel.kind].free:
                continue
            names = list(features(kernel))
            names = names[: max(0, own[key] - 1)] if own[key] else names[:1]
            blocks[key] = (column, names)
            column += 1 + len(names)
    return blocks


def _row(timing, blocks, isolated, known, width) -> np.ndarray:
    """The design row of one calibration model: the sum of its kernels' ``[1, features...]`` in
    their blocks (but the kernels whose model is ``known``), and 1 in its kind's isolation column."""
    row = np.zeros(width)
    key = (timing.kernel.kind, timing.kernel.dtype)
    if key in isolated:
        row[isolated[key]] = 1.0
    for kernel in (timing.kernel, *timing.extra):
        key = (kernel.kind, kernel.dtype)
        if KINDS[kernel.kind].free or key in known:
            continue
        offset, names = blocks[key]
        values = features(kernel)
        row[offset] += 1.0
        row[offset + 1: offset + 1 + len(names)] += [values[n] for n in names]
    return row


def _column_scale(x: np.ndarray) -> np.ndarray:
    """Each column's largest magnitude (1 for an all-zero column): ``x / scale`` has columns in [-1, 1]."""
    scale = np.max(np.abs(x), axis=0)
    scale[scale == 0] = 1.0
    return scale


def _nonnegative_least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``argmin |x b - y|`` with ``b >= 0``: least squares on the active columns, dropping the most negative until none is."""
    scale = _column_scale(x)
    xs = x / scale
    active = list(range(x.shape[1]))
    beta = np.zeros(x.shape[1])
    while active:
        solution, *_ = np.linalg.lstsq(xs[:, active], y, rcond=None)
        if np.all(solution >= -1e-12):
            beta[active] = np.maximum(solution, 0.0)
            break
        del active[int(np.argmin(solution))]
    return beta / scale
