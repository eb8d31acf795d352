"""Where a calibration model is timed: here (:class:`LocalTimer`) or on a device agent (:class:`AgentTimer`).

A timer is a small class behind a tiny interface: ``stamp()`` says what it times on (the
device's name, environment, CPU flags, backend version, threads) and ``time(artifact, feeds,
rounds, warmup, window_ms)`` returns the mean time of one run in milliseconds, over back-to-back
runs that number at least ``rounds`` and last at least ``window_ms``. The mean over a window,
not the median of a few runs: a device whose CPU is rationed (a cgroup quota, a thermal limit)
runs a short burst at full speed and pays for it later, and a model of hundreds of kernels
always pays, so a kernel is timed over a span long enough to pay too (on a 0.5-core quota with a
10 ms period, a chain of four 1x1 convolutions took 5.6x one of them by the median).

The local timer measures ``session.run`` with ``edgevit.runtime``; the agent timer uploads the
artifact, asks the agent for the runs back to back (``edgevit_repeat``: runs separated by
network round trips let the threads and the CPU idle between them, and a small kernel then
takes about twice its time inside a model) and takes the agent's own ``compute_mean_ns``
(device-side time, no network); then it unloads the model so a probe does not fill the device.

``time_idle(artifact, feeds, rounds, warmup, gap_ms)`` times the other regime: one run at a
time, each after ``gap_ms`` of idle (the caller sleeps; on an agent, one request each and its
device-side ``compute_ns``), and returns their median. A device asked once in a while, as each
piece of a split plan is, runs in that regime: on this project's AVX2 VM 2.1x slower than back
to back for a 1.3 ms model, 1.1x for a 46 ms one.

Example:
    >>> with AgentTimer("onnxruntime", "pi.local:8001") as timer:  # doctest: +SKIP
    ...     timer.stamp().device
    'pi-a'
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.environment import Environment, cpu_flags, environment
from edgevit.errors import AgentError

__all__ = ["AgentTimer", "LocalTimer", "Stamp"]


@dataclass(frozen=True)
class Stamp:
    """What a timer measures on: the fields a profile records about its device."""

    device: str
    environment: Environment
    cpu_flags: tuple[str, ...]
    backend_version: str
    threads: int | None
    where: str


class LocalTimer:
    """Times models in this process with ``edgevit.runtime``."""

    def __init__(self, backend: str, threads: int | None = None, device: str | None = None) -> None:
        self.backend, self.threads, self.device = backend, threads, device

    def stamp(self) -> Stamp:
        from edgevit.runtime import BACKENDS

        return Stamp(self.device or platform.node() or "this machine", environment(), cpu_flags(),
                     str(BACKENDS.get(self.backend).version()), self.threads, "local")

    def time(self, artifact: Path, feeds: dict[str, np.ndarray], rounds: int, warmup: int,
             window_ms: float = 0.0) -> float:
        from edgevit import runtime

        with runtime.load(artifact, backend=self.backend, threads=self.threads) as session:
            named = {session.input_specs[0].name: next(iter(feeds.values()))}
            for _ in range(warmup):
                session.run(named)
            runs, begin = 0, time.perf_counter()
            while runs < rounds or (time.perf_counter() - begin) * 1000.0 < window_ms:
                session.run(named)
                runs += 1
            return (time.perf_counter() - begin) * 1000.0 / runs

    def time_idle(self, artifact: Path, feeds: dict[str, np.ndarray], rounds: int, warmup: int,
                  gap_ms: float) -> float:
        from edgevit import runtime

        with runtime.load(artifact, backend=self.backend, threads=self.threads) as session:
            named = {session.input_specs[0].name: next(iter(feeds.values()))}
            for _ in range(warmup):
                session.run(named)

            def one_run() -> float:
                begin = time.perf_counter()
                session.run(named)
                return (time.perf_counter() - begin) * 1000.0

            return _median_after_gap(one_run, rounds, gap_ms)

    def __enter__(self) -> LocalTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


#: the most back-to-back runs one request may ask an agent for (``edgevit.agent.servicer.MAX_REPEAT``)
MAX_REPEAT = 200
#: the most runs one timing asks an agent for, whatever the window
MAX_RUNS = 20 * MAX_REPEAT


class AgentTimer:
    """Times models on a device agent (``edgevit serve``), with the agent's device-side timings."""

    def __init__(self, backend: str, url: str, **connection: Any) -> None:
        from edgevit.agent.client import AgentClient

        self.backend, self.url = backend, url
        self.client = AgentClient(url, **connection)
        self.record = self.client.device()

    def stamp(self) -> Stamp:
        backends = self.record.get("backends") or {}
        if self.backend not in backends:
            raise AgentError("FAILED_PRECONDITION", f"the agent at {self.url} offers backends "
                                                    f"{', '.join(backends) or 'none'}, not {self.backend!r}")
        return Stamp(str(self.record.get("name") or self.url), _environment(self.record.get("environment"), self.url),
                     tuple(self.record.get("cpu_flags") or ()), str(backends[self.backend]),
                     (self.record.get("agent") or {}).get("threads"), "agent")

    def time(self, artifact: Path, feeds: dict[str, np.ndarray], rounds: int, warmup: int,
             window_ms: float = 0.0) -> float:
        upload = self.client.upload(artifact)
        try:
            metadata = self.client.metadata(upload.name)
            if metadata.get("backend") not in (None, self.backend):
                raise AgentError("FAILED_PRECONDITION", f"the agent at {self.url} runs {artifact.name} with "
                                                        f"{metadata['backend']}, not {self.backend}")
            named = {metadata["inputs"][0]["name"]: next(iter(feeds.values()))}
            # the warm-up, which also gives a first estimate of one run
            first = self.client.infer(upload.name, named, repeat=min(max(warmup, 1), MAX_REPEAT))
            if "compute_mean_ns" not in first.timings:  # an older agent: one request per run, their median
                samples = [self.client.infer(upload.name, named).timings["compute_ns"] / 1e6 for _ in range(rounds)]
                return float(np.median(samples))
            estimate = max(first.timings["compute_mean_ns"] / 1e6, 1e-3)
            wanted = min(max(rounds, math.ceil(window_ms / estimate)), MAX_RUNS)
            total_ms, done = 0.0, 0
            while done < wanted:  # back to back, as kernels run in a model
                chunk = self.client.infer(upload.name, named, repeat=min(MAX_REPEAT, wanted - done)).timings
                total_ms += chunk["compute_mean_ns"] / 1e6 * chunk["runs"]
                done += chunk["runs"]
        finally:
            self.client.unload(upload.name)
        return total_ms / done

    def time_idle(self, artifact: Path, feeds: dict[str, np.ndarray], rounds: int, warmup: int,
                  gap_ms: float) -> float:
        upload = self.client.upload(artifact)
        try:
            metadata = self.client.metadata(upload.name)
            named = {metadata["inputs"][0]["name"]: next(iter(feeds.values()))}
            for _ in range(max(warmup, 1)):
                self.client.infer(upload.name, named)
            return _median_after_gap(lambda: self.client.infer(upload.name, named).timings["compute_ns"] / 1e6,
                                     rounds, gap_ms)
        finally:
            self.client.unload(upload.name)

    def __enter__(self) -> AgentTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()


def _median_after_gap(run: Callable[[], float], rounds: int, gap_ms: float) -> float:
    """The median of ``rounds`` calls of ``run`` (each returns one run's milliseconds), each after ``gap_ms`` idle."""
    samples = []
    for _ in range(rounds):
        time.sleep(gap_ms / 1000.0)
        samples.append(run())
    return float(np.median(samples))


def _environment(data: Any, url: str) -> Environment:
    names = {f.name for f in fields(Environment)}
    if not isinstance(data, dict) or set(data) != names:
        raise AgentError("FAILED_PRECONDITION", f"the agent at {url} sent no environment stamp this edgevit reads "
                                                "(another edgevit version?); update the agent")
    return Environment(**data)
