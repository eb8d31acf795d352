"""Latency statistics: plain functions of a list of timings, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from edgevit.errors import InvalidArgumentError


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated timings of one call, in milliseconds.

    Percentiles use linear interpolation between samples (numpy's default), so p99 of 100
    samples lies between the two slowest runs.
    """

    runs: int
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Summarise timings (ms). Raises when there are none.

    Example:
        >>> latency_stats([1.0, 2.0, 3.0]).p50_ms
        2.0
    """
    if len(samples_ms) == 0:
        raise InvalidArgumentError("no timings to summarise; runs must be at least 1")
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return LatencyStats(
        runs=int(values.size),
        min_ms=float(values.min()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(values.mean()),
        std_ms=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        max_ms=float(values.max()),
    )
