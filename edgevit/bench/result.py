"""One model's measurements (:class:`BenchResult`), local or on a device, and what a model weighs on disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevit.bench.stats import LatencyStats

__all__ = ["BenchResult", "model_bytes"]


@dataclass(frozen=True)
class BenchResult:
    """Everything measured for one model. Unknown or not-measured values are None."""

    name: str
    kind: str  # "artifact" or "torch"
    path: str | None
    backend: str
    backend_version: str
    threads: int | None
    batch: int
    target: str | None
    precision: str | None
    file_bytes: int | None
    latency: LatencyStats
    throughput_ips: float
    load_s: float | None = None
    first_run_s: float | None = None
    peak_rss_bytes: int | None = None
    baseline_rss_bytes: int | None = None
    overhead_us: float | None = None
    overhead_pct: float | None = None
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    #: a remote result (kind "remote"): ``latency`` is the device's compute time; the round trip
    #: adds network and agent; ``agent_ms`` is the time inside the agent; ``device`` names the device
    round_trip: LatencyStats | None = None
    agent_ms: LatencyStats | None = None
    device: str | None = None
    device_record: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        skip = ("latency", "samples_ms", "round_trip", "agent_ms")
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        data["latency_ms"] = self.latency.to_dict()
        data["round_trip_ms"] = self.round_trip.to_dict() if self.round_trip else None
        data["agent_ms"] = self.agent_ms.to_dict() if self.agent_ms else None
        data["samples_ms"] = list(self.samples_ms)
        return data


def model_bytes(model_path: Path, files: dict[str, int] | None = None) -> int | None:
    """Bytes a device must store: the manifest's file list (minus the manifest) or the files on disk."""
    if files:
        return int(sum(size for name, size in files.items() if name != "manifest.json"))
    if model_path.is_dir():
        return sum(f.stat().st_size for f in model_path.rglob("*") if f.is_file())
    if not model_path.exists():
        return None
    data = model_path.with_name(model_path.name + ".data")  # ONNX external weights
    return model_path.stat().st_size + (data.stat().st_size if data.exists() else 0)
