"""How the coordinator reaches a plan's pieces: one small :class:`Transport` interface.

A transport runs one input through one model on one device and answers, asynchronously, so
that the runners can send to K devices at once, hedge, and cancel the loser::

    class Transport:
        async def infer(self, device, model, inputs, timeout) -> Answer   # AgentError on failure
        async def ready(self, device, model=None, timeout=1.0) -> bool
        async def close(self) -> None

Three implementations answer the same call, so the class-wise and pipeline runners and the
failure policy are written once (:mod:`edgevit.cluster.session`) and tested without sockets:

* :class:`GrpcTransport`: device agents over the Open Inference Protocol (grpc.aio with the
  generated stubs of tritonclient), a per-request deadline, the token in the metadata;
* :class:`edgevit.cluster.processes.ProcessTransport`: each piece in a local subprocess (what
  ``run_local`` uses);
* :class:`InProcessTransport`: runtime sessions in this process, with faults a test can switch
  on per device (down, hung, slow).

Failures are :class:`~edgevit.errors.AgentError` with a gRPC status name: ``UNAVAILABLE``
(unreachable, down), ``DEADLINE_EXCEEDED`` (no answer in time), or what the agent said.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import AgentError, require


@dataclass(frozen=True)
class Answer:
    """One piece's answer: its outputs, the device's own compute time and the round trip."""

    outputs: dict[str, np.ndarray]
    round_trip_ms: float
    compute_ms: float | None = None


@dataclass(frozen=True)
class Endpoint:
    """Where a device's agent listens and how to prove who we are."""

    address: str
    token: str | None = None
    tls_ca: Path | None = None


