"""Running a split plan across devices: :func:`connect` and :class:`ClusterSession`.

The class-wise and pipeline logic is written once, over a :class:`~edgevit.cluster.transport.Transport`
and a :class:`~edgevit.cluster.policy.FailurePolicy`:

* **class-wise**: each image goes to the K sub-model devices at once; the feature vectors that
  come back are fused on this machine (the coordinator) by the plan's fusion head. A sub-model
  that no device answered in time is left out and the fusion head answers from the others (its
  presence column says so): the answer is marked ``degraded`` and names what was missing. Only
  when no sub-model answers does the request fail.
* **pipeline**: each frame goes through the stages in order, device to coordinator to device;
  several frames are in flight at once (``max_in_flight``, default one more than the stages), so
  the devices work on different frames at the same time; answers come back in order. A stage no
  device answered fails that frame with a clear error.

Every image or frame is one request with its own deadline (``Policy.deadline_ms``): an answer
comes within it, or an error does. The session runs its own event loop in a thread, so its
methods can be called from any thread (64 client threads through one session is tested).

Example:
    >>> with connect("plan/", "devices.toml") as session:
    ...     result = session.run(["cat.png", "dog.png"])
    ...     result.predictions, result.answers[0].degraded, result.answers[0].pieces["sub0"]
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.cluster.policy import FailurePolicy, PieceUnavailable, Policy
from edgevit.cluster.transport import Transport
from edgevit.errors import AgentError, InvalidArgumentError

__all__ = ["Answered", "ClusterResult", "ClusterSession", "connect"]


@dataclass(frozen=True)
class Answered:
    """One image's (or frame's) answer.

    Attributes:
        logits: ``[C]`` scores, or None when the request failed (``error`` says why).
        degraded: class-wise answer fused without some sub-models (``missing`` names them).
        pieces: per piece: the device that answered, its compute time (reported by the device),
            the round trip, whether it was hedged or failed over.
        latency_ms: the request's end-to-end time on the coordinator.
    """

    logits: np.ndarray | None
    degraded: bool = False
    missing: tuple[str, ...] = ()
    pieces: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency_ms: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ClusterResult:
    """A batch's answers: ``logits`` ``[N, C]``, arg-max ``predictions`` and every :class:`Answered`."""

    logits: np.ndarray
    predictions: np.ndarray
    labels: tuple[str, ...]
    answers: tuple[Answered, ...]

    @property
    def degraded(self) -> int:
        return sum(a.degraded for a in self.answers)


