"""Per-kernel cost models fitted to a device profile (numpy least squares, non-negative).

For each kernel kind and precision the profile timed, the model is linear in the kind's
features (:data:`edgevit.predict.kernels.KINDS`)::

    ms = overhead + sum(coefficient[f] * feature[f])        every term >= 0

fitted on the profile's timings minus the ``run`` timing (the fixed cost of one inference
call, measured on an empty model, which a whole model pays once). Every model is linear in
its parameters, so all kinds are fitted in one system: a calibration model's time is the sum
of its kernel's cost and its ``extra`` kernels' costs (the layout transposes around a TFLite
convolution, the QuantizeLinear before an int8 product), each in its own block of columns. A
kind seen only as an extra (a DEQUANTIZE) is fitted from the models it appears in.

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
from dataclasses import dataclass, field

import numpy as np

from edgevit.predict.kernels import KINDS, Kernel, features
from edgevit.predict.profile import DeviceProfile

__all__ = ["CostModel", "KindModel", "fit"]

#: changes whenever fitting or kernel mapping changes what a prediction is (recorded in predictions and plans)
PREDICTOR_VERSION = 2


@dataclass(frozen=True)
class KindModel:
    """The fitted cost of one kernel kind in one precision.

    Attributes:
        overhead_ms: the per-kernel constant (dispatch, threads waking).
        coefficients: ``((feature, ms per unit), ...)``, features left out of the fit absent.
        samples: timings it was fitted on.
        max_error_ms: the largest absolute residual on them.
    """

    kind: str
    dtype: str
    overhead_ms: float
    coefficients: tuple[tuple[str, float], ...]
    samples: int
    max_error_ms: float

    def ms(self, kernel: Kernel) -> float:
        values = features(kernel)
        return self.overhead_ms + sum(c * values[name] for name, c in self.coefficients)


@dataclass(frozen=True)
class CostModel:
    """The fitted models of one profile: ``run_ms`` once per inference, plus each kernel's cost."""

    backend: str
    run_ms: float
    models: Mapping[tuple[str, str], KindModel] = field(hash=False)
    profile: str = ""

    def ms(self, kernel: Kernel) -> float | None:
        """The predicted time of ``kernel``; 0 for a free one; None when the profile has no timing of its kind and precision."""
        if KINDS[kernel.kind].free:
            return 0.0
        model = self.models.get((kernel.kind, kernel.dtype))
        return None if model is None else model.ms(kernel)


def fit(profile: DeviceProfile) -> CostModel:
    """Fit one :class:`KindModel` per (kind, precision) in the profile, all in one least-squares system."""
    runs = [t.ms for t in profile.timings if t.kernel.kind == "run"]
    run_ms = float(np.median(runs)) if runs else 0.0
    timings = [t for t in profile.timings if t.kernel.kind != "run" and not KINDS[t.kernel.kind].free]
    if not timings:
        return CostModel(profile.backend, run_ms, {}, profile.summary())
    blocks = _blocks(timings)
    x = np.array([_row(t, blocks) for t in timings])
    y = np.array([max(0.0, t.ms - run_ms) for t in timings])
    beta = _nonnegative_least_squares(x, y)
    residuals = np.abs(x @ beta - y)
    models = {}
    for key, (offset, names) in blocks.items():
        mine = [i for i, t in enumerate(timings) if (t.kernel.kind, t.kernel.dtype) == key]
        models[key] = KindModel(key[0], key[1], float(beta[offset]),
                                tuple((n, float(beta[offset + 1 + i])) for i, n in enumerate(names)), len(mine),
                                float(max(residuals[mine], default=0.0)))
    return CostModel(profile.backend, run_ms, models, profile.summary())


def _blocks(timings) -> dict[tuple[str, str], tuple[int, list[str]]]:
    """``{(kind, dtype): (first column, feature names)}`` for every kernel the timings hold.

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
            if key in blocks or KINDS[kernel.kind].free:
                continue
            names = list(features(kernel))
            names = names[: max(0, own[key] - 1)] if own[key] else names[:1]
            blocks[key] = (column, names)
            column += 1 + len(names)
    return blocks


def _row(timing, blocks) -> np.ndarray:
    """The design row of one calibration model: the sum of its kernels' ``[1, features...]`` in their blocks."""
    width = sum(1 + len(names) for _, names in blocks.values())
    row = np.zeros(width)
    for kernel in (timing.kernel, *timing.extra):
        if KINDS[kernel.kind].free:
            continue
        offset, names = blocks[kernel.kind, kernel.dtype]
        values = features(kernel)
        row[offset] += 1.0
        row[offset + 1: offset + 1 + len(names)] += [values[n] for n in names]
    return row


def _nonnegative_least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``argmin |x b - y|`` with ``b >= 0``: least squares on the active columns, dropping the most negative until none is."""
    scale = np.max(np.abs(x), axis=0)
    scale[scale == 0] = 1.0
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
