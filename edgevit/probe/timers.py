"""Where a calibration model is timed: here (:class:`LocalTimer`) or on a device agent (:class:`AgentTimer`).

A timer is a small class behind a tiny interface: ``stamp()`` says what it times on (the
device's name, environment, CPU flags, backend version, threads) and ``time(artifact, feeds,
rounds, warmup)`` returns the median of ``rounds`` timed runs in milliseconds. The local timer
measures ``session.run`` with ``edgevit.runtime``; the agent timer uploads the artifact, asks
the agent for the runs back to back in one request (``edgevit_repeat``: runs separated by
network round trips let the threads and the CPU idle between them, and a small kernel then
takes about twice its time inside a model) and takes the agent's own ``compute_ns``, the median
run (device-side time, no network); then it unloads the model so a probe does not fill the device.

Example:
    >>> with AgentTimer("onnxruntime", "pi.local:8001") as timer:  # doctest: +SKIP
    ...     timer.stamp().device
    'pi-a'
"""

from __future__ import annotations

import platform
import time
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

    def time(self, artifact: Path, feeds: dict[str, np.ndarray], rounds: int, warmup: int) -> float:
        from edgevit import runtime

        with runtime.load(artifact, backend=self.backend, threads=self.threads) as session:
            named = {session.input_specs[0].name: next(iter(feeds.values()))}
            for _ in range(warmup):
                session.run(named)
            samples = []
            for _ in range(rounds):
                begin = time.perf_counter()
                session.run(named)
                samples.append((time.perf_counter() - begin) * 1000.0)
        return float(np.median(samples))

    def __enter__(self) -> LocalTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


#: the most back-to-back runs one request may ask an agent for (``edgevit.agent.servicer.MAX_REPEAT``)
MAX_REPEAT = 200


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

    def time(self, artifact: Path, feeds: dict[str, np.ndarray], rounds: int, warmup: int) -> float:
        upload = self.client.upload(artifact)
        try:
            metadata = self.client.metadata(upload.name)
            if metadata.get("backend") not in (None, self.backend):
                raise AgentError("FAILED_PRECONDITION", f"the agent at {self.url} runs {artifact.name} with "
                                                        f"{metadata['backend']}, not {self.backend}")
            name = metadata["inputs"][0]["name"]
            named = {name: next(iter(feeds.values()))}
            if warmup:
                self.client.infer(upload.name, named, repeat=min(warmup, MAX_REPEAT))
            first = min(rounds, MAX_REPEAT)
            result = self.client.infer(upload.name, named, repeat=first)  # back to back, as kernels run in a model
            if result.timings.get("runs") == first:  # more rounds than one request takes: medians of chunks
                samples = [result.timings["compute_ns"] / 1e6]
                for done in range(first, rounds, MAX_REPEAT):
                    chunk = self.client.infer(upload.name, named, repeat=min(MAX_REPEAT, rounds - done))
                    samples.append(chunk.timings["compute_ns"] / 1e6)
            else:  # an agent without back-to-back runs (an older edgevit): one request per run
                samples = [result.timings["compute_ns"] / 1e6]
                samples += [self.client.infer(upload.name, named).timings["compute_ns"] / 1e6 for _ in range(rounds - 1)]
        finally:
            self.client.unload(upload.name)
        return float(np.median(samples))

    def __enter__(self) -> AgentTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()


def _environment(data: Any, url: str) -> Environment:
    names = {f.name for f in fields(Environment)}
    if not isinstance(data, dict) or set(data) != names:
        raise AgentError("FAILED_PRECONDITION", f"the agent at {url} sent no environment stamp this edgevit reads "
                                                "(another edgevit version?); update the agent")
    return Environment(**data)
