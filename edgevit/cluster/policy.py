"""What the coordinator does when devices are slow or fail: deadlines, hedged requests, failover
to replicas, and a circuit breaker per device.

One call of one piece (:meth:`FailurePolicy.call`), given the devices that hold it (the primary
first, then its replicas):

1. the first device that is not marked down gets the request, with what is left of the
   request's deadline;
2. **hedge** (Dean and Barroso, "The Tail at Scale", 2013): if it has not answered after that
   piece's observed p95 latency and another device holds the piece, the request also goes
   there; the first answer wins and the other call is cancelled. gRPC's Python library has no
   hedging (the gRPC A6 proposal's hedging is not in C-core), so this is done here;
3. **failover**: a device that errors or times out is left for the next one, within the deadline;
4. every failure counts against the device; ``breaker_failures`` in a row mark it **down**: it
   gets no requests, and is probed with a health check at exponentially growing intervals
   (``probe_initial_ms`` doubling to ``probe_max_ms``) until it serves again. When every device
   of a piece is down, they are tried anyway (the fault may be the coordinator's, as Petals
   reasons).

The answer says which device answered, whether it was hedged or failed over, and the device's
own compute time. A piece no device could answer raises :class:`PieceUnavailable`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevit.cluster.transport import Answer, Transport
from edgevit.errors import AgentError, InvalidArgumentError

log = logging.getLogger("edgevit.cluster")

#: statuses after which another device is worth trying (the others say the request itself is wrong)
RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN", "ABORTED",
                       "CANCELLED", "NOT_FOUND"})


@dataclass(frozen=True)
class Policy:
    """How hard the coordinator tries.

    Attributes:
        deadline_ms: every request's end-to-end budget (all pieces, retries and hedges included).
        hedge: send a second copy to a replica after ``hedge_quantile`` of the piece's latency.
        hedge_quantile / hedge_min_samples / hedge_floor_ms: the hedge delay is that quantile of the
            piece's last ``window`` round trips, once there are ``hedge_min_samples``, and at least
            ``hedge_floor_ms``.
        breaker_failures: failures in a row that mark a device down.
        probe_initial_ms / probe_max_ms: health-probe backoff of a device that is down.
    """

    deadline_ms: float = 1000.0
    hedge: bool = True
    hedge_quantile: float = 0.95
    hedge_min_samples: int = 20
    hedge_floor_ms: float = 1.0
    window: int = 200
    breaker_failures: int = 3
    probe_initial_ms: float = 100.0
    probe_max_ms: float = 5000.0

    def __post_init__(self) -> None:
        for name in ("deadline_ms", "probe_initial_ms", "probe_max_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidArgumentError(f"{name} must be a positive number of milliseconds, got {value!r}")
        if not 0.5 <= self.hedge_quantile < 1:
            raise InvalidArgumentError(f"hedge_quantile must be in [0.5, 1), got {self.hedge_quantile!r}")
        for name in ("hedge_min_samples", "window", "breaker_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class PieceAnswer:
    """A piece's answer and how it was obtained."""

    piece: str
    device: str
    answer: Answer
    hedged: bool = False
    failed_over: bool = False
    errors: tuple[str, ...] = ()

    def timings(self) -> dict[str, Any]:
        return {"device": self.device, "round_trip_ms": round(self.answer.round_trip_ms, 3),
                "compute_ms": None if self.answer.compute_ms is None else round(self.answer.compute_ms, 3),
                "hedged": self.hedged, "failed_over": self.failed_over, "errors": list(self.errors)}


class PieceUnavailable(AgentError):
    """No device holding a piece answered within the deadline."""

    def __init__(self, piece: str, reasons: list[str]) -> None:
        super().__init__("UNAVAILABLE", f"piece {piece!r} could not be computed: "
                                        + ("; ".join(reasons) if reasons else "no device holds it"))
        self.piece = piece


@dataclass
class DeviceHealth:
    """The breaker's record of one device."""

    failures: int = 0
    down: bool = False
    since: float = 0.0
    probes: int = 0
    downs: int = 0


