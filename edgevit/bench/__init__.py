"""Measuring exported models on this device: latency, cold start, memory, with the machine stamped.

``edgevit.bench`` imports only numpy (the runtime's backends, matplotlib and torch are
imported when used; torch only for the ``torch_model`` baseline).

Example:
    >>> from edgevit.bench import benchmark, BenchOptions
    >>> report = benchmark(["cas_vit_xs-onnx-fp32", "cas_vit_xs-tflite-fp32"],
    ...                    BenchOptions(threads=2, runs=100), torch_model="cas_vit_xs")
    >>> print(report.table())
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "benchmark",
    "BenchOptions",
    "BenchReport",
    "BenchResult",
    "LatencyStats",
    "latency_stats",
    "environment",
    "plot_latency",
    "write_json",
    "write_csv",
]

_LAZY = {
    "benchmark": "edgevit.bench.runner",
    "BenchOptions": "edgevit.bench.runner",
    "BenchReport": "edgevit.bench.runner",
    "BenchResult": "edgevit.bench.result",
    "LatencyStats": "edgevit.bench.stats",
    "latency_stats": "edgevit.bench.stats",
    "environment": "edgevit.environment",
    "plot_latency": "edgevit.bench.plot",
    "write_json": "edgevit.bench.report",
    "write_csv": "edgevit.bench.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgevit.bench' has no attribute {name!r}")
