"""Turning a :class:`~edgevit.bench.runner.BenchReport` into a table, JSON and CSV.

The table puts the models side by side (one column each, the PyTorch baseline last) and
the measurements down the side, so a reader compares along a row. Files are written to a
temporary name and renamed into place, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from edgevit._table import format_table

MB = 1024 * 1024

#: (row label, function of (result, baseline) -> cell)
ROWS = (
    ("device", lambda r, b: r.device or "this machine"),
    ("backend", lambda r, b: f"{r.backend} {r.backend_version}".strip()),
    ("threads / batch", lambda r, b: f"{r.threads or 'default'} / {r.batch}"),
    ("model size (MB)", lambda r, b: _num(r.file_bytes, MB)),
    ("load (ms)", lambda r, b: _num(r.load_s, 1e-3)),
    ("first run (ms)", lambda r, b: _num(r.first_run_s, 1e-3)),
    ("min (ms)", lambda r, b: r.latency.min_ms),
    ("p50 (ms)", lambda r, b: r.latency.p50_ms),
    ("p90 (ms)", lambda r, b: r.latency.p90_ms),
    ("p99 (ms)", lambda r, b: r.latency.p99_ms),
    ("mean (ms)", lambda r, b: r.latency.mean_ms),
    ("std (ms)", lambda r, b: r.latency.std_ms),
    ("round trip p50 (ms)", lambda r, b: r.round_trip.p50_ms if r.round_trip else None),
    ("round trip p99 (ms)", lambda r, b: r.round_trip.p99_ms if r.round_trip else None),
    ("network + agent p50 (ms)", lambda r, b: r.round_trip.p50_ms - r.latency.p50_ms if r.round_trip else None),
    ("throughput (img/s)", lambda r, b: r.throughput_ips),
    ("peak memory (MB)", lambda r, b: _num(r.peak_rss_bytes, MB)),
    ("runtime overhead", lambda r, b: None if r.overhead_pct is None else f"{r.overhead_pct:.2f}%"),
    ("speed-up vs torch", lambda r, b: None if b is None else f"{b.latency.p50_ms / r.latency.p50_ms:.2f}x"),
)

CSV_FIELDS = (
    "name", "kind", "backend", "backend_version", "target", "precision", "threads", "batch", "file_bytes",
    "load_s", "first_run_s", "min_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "max_ms", "runs",
    "throughput_ips", "peak_rss_bytes", "baseline_rss_bytes", "overhead_us", "overhead_pct", "path",
    "device", "round_trip_p50_ms", "round_trip_p90_ms", "round_trip_p99_ms",
)  # fmt: skip


def format_report(report) -> str:
    """Models as columns, measurements as rows, with the environment stamp above."""
    baseline = report.baseline()
    headers = ["", *[r.name for r in report.results]]
    rows = [[label, *[cell(r, baseline) for r in report.results]] for label, cell in ROWS]
    if baseline is None:
        rows = [row for row in rows if row[0] != "speed-up vs torch"]
    remote = [r for r in report.results if r.kind == "remote"]
    if not remote:
        rows = [row for row in rows if row[0] != "device" and not row[0].startswith(("round trip", "network"))]
    o = report.options
    memory = "peak memory and cold load measured in a fresh process per model" if o.memory else "memory not measured"
    order = "interleaved round-robin" if o.interleave else "one model after another"
    head = f"{report.environment.summary()}\n{o.runs} timed runs after {o.warmup} warm-up, {order}; {memory}\n"
    if remote:
        head += ("remote columns: latency rows are the device's own compute time (reported by its agent per "
                 "request); the round trip adds network, gRPC and the agent\n")
    if baseline is not None and sum(r.kind == "torch" for r in report.results) > 1:
        head += f"speed-ups are against the fastest PyTorch eager setting, {baseline.name}\n"
    return head + format_table(headers, rows, align="l" + "r" * len(report.results))


def write_json(report, path: str | Path) -> Path:
    from edgevit._files import write_json as write_json_file

    return write_json_file(path, report.to_dict())


def write_csv(report, path: str | Path) -> Path:
    """One row per model with every scalar measurement (latency samples are in the JSON)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for result in report.results:
        writer.writerow(_flat(result))
    from edgevit._files import write_text

    return write_text(path, buffer.getvalue())


def _flat(result) -> dict[str, Any]:
    data = result.to_dict()
    data.update(data.pop("latency_ms"))
    for key, value in (data.pop("round_trip_ms") or {}).items():
        data[f"round_trip_{key}"] = value
    return {k: data.get(k) for k in CSV_FIELDS}


def _num(value: float | None, unit: float) -> float | None:
    return None if value is None else value / unit