class Transport(ABC):
    """Runs an input through a model on a device (see the module docstring)."""

    @abstractmethod
    async def infer(self, device: str, model: str, inputs: dict[str, np.ndarray], timeout: float) -> Answer:
        """The model's outputs on ``inputs``; AgentError when the device fails or ``timeout`` (s) passes."""

    async def ready(self, device: str, model: str | None = None, timeout: float = 1.0) -> bool:
        """Whether the device serves (``model``, when given); never raises."""
        return True

    async def check(self, device: str, model: str, timeout: float = 3.0) -> None:
        """Return if ``device`` serves ``model`` to us; AgentError saying why not (NOT_FOUND, UNAVAILABLE,
        UNAUTHENTICATED...)."""
        if not await self.ready(device, model, timeout):
            raise AgentError("NOT_FOUND", f"device {device!r} does not serve {model!r}")

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections and processes."""


class GrpcTransport(Transport):
    """Device agents over gRPC (grpc.aio, tritonclient's generated service).

    Channels are made on first use inside the running event loop, one per device, with
    reconnect backoff capped at one second so that a device that comes back is used again
    soon (gRPC's default grows to two minutes)."""

    def __init__(self, endpoints: dict[str, Endpoint]) -> None:
        self.endpoints = dict(endpoints)
        self._grpc = require("grpc", "agent", "running a plan on device agents")
        self._pb = require("tritonclient.grpc.service_pb2", "agent", "running a plan on device agents")
        self._stubs_module = require("tritonclient.grpc.service_pb2_grpc", "agent", "running a plan on device agents")
        self._health = None
        self._channels: dict[str, Any] = {}
        self._stubs: dict[str, Any] = {}

    def _stub(self, device: str) -> Any:
        if device not in self._stubs:
            endpoint = self.endpoints.get(device)
            if endpoint is None:
                raise AgentError("NOT_FOUND", f"device {device!r} has no address; add address = \"host:port\" to it "
                                              "in the device file")
            grpc = self._grpc
            options = [("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1),
                       ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                       ("grpc.max_reconnect_backoff_ms", 1000), ("grpc.enable_retries", 0)]
            if endpoint.tls_ca is None:
                channel = grpc.aio.insecure_channel(endpoint.address, options=options)
            else:
                credentials = grpc.ssl_channel_credentials(root_certificates=Path(endpoint.tls_ca).read_bytes())
                channel = grpc.aio.secure_channel(endpoint.address, credentials, options=options)
            self._channels[device] = channel
            self._stubs[device] = self._stubs_module.GRPCInferenceServiceStub(channel)
        return self._stubs[device]

    def _metadata(self, device: str) -> tuple[tuple[str, str], ...]:
        token = self.endpoints[device].token
        return (("authorization", f"Bearer {token}"),) if token else ()

    async def infer(self, device: str, model: str, inputs: dict[str, np.ndarray], timeout: float) -> Answer:
        from edgevit.agent.tensors import fill_request, read_response

        stub = self._stub(device)
        request = fill_request(self._pb.ModelInferRequest(model_name=model), inputs)
        start = time.perf_counter_ns()
        try:
            response = await stub.ModelInfer(request, timeout=max(timeout, 0.001), metadata=self._metadata(device))
        except self._grpc.aio.AioRpcError as exc:
            address = self.endpoints[device].address
            raise AgentError(exc.code().name, f"device {device!r} ({address}): {exc.details() or exc.code().name}") \
                from None
        round_trip = (time.perf_counter_ns() - start) / 1e6
        outputs, timings = read_response(response)
        compute = timings["compute_ns"] / 1e6 if "compute_ns" in timings else None
        return Answer(outputs, round_trip, compute)

    async def ready(self, device: str, model: str | None = None, timeout: float = 1.0) -> bool:
        try:
            stub = self._stub(device)
            if model is None:
                response = await stub.ServerReady(self._pb.ServerReadyRequest(), timeout=timeout)
            else:
                response = await stub.ModelReady(self._pb.ModelReadyRequest(name=model), timeout=timeout,
                                                 metadata=self._metadata(device))
            return bool(response.ready)
        except (self._grpc.aio.AioRpcError, AgentError):
            return False

    async def check(self, device: str, model: str, timeout: float = 3.0) -> None:
        """``ModelMetadata`` with our token: proves the address, the TLS settings, the token and the model."""
        stub = self._stub(device)
        try:
            await stub.ModelMetadata(self._pb.ModelMetadataRequest(name=model), timeout=timeout,
                                     metadata=self._metadata(device))
        except self._grpc.aio.AioRpcError as exc:
            raise AgentError(exc.code().name, f"device {device!r} at {self.endpoints[device].address}: "
                                              f"{exc.details() or exc.code().name}") from None

    async def close(self) -> None:
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close()


@dataclass
class Fault:
    """What an :class:`InProcessTransport` device does wrong: ``down`` (UNAVAILABLE at once),
    ``hung`` (never answers), ``delay_ms`` (answers late), ``error`` (a status name to answer)."""

    down: bool = False
    hung: bool = False
    delay_ms: float = 0.0
    error: str | None = None


@dataclass
class InProcessTransport(Transport):
    """Runtime sessions in this process, one per (device, model): the fake of the transport tests.

    ``models``: ``{device: {model name: artifact folder}}``. ``faults[device]`` switches a fault on.
    ``calls`` counts the calls each device received.
    """

    models: dict[str, dict[str, Path]]
    faults: dict[str, Fault] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    threads: int | None = 1

    def __post_init__(self) -> None:
        self._sessions: dict[tuple[str, str], Any] = {}

    def _session(self, device: str, model: str) -> Any:
        from edgevit.runtime import load

        key = (device, model)
        if key not in self._sessions:
            folder = self.models.get(device, {}).get(model)
            if folder is None:
                raise AgentError("NOT_FOUND", f"device {device!r} has no model {model!r}")
            self._sessions[key] = load(folder, threads=self.threads)
        return self._sessions[key]

    async def infer(self, device: str, model: str, inputs: dict[str, np.ndarray], timeout: float) -> Answer:
        self.calls[device] = self.calls.get(device, 0) + 1
        fault = self.faults.get(device, Fault())
        start = time.perf_counter()
        if fault.down:
            raise AgentError("UNAVAILABLE", f"device {device!r} is down")
        if fault.error:
            raise AgentError(fault.error, f"device {device!r} answered {fault.error}")
        try:
            async with asyncio.timeout(timeout):
                if fault.hung:
                    await asyncio.Event().wait()
                if fault.delay_ms:
                    await asyncio.sleep(fault.delay_ms / 1000)
                session = self._session(device, model)
                compute_start = time.perf_counter()
                outputs = await asyncio.to_thread(session.run, inputs)
                compute = (time.perf_counter() - compute_start) * 1000
        except TimeoutError:
            raise AgentError("DEADLINE_EXCEEDED", f"device {device!r} did not answer within {timeout * 1000:.0f} ms") \
                from None
        return Answer(outputs, (time.perf_counter() - start) * 1000, compute)

    async def ready(self, device: str, model: str | None = None, timeout: float = 1.0) -> bool:
        fault = self.faults.get(device, Fault())
        return not (fault.down or fault.hung or fault.error)

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()