class _Loop:
    """An asyncio event loop in a daemon thread; coroutines are submitted from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="edgevit-coordinator", daemon=True)
        self.thread.start()

    def submit(self, coroutine: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Any, timeout: float | None = None) -> Any:
        return self.submit(coroutine).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ClusterSession:
    """A plan connected to its devices (see the module docstring); make one with :func:`connect`.

    Args:
        plan_dir: the plan folder (``plan.json`` and the fusion head's artifact).
        transport: how the pieces are reached.
        placement: ``{piece: (model name on the devices, (device, standby, ...))}``.
        policy: deadlines, hedging, failover and the breaker.
        threads: CPU threads of the fusion head's session on this machine.
        max_in_flight: requests in progress at once (default: 4 class-wise, stages + 1 pipeline).
        degrade: answer class-wise requests without sub-models that failed (False: only without
            those placed on no device at all; a failure then fails the request).
    """

    def __init__(self, plan_dir: str | Path, transport: Transport, placement: dict[str, tuple[str, tuple[str, ...]]],
                 policy: Policy | None = None, threads: int | None = 1, max_in_flight: int | None = None,
                 degrade: bool = True) -> None:
        from edgevit.cluster.plans import load_plan

        self.plan_dir = Path(plan_dir)
        self.plan = load_plan(self.plan_dir)
        self.policy = policy or Policy()
        missing = [p.name for p in self.plan.pieces if p.name not in placement]
        if missing:
            raise InvalidArgumentError(f"no device given for piece(s) {', '.join(missing)}")
        self.placement = placement
        self.transport = transport
        self.fusion = self.layout = None
        if self.plan.strategy == "classwise":
            from edgevit.partition.fusion_layout import FusionLayout
            from edgevit.runtime import load

            self.layout = FusionLayout.from_plan(self.plan)
            self.fusion = load(self.plan_dir / self.plan.fusion.artifact, threads=threads)
        default = len(self.plan.pieces) + 1 if self.plan.strategy == "pipeline" else 4
        self.max_in_flight = max_in_flight or default
        self._loop = _Loop()
        self._failures = FailurePolicy(transport, self.policy)
        self.degrade = degrade
        self._gate: asyncio.Semaphore | None = None
        self._closed = False

    # -- public -------------------------------------------------------------------------------

    def run(self, images: Any) -> ClusterResult:
        """Answer a batch of images (files, HxWx3 uint8 arrays, or preprocessed float32 NCHW).

        Raises:
            AgentError: an image got no answer (after the others were answered); the message
                says which and why.
        """
        answers = list(self.stream(self._inputs(images)))
        failed = [(i, a.error) for i, a in enumerate(answers) if not a.ok]
        if failed:
            raise AgentError("UNAVAILABLE", f"{len(failed)} of {len(answers)} images got no answer; image "
                                            f"{failed[0][0]}: {failed[0][1]}")
        logits = np.stack([a.logits for a in answers])
        return ClusterResult(logits, logits.argmax(axis=1), self.plan.labels, tuple(answers))

    predict = run

    def stream(self, frames: Iterable[Any]) -> Iterator[Answered]:
        """Answers for a stream of images or preprocessed ``[3, S, S]`` frames, in order, with at
        most ``max_in_flight`` in progress; a frame that fails gets an Answered with ``error``."""
        self._check_open()
        pending: collections.deque[Future] = collections.deque()
        for frame in frames:
            for one in self._frames(frame):
                while len(pending) >= self.max_in_flight:
                    yield pending.popleft().result()
                pending.append(self._loop.submit(self._request(one[None])))
        while pending:
            yield pending.popleft().result()

    def stats(self) -> dict[str, Any]:
        """What the failure policy did (hedges, failovers, devices marked down and back) and who is down."""
        async def read() -> dict[str, Any]:
            return {"policy": self._failures.counters.to_dict(), "down": self._failures.devices_down(),
                    "devices": {d: dict(h.__dict__) for d, h in self._failures.health.items()}}
        return self._loop.run(read(), timeout=10)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            await self._failures.close()
            await self.transport.close()

        try:
            self._loop.run(shutdown(), timeout=30)
        finally:
            self._loop.close()
            if self.fusion is not None:
                self.fusion.close()

    def __enter__(self) -> ClusterSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- one request ---------------------------------------------------------------------------

    async def _request(self, x: np.ndarray) -> Answered:
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.max_in_flight)
        async with self._gate:
            start = time.monotonic()
            deadline = start + self.policy.deadline_ms / 1000
            try:
                if self.plan.strategy == "classwise":
                    answered = await self._classwise(x, deadline)
                else:
                    answered = await self._pipeline(x, deadline)
            except AgentError as exc:
                return Answered(None, error=str(exc), latency_ms=(time.monotonic() - start) * 1000)
            return _with_latency(answered, (time.monotonic() - start) * 1000)

    async def _classwise(self, x: np.ndarray, deadline: float) -> Answered:
        from edgevit.partition.fusion_layout import fusion_input

        # the fusion head runs after the sub-models: they get the budget minus a small reserve
        reserve = min(0.010, 0.1 * self.policy.deadline_ms / 1000)
        calls = [self._failures.call(piece.name, *self.placement[piece.name], {piece.input_name: x},
                                     deadline - reserve, try_down=False) for piece in self.plan.pieces]
        results = await asyncio.gather(*calls, return_exceptions=True)
        features, missing, pieces, reasons = [], [], {}, []
        for piece, result in zip(self.plan.pieces, results):
            if isinstance(result, PieceUnavailable):
                if not self.degrade and self.placement[piece.name][1]:
                    raise result
                features.append(None)
                missing.append(piece.name)
                reasons.append(str(result))
                continue
            if isinstance(result, BaseException):
                raise result
            features.append(_output(result.answer.outputs, piece.output_name, piece.name))
            pieces[piece.name] = result.timings()
        if len(missing) == len(self.plan.pieces):
            raise AgentError("UNAVAILABLE", "no sub-model answered: " + "; ".join(reasons))
        if missing and not self.layout.presence:
            raise AgentError("UNAVAILABLE", f"{', '.join(missing)} did not answer and this plan's fusion head needs "
                                            "every sub-model (it has no presence columns; make the plan again with "
                                            "edgevit split for degraded answers): " + "; ".join(reasons))
        dims = self.layout.feature_dims or tuple(f.shape[-1] for f in features if f is not None)
        fused = fusion_input([None if f is None else f.reshape(1, -1) for f in features], dims, self.layout.presence)
        spec = self.fusion.input_specs[0]
        logits = next(iter(self.fusion.run({spec.name: fused}).values()))
        return Answered(np.asarray(logits, np.float32).reshape(-1), bool(missing), tuple(missing), pieces)

    async def _pipeline(self, x: np.ndarray, deadline: float) -> Answered:
        tensor, pieces = x, {}
        for piece in self.plan.pieces:
            result = await self._failures.call(piece.name, *self.placement[piece.name], {piece.input_name: tensor},
                                               deadline)
            tensor = _output(result.answer.outputs, piece.output_name, piece.name)
            pieces[piece.name] = result.timings()
        return Answered(np.asarray(tensor, np.float32).reshape(-1), pieces=pieces)

    # -- helpers -------------------------------------------------------------------------------

    def _inputs(self, images: Any) -> np.ndarray:
        from edgevit.cluster.plans import plan_inputs

        return plan_inputs(self.plan, images)

    def _frames(self, frame: Any) -> np.ndarray:
        """``[n, 3, S, S]`` float32 from one stream item: a preprocessed frame (or batch), a file, an array."""
        if isinstance(frame, np.ndarray) and frame.dtype == np.float32 and frame.ndim in (3, 4):
            return self._inputs(frame if frame.ndim == 4 else frame[None])
        return self._inputs([frame])

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError("this cluster session is closed; connect again")


def _output(outputs: dict[str, np.ndarray], name: str, piece: str) -> np.ndarray:
    if name in outputs:
        return outputs[name]
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    raise AgentError("INTERNAL", f"{piece} answered {', '.join(outputs)} but not {name!r}")


def _with_latency(answered: Answered, latency_ms: float) -> Answered:
    from dataclasses import replace

    return replace(answered, latency_ms=latency_ms)


def connect(plan_dir: str | Path, devices: Any, *, policy: Policy | None = None, threads: int | None = 1,
            max_in_flight: int | None = None, check: bool = True, transport: Transport | None = None) -> ClusterSession:
    """A session running the plan on the device agents of a device file.

    Args:
        plan_dir: the plan folder; its ``deployment.json`` (``edgevit deploy``) says which
            devices hold each piece and under which name; without it, each piece is expected on
            the device the plan placed it on.
        devices: a device file path or a :class:`~edgevit.devices.Cluster` with addresses.
        check: ask every device whether it serves its pieces before returning. A device that does
            not answer is reported and marked down; an error is raised only when some piece then
            has no device left (class-wise: no sub-model at all).
        transport: instead of gRPC to the agents (tests pass an in-process fake).

    Raises:
        InvalidArgumentError: a device of the plan has no address in the device file.
        AgentError: pieces are not on their devices, or no device of a needed piece answers;
            the message names the device and its address.
    """
    from edgevit.cluster.deploy import agent_model_name, endpoints, plan_digest, read_deployment
    from edgevit.cluster.plans import load_plan
    from edgevit.cluster.transport import GrpcTransport
    from edgevit.devices import Cluster, load_devices

    plan = load_plan(plan_dir)
    cluster = devices if isinstance(devices, Cluster) else load_devices(devices)
    digest = plan_digest(plan_dir)
    deployment = read_deployment(plan_dir)
    if deployment is not None and deployment.plan_digest == digest:
        placement = {p.piece: (p.model, p.devices) for p in deployment.pieces}
    else:
        placement = {p.name: (agent_model_name(plan, digest, p.name), (p.device,)) for p in plan.pieces}
    used = {d for _, ds in placement.values() for d in ds}
    reach = endpoints(cluster, used)
    if transport is None:
        transport = GrpcTransport(reach)
    session = ClusterSession(plan_dir, transport, placement, policy, threads, max_in_flight)
    if check:
        try:
            session._loop.run(_check(session, placement, reach), timeout=60)
        except BaseException:
            session.close()
            raise
    return session


async def _check(session: ClusterSession, placement: dict[str, tuple[str, tuple[str, ...]]],
                 reach: dict[str, Any]) -> None:
    """Every (piece, device) pair served? Devices that do not answer are marked down; fail if a
    needed piece has no device left."""
    failures = session._failures
    devices = sorted({d for _, ds in placement.values() for d in ds})
    alive = dict(zip(devices, await asyncio.gather(*(session.transport.ready(d, timeout=3.0) for d in devices))))
    dead = [d for d in devices if not alive[d]]
    if len(dead) == len(devices):
        raise AgentError("UNAVAILABLE", "no device of the plan answers: " + "; ".join(
            f"{d} at {reach[d].address if d in reach else '?'}" for d in dead)
            + " (is `edgevit serve` running there, and are the addresses, ports and TLS settings right?)")
    missing = []
    for piece, (model, ds) in placement.items():
        for device in ds:
            if not alive[device]:
                continue
            try:
                await session.transport.check(device, model, timeout=3.0)
            except AgentError as exc:
                if exc.code != "NOT_FOUND":
                    raise  # a wrong token or TLS setting: say so now, not as failed requests later
                missing.append(f"{piece} ({model}) on {device}")
    if missing:
        raise AgentError("NOT_FOUND", f"not deployed: {', '.join(missing)}; run `edgevit deploy "
                                      f"{session.plan_dir} --devices <device file>` first")
    for device in dead:
        failures.mark_down(device, f"it does not answer at {reach[device].address if device in reach else '?'}")
    needed = [p for p, (_, ds) in placement.items() if all(not alive[d] for d in ds)]
    if needed and (session.plan.strategy == "pipeline" or len(needed) == len(placement)):
        raise AgentError("UNAVAILABLE", f"piece(s) {', '.join(needed)} have no device that answers: "
                                        + "; ".join(f"{d} at {reach[d].address}" for d in dead))
