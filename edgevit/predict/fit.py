"""Per-kernel cost models fitted to a device profile (numpy least squares, non-negative).

For each kernel kind and precision the profile timed, the model is linear in the kind's
features (:data:`edgevit.predict.kernels.KINDS`)::

    ms = overhead + sum(coefficient[f] * feature[f])        every term >= 0

fitted on the profile's timings of that kind minus the ``run`` timing (the fixed cost of one
inference call, measured on an empty model, which a whole model pays once). A timing whose
calibration model also ran other kernels (its ``extra``) is fitted in a second pass, minus
their cost from the first pass's models (fitted on the timings without extras); one whose
extras the first pass cannot price is left out. The fit is an
active-set non-negative least squares on columns scaled to [0, 1]: a negative coefficient is
dropped and the rest refitted, so a feature that does not explain the times of this device
gets 0 rather than a negative cost. With fewer timings than terms, the trailing features are
left out (the first is the main one: FLOPs, elements or bytes).

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
PREDICTOR_VERSION = 1


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
    """Fit one :class:`KindModel` per (kind, precision) the profile timed."""
    runs = [t.ms for t in profile.timings if t.kernel.kind == "run"]
    run_ms = float(np.median(runs)) if runs else 0.0
    model = CostModel(profile.backend, run_ms, _fit_all(profile.timings, run_ms, None), profile.summary())
    if any(t.extra for t in profile.timings):
        model = CostModel(profile.backend, run_ms, _fit_all(profile.timings, run_ms, model), profile.summary())
    return model


def _fit_all(timings, run_ms: float, prior: CostModel | None) -> dict[tuple[str, str], KindModel]:
    """One model per (kind, dtype): on the timings without extras, or (``prior`` given) on all whose extras it prices."""
    by_kind: dict[tuple[str, str], list[tuple[object, float]]] = defaultdict(list)
    for timing in timings:
        if timing.kernel.kind == "run" or KINDS[timing.kernel.kind].free:
            continue
        extra = [prior.ms(k) for k in timing.extra] if prior is not None else ([] if not timing.extra else [None])
        if any(cost is None for cost in extra):
            continue
        by_kind[timing.kernel.kind, timing.kernel.dtype].append((timing.kernel, max(0.0, timing.ms - run_ms - sum(extra))))
    return {key: _fit_kind(key, samples) for key, samples in by_kind.items()}


def _fit_kind(key: tuple[str, str], samples: list) -> KindModel:
    names = list(features(samples[0][0]))[: max(0, len(samples) - 1)]
    x = np.array([[1.0] + [features(kernel)[n] for n in names] for kernel, _ in samples])
    y = np.array([ms for _, ms in samples])
    beta = _nonnegative_least_squares(x, y)
    residual = float(np.max(np.abs(x @ beta - y))) if len(y) else 0.0
    return KindModel(key[0], key[1], float(beta[0]), tuple(zip(names, (float(b) for b in beta[1:]), strict=True)),
                     len(samples), residual)


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
