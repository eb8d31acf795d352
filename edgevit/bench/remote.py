"""Timing an artifact on a device, through its agent (``edgevit bench ARTIFACT --url HOST:PORT``).

The artifact is uploaded if the agent does not already serve the same files (same digest),
then timed with the same warm-up and rounds as a local model. Every answer carries the agent's
own timing of the request, so two things are reported apart:

* **device latency** (the result's ``latency``): ``compute_ns``, the model's run in the
  device's runtime backend, measured on the device: what the device is worth;
* **round trip** (``round_trip``): the client's wall time of the call, which adds the network,
  gRPC and the agent's own work (``server_ns - compute_ns`` of it happens inside the agent).

The result carries the device's record (machine, cores, memory, backend versions, the agent's
thread setting) in place of this machine's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgevit.bench.stats import latency_stats


class RemoteCandidate:
    """An artifact timed on a device agent (the bench runner's candidate interface)."""

    kind = "remote"

    def __init__(self, path: Path, options: Any, connection: dict[str, Any]) -> None:
        from edgevit.agent.client import parse_url

        self.path, self.options = Path(path), options
        self.connection = dict(connection)
        self.url = parse_url(self.connection.pop("url"))
        self.name = f"{self.path.name}@{self.url}"
        self.client = None
        self.compute_ms: list[float] = []
        self.server_ms: list[float] = []

    def probe_spec(self) -> None:
        return None  # cold start and memory are the device's; the agent reports its load time

    def open(self) -> None:
        from edgevit.agent.client import AgentClient
        from edgevit.artifact import read_manifest
        from edgevit.bench.inputs import random_feeds

        self.manifest = read_manifest(self.path)
        self.client = AgentClient(self.url, **self.connection)
        self.device = self.client.device()
        start = time.perf_counter()
        self.upload = self.client.upload(self.path)
        self.load_s = time.perf_counter() - start if self.upload.uploaded else None
        self.feeds = random_feeds(self.manifest.inputs, self.options.batch, where=self.name)
        start = time.perf_counter()
        self.client.infer(self.upload.name, self.feeds)
        self.first_run_s = time.perf_counter() - start

    def call(self) -> None:
        result = self.client.infer(self.upload.name, self.feeds)
        self.compute_ms.append(result.timings.get("compute_ns", 0) / 1e6)
        self.server_ms.append(result.timings.get("server_ns", 0) / 1e6)

    def result(self, samples: list[float], cold: dict[str, Any]) -> Any:
        from edgevit.bench.result import BenchResult, model_bytes

        timed = self.compute_ms[-len(samples):]  # the warm-up calls come first
        device = latency_stats(timed)
        backends = self.device.get("backends", {})
        environment = self.device.get("environment", {})
        backend = self.client.metadata(self.upload.name).get("backend") or "?"
        return BenchResult(
            name=self.name, kind=self.kind, path=str(self.path), backend=backend,
            backend_version=backends.get(backend, ""), threads=(self.device.get("agent") or {}).get("threads"),
            batch=self.options.batch, target=self.manifest.target, precision=self.manifest.precision,
            file_bytes=model_bytes(self.path / self.manifest.model_file, self.manifest.model_files()),
            latency=device, throughput_ips=self.options.batch * 1000.0 / device.mean_ms,
            load_s=self.load_s, first_run_s=self.first_run_s, samples_ms=tuple(timed),
            round_trip=latency_stats(samples), agent_ms=latency_stats(self.server_ms[-len(samples):]),
            device=f"{self.device.get('name', '?')} ({environment.get('cpu_model', '?')}, "
                   f"{environment.get('cores_usable') or environment.get('cores_logical') or '?'} cores)",
            device_record=self.device,
        )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