@dataclass
class Counters:
    """What the policy did, for reports."""

    calls: int = 0
    hedged: int = 0
    hedge_won: int = 0
    failed_over: int = 0
    failures: int = 0
    marked_down: int = 0
    back_up: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class FailurePolicy:
    """Runs piece calls over a transport under a :class:`Policy` (see the module docstring).

    Lives in one event loop; ``close`` stops the health probes."""

    transport: Transport
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        self.health: dict[str, DeviceHealth] = collections.defaultdict(DeviceHealth)
        self.latencies: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=self.policy.window))
        self.counters = Counters()
        self._probes: dict[str, asyncio.Task] = {}

    # -- one piece -------------------------------------------------------------------------------

    async def call(self, piece: str, model: str, devices: tuple[str, ...], inputs: dict[str, np.ndarray],
                   deadline: float, try_down: bool = True) -> PieceAnswer:
        """The piece's answer from the first device of ``devices`` that gives one before ``deadline``
        (``time.monotonic()`` seconds); PieceUnavailable otherwise.

        ``try_down``: when every device of the piece is marked down, try them anyway (a pipeline
        stage has no other way); False gives up at once (a class-wise sub-model: the answer is
        then degraded instead of late)."""
        self.counters.calls += 1
        order = [d for d in devices if not self.health[d].down]
        if not order and not try_down:
            raise PieceUnavailable(piece, [f"{d} is marked down ({self.health[d].failures} failures in a row; "
                                           "being probed)" for d in devices])
        order = order or list(devices)
        errors: list[str] = []
        running: dict[asyncio.Task, str] = {}
        hedged = False
        next_index = 0

        def launch() -> None:
            nonlocal next_index
            device = order[next_index]
            next_index += 1
            remaining = deadline - time.monotonic()
            task = asyncio.ensure_future(self.transport.infer(device, model, inputs, max(remaining, 0.001)))
            running[task] = device

        try:
            launch()
            while running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    errors.append(f"deadline passed ({self.policy.deadline_ms:g} ms budget)")
                    for device in running.values():  # no answer in time counts against the device
                        self._failed(device, AgentError("DEADLINE_EXCEEDED", f"{device} did not answer in time"))
                    break
                wait = remaining
                can_hedge = self.policy.hedge and not hedged and next_index < len(order) and len(running) == 1
                delay = self.hedge_delay(piece) if can_hedge else None
                if delay is not None:
                    wait = min(wait, delay)
                done, _ = await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    if delay is not None and time.monotonic() < deadline:
                        hedged = True
                        self.counters.hedged += 1
                        launch()
                    continue
                for task in done:
                    device = running.pop(task)
                    try:
                        answer = task.result()
                    except AgentError as exc:
                        errors.append(f"{device}: {exc}")
                        self._failed(device, exc)
                        if next_index < len(order) and not running and exc.code in RETRYABLE:
                            self.counters.failed_over += 1
                            launch()
                        continue
                    self._succeeded(device, piece, answer)
                    won_hedge = hedged and device != order[0]
                    self.counters.hedge_won += won_hedge
                    return PieceAnswer(piece, device, answer, hedged=hedged,
                                       failed_over=bool(errors) and not won_hedge, errors=tuple(errors))
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        raise PieceUnavailable(piece, errors)

    def hedge_delay(self, piece: str) -> float | None:
        """Seconds to wait before hedging a call of ``piece`` (None: not enough samples yet)."""
        samples = self.latencies[piece]
        if len(samples) < self.policy.hedge_min_samples:
            return None
        quantile = float(np.quantile(np.fromiter(samples, float), self.policy.hedge_quantile))
        return max(quantile, self.policy.hedge_floor_ms) / 1000

    # -- the breaker -----------------------------------------------------------------------------

    def _succeeded(self, device: str, piece: str, answer: Answer) -> None:
        self.latencies[piece].append(answer.round_trip_ms)
        health = self.health[device]
        health.failures = 0
        if health.down:
            self._mark_up(device, "answered")

    def _failed(self, device: str, error: AgentError) -> None:
        if error.code == "CANCELLED":
            return
        self.counters.failures += 1
        health = self.health[device]
        health.failures += 1
        if not health.down and health.failures >= self.policy.breaker_failures:
            self.mark_down(device, f"{health.failures} failures in a row (last: {error})")

    def mark_down(self, device: str, why: str) -> None:
        """Stop sending to ``device`` and probe it with backoff until it serves again."""
        health = self.health[device]
        if health.down:
            return
        health.down, health.since = True, time.monotonic()
        health.downs += 1
        self.counters.marked_down += 1
        log.warning("device %s marked down: %s; probing it", device, why)
        if device not in self._probes or self._probes[device].done():
            self._probes[device] = asyncio.ensure_future(self._probe(device))

    def _mark_up(self, device: str, why: str) -> None:
        health = self.health[device]
        health.down, health.failures = False, 0
        self.counters.back_up += 1
        log.warning("device %s is back (%s) after %.1f s down", device, why, time.monotonic() - health.since)

    async def _probe(self, device: str) -> None:
        delay = self.policy.probe_initial_ms / 1000
        while self.health[device].down:
            await asyncio.sleep(delay)
            self.health[device].probes += 1
            if await self.transport.ready(device, timeout=min(1.0, max(delay, 0.1))):
                if self.health[device].down:
                    self._mark_up(device, "health check")
                return
            delay = min(delay * 2, self.policy.probe_max_ms / 1000)

    def devices_down(self) -> list[str]:
        return sorted(d for d, h in self.health.items() if h.down)

    async def close(self) -> None:
        probes, self._probes = list(self._probes.values()), {}
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
