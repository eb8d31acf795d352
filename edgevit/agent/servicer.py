"""The Open Inference Protocol servicer: Triton's generated ``GRPCInferenceService`` implemented
over the repository, on a ``grpc.aio`` server.

The event loop only parses, checks and answers; model runs, uploads and loads happen in
thread pools (onnxruntime and LiteRT release the GIL while they compute), so health checks and
metadata stay answered while a model runs. Inference requests pass an :class:`Admission`:
``max_concurrent`` run at once, up to ``max_queue`` wait (their wait is reported as
``queue_ns``), and any beyond that get RESOURCE_EXHAUSTED at once.

Every ``ModelInfer`` response carries the agent's own timings of that request as int64
parameters, so a client can tell the device's compute from the network:

=================  =====================================================================
``queue_ns``       waiting for a free slot (``--max-concurrent``)
``input_ns``       checking and decoding the input tensors
``compute_ns``     the model's run in the runtime backend
``output_ns``      encoding the outputs
``server_ns``      the whole request inside the agent, from the handler's start to its answer
=================  =====================================================================

A request may ask for its model to be run several times back to back on the same inputs, with
the int64 parameter ``edgevit_repeat`` (1 to :data:`MAX_REPEAT`): ``compute_ns`` is then the
median of those runs, ``compute_mean_ns`` their mean, and the response says how many ran
(``runs``). This is how a device is timed for its profile (``edgevit devices probe``): runs
separated by network round trips let the backend's threads and the CPU go idle between them,
which inside a model they never do (a small kernel timed that way took 2x its in-model time).
Other clients (tritonclient) ignore them.

Errors are gRPC statuses with one line saying what was wrong and what is allowed
(:class:`~edgevit.errors.AgentError` carries the code).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from edgevit.agent.auth import SERVICE, Tokens
from edgevit.agent.repository import LoadedModel, Repository, check_model_name
from edgevit.agent.tensors import datatype_of, decode_inputs, encode_outputs, metadata_shape
from edgevit.errors import AgentError, require

log = logging.getLogger("edgevit.agent")

#: platform strings of ModelMetadata (informational, as Triton's)
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "litert": "litert_tflite", "coreml": "coreml_mlpackage",
             "coreml-reference": "coreml_mlpackage"}
EXTENSIONS = ("model_repository", "statistics", "edgevit_device", "edgevit_timings", "edgevit_repeat")
#: trailing-metadata keys edgevit's client reads (stock clients ignore them)
DEVICE_KEY = "edgevit-device"
DIGEST_KEY = "edgevit-artifact-sha256"
BACKEND_KEY = "edgevit-backend"
#: the ModelInfer parameter asking for back-to-back runs, and its bound (one request holds a compute slot for all of them)
REPEAT = "edgevit_repeat"
MAX_REPEAT = 200


def pb():
    """The generated messages of Triton's service (tritonclient's, not hand-written)."""
    return require("tritonclient.grpc.service_pb2", "agent", "the device agent")


class Admission:
    """At most ``limit`` requests inside, at most ``queue`` waiting; the rest are refused.

    Used from the event loop only (no locks). A slot freed by ``leave`` goes to the oldest
    waiter directly, so a new arrival cannot overtake the queue.
    """

    def __init__(self, limit: int, queue: int) -> None:
        self.limit, self.queue = limit, queue
        self.running = 0
        self.waiting: collections.deque[asyncio.Future] = collections.deque()

    async def enter(self) -> None:
        if self.running < self.limit and not self.waiting:
            self.running += 1
            return
        if len(self.waiting) >= self.queue:
            raise AgentError("RESOURCE_EXHAUSTED", f"the agent is busy: {self.running} requests running and "
                                                   f"{len(self.waiting)} queued (--max-concurrent {self.limit}, "
                                                   f"--max-queue {self.queue}); retry after a short wait")
        waiter = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter in self.waiting:
                self.waiting.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self.leave()  # the slot was handed to us as we were cancelled: pass it on
            raise

    def leave(self) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1


class ErrorLog:
    """Logs request errors, at most ``per_second`` lines a second (a flood is summarised)."""

    def __init__(self, per_second: int = 10) -> None:
        self.per_second = per_second
        self.window = 0
        self.count = 0
        self.suppressed = 0

    def __call__(self, method: str, peer: str, error: AgentError) -> None:
        now = int(time.monotonic())
        if now != self.window:
            if self.suppressed:
                log.warning("%d more request errors in the last second were not logged", self.suppressed)
            self.window, self.count, self.suppressed = now, 0, 0
        self.count += 1
        if self.count > self.per_second:
            self.suppressed += 1
            return
        log.warning("%s from %s: %s", method, peer, error)


class InferenceServicer:
    """Implements ``inference.GRPCInferenceService`` (made a subclass of the generated servicer
    by :func:`make_servicer`, so that tritonclient's stubs are imported only when serving)."""

    def __init__(self, repository: Repository, tokens: Tokens, device: dict[str, Any], max_concurrent: int,
                 max_queue: int) -> None:
        self.repository = repository
        self.tokens = tokens
        self.device_json = json.dumps(device, ensure_ascii=True, separators=(",", ":"))
        self.admission = Admission(max_concurrent, max_queue)
        self.compute = ThreadPoolExecutor(max_concurrent, thread_name_prefix="edgevit-infer")
        self.admin = ThreadPoolExecutor(1, thread_name_prefix="edgevit-admin")
        self.ready = False
        self.errors = ErrorLog()
        self._pb = pb()

    # -- plumbing ----------------------------------------------------------------------------

    async def _guard(self, method: str, context: Any, call: Any) -> Any:
        """Authorize, run ``call()`` and turn an AgentError into its status."""
        try:
            self.tokens.authorize(SERVICE + method, context.invocation_metadata())
            return await call()
        except AgentError as exc:
            self.errors(method, context.peer(), exc)
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc.args[0])[:2000])
        except Exception as exc:  # noqa: BLE001 - a bug must answer INTERNAL, and be logged with its traceback
            log.exception("%s from %s failed", method, context.peer())
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in the agent: {type(exc).__name__}: "
                                                          f"{str(exc)[:300]}")

    async def close(self) -> None:
        self.compute.shutdown(wait=False, cancel_futures=True)
        self.admin.shutdown(wait=False, cancel_futures=True)

    # -- health ------------------------------------------------------------------------------

    async def ServerLive(self, request, context):
        return await self._guard("ServerLive", context, lambda: _done(self._pb.ServerLiveResponse(live=True)))

    async def ServerReady(self, request, context):
        return await self._guard("ServerReady", context,
                                 lambda: _done(self._pb.ServerReadyResponse(ready=self.ready)))

    async def ModelReady(self, request, context):
        async def call():
            ready = self.ready and request.name in self.repository.models and request.version in ("", "1")
            return self._pb.ModelReadyResponse(ready=ready)
        return await self._guard("ModelReady", context, call)

    # -- metadata ----------------------------------------------------------------------------

    async def ServerMetadata(self, request, context):
        async def call():
            context.set_trailing_metadata(((DEVICE_KEY, self.device_json),))
            from edgevit import __version__

            return self._pb.ServerMetadataResponse(name="edgevit", version=__version__, extensions=EXTENSIONS)
        return await self._guard("ServerMetadata", context, call)

    async def ModelMetadata(self, request, context):
        async def call():
            model = self.repository.get(request.name, request.version)
            context.set_trailing_metadata(((DIGEST_KEY, model.digest), (BACKEND_KEY, model.backend)))
            response = self._pb.ModelMetadataResponse(name=model.name, versions=["1"],
                                                      platform=PLATFORMS.get(model.backend, model.backend))
            for specs, entries in ((model.session.input_specs, response.inputs),
                                   (model.session.output_specs, response.outputs)):
                for spec in specs:
                    entries.add(name=spec.name, datatype=datatype_of(spec.dtype), shape=metadata_shape(spec.shape))
            return response
        return await self._guard("ModelMetadata", context, call)

    # -- inference ---------------------------------------------------------------------------

    async def ModelInfer(self, request, context):
        start = time.perf_counter_ns()

        async def call():
            self._check_ready()
            model = self.repository.get(request.model_name, request.model_version)
            await self.admission.enter()
            queued = time.perf_counter_ns() - start
            try:
                model = self._acquire(model, request)
            except AgentError:
                self.admission.leave()
                raise
            future = asyncio.get_running_loop().run_in_executor(self.compute, _infer, model, request, self._pb)

            def finished(_: Any) -> None:  # the slot and the model are freed when the run ends, even if
                model.release()              # the caller gave up first (the thread cannot be stopped)
                self.admission.leave()

            future.add_done_callback(finished)
            try:
                response = await asyncio.shield(future)
            except AgentError:
                _count_failure(model, time.perf_counter_ns() - start)
                raise
            response.parameters["queue_ns"].int64_param = queued
            with model.stats_lock:
                model.stats.queue.add(queued)
            response.parameters["server_ns"].int64_param = time.perf_counter_ns() - start
            return response
        return await self._guard("ModelInfer", context, call)

    def _check_ready(self) -> None:
        if not self.ready:
            raise AgentError("UNAVAILABLE", "the agent is starting (loading its repository) or draining; retry "
                                            "once its health check says SERVING")

    def _acquire(self, model: LoadedModel, request: Any) -> LoadedModel:
        """``model`` counted in flight; if it was replaced or unloaded while the request waited,
        the model now under that name (or NOT_FOUND)."""
        if model.acquire():
            return model
        model = self.repository.get(request.model_name, request.model_version)
        if not model.acquire():
            raise AgentError("UNAVAILABLE", f"model {request.model_name!r} is being replaced; retry")
        return model

    async def ModelStatistics(self, request, context):
        async def call():
            if request.name:
                models = [self.repository.get(request.name, request.version)]
            else:
                models = list(self.repository.models.values())
            response = self._pb.ModelStatisticsResponse()
            for model in models:
                _fill_statistics(response.model_stats.add(), model)
            return response
        return await self._guard("ModelStatistics", context, call)

    # -- repository --------------------------------------------------------------------------

    async def RepositoryIndex(self, request, context):
        async def call():
            response = self._pb.RepositoryIndexResponse()
            for name, state, reason in self.repository.index():
                if request.ready and state != "READY":
                    continue
                response.models.add(name=name, version="1", state=state, reason=reason)
            return response
        return await self._guard("RepositoryIndex", context, call)

    async def RepositoryModelLoad(self, request, context):
        async def call():
            self._check_ready()
            name = check_model_name(request.model_name)
            files, digests = _upload_parameters(request.parameters)
            loop = asyncio.get_running_loop()
            start = time.perf_counter()
            if files:
                model = await loop.run_in_executor(self.admin, self.repository.install, name, files, digests)
                what = f"uploaded {len(files)} files, {sum(map(len, files.values())) / 2**20:.1f} MB"
            else:
                model = await loop.run_in_executor(self.admin, self.repository.load_existing, name)
                what = "from the repository"
            log.info("load %s (%s, %s) in %.2f s from %s", name, model.backend, what, time.perf_counter() - start,
                     context.peer())
            return self._pb.RepositoryModelLoadResponse()
        return await self._guard("RepositoryModelLoad", context, call)

    async def RepositoryModelUnload(self, request, context):
        async def call():
            name = check_model_name(request.model_name)
            await asyncio.get_running_loop().run_in_executor(self.admin, self.repository.unload, name)
            log.info("unload %s from %s", name, context.peer())
            return self._pb.RepositoryModelUnloadResponse()
        return await self._guard("RepositoryModelUnload", context, call)

    # -- what edgevit does not serve ----------------------------------------------------------

    async def _unimplemented(self, method: str, context: Any, why: str) -> None:
        async def call():
            raise AgentError("UNIMPLEMENTED", f"{method} is not served by edgevit's agent: {why}")
        return await self._guard(method, context, call)

    async def ModelStreamInfer(self, request_iterator, context):
        await self._unimplemented("ModelStreamInfer", context, "use ModelInfer")

    async def ModelConfig(self, request, context):
        await self._unimplemented("ModelConfig", context, "the artifact's manifest is its configuration; use "
                                                          "ModelMetadata")

    async def SystemSharedMemoryStatus(self, request, context):
        await self._unimplemented("SystemSharedMemoryStatus", context, "no shared memory across the network")

    async def SystemSharedMemoryRegister(self, request, context):
        await self._unimplemented("SystemSharedMemoryRegister", context, "no shared memory across the network")

    async def SystemSharedMemoryUnregister(self, request, context):
        await self._unimplemented("SystemSharedMemoryUnregister", context, "no shared memory across the network")

    async def CudaSharedMemoryStatus(self, request, context):
        await self._unimplemented("CudaSharedMemoryStatus", context, "no CUDA on edgevit devices")

    async def CudaSharedMemoryRegister(self, request, context):
        await self._unimplemented("CudaSharedMemoryRegister", context, "no CUDA on edgevit devices")

    async def CudaSharedMemoryUnregister(self, request, context):
        await self._unimplemented("CudaSharedMemoryUnregister", context, "no CUDA on edgevit devices")

    async def TraceSetting(self, request, context):
        await self._unimplemented("TraceSetting", context, "the agent logs loads, unloads and errors to stderr")

    async def LogSettings(self, request, context):
        await self._unimplemented("LogSettings", context, "the agent logs loads, unloads and errors to stderr")


def make_servicer(*args: Any, **kwargs: Any) -> Any:
    """An :class:`InferenceServicer` that is also tritonclient's generated servicer class."""
    grpc_module = require("tritonclient.grpc.service_pb2_grpc", "agent", "the device agent")
    cls = type("EdgeVitInferenceServicer", (InferenceServicer, grpc_module.GRPCInferenceServiceServicer), {})
    return cls(*args, **kwargs)


async def _done(value: Any) -> Any:
    return value


def _infer(model: LoadedModel, request: Any, messages: Any) -> Any:
    """Decode, run and encode one request (in a compute thread); records the model's statistics."""
    clock = time.perf_counter_ns
    t0 = clock()
    repeat = repeat_of(request)
    feeds = decode_inputs(request, model.session.input_specs)
    t1 = clock()
    runs = []
    try:
        for _ in range(repeat):
            begin = clock()
            outputs = model.run(feeds)
            runs.append(clock() - begin)
    except Exception as exc:  # noqa: BLE001 - a backend failing on valid input is the agent's error, not the caller's
        raise AgentError("INTERNAL", f"model {model.name!r} failed to run: {type(exc).__name__}: "
                                     f"{str(exc).strip()[:300]}") from exc
    t2 = clock()
    response = messages.ModelInferResponse(model_name=model.name, model_version="1", id=request.id)
    encode_outputs(response, outputs, [o.name for o in request.outputs])
    t3 = clock()
    compute = sorted(runs)[len(runs) // 2]  # the median run (the upper one of an even count)
    for key, value in (("input_ns", t1 - t0), ("compute_ns", compute), ("output_ns", t3 - t2)):
        response.parameters[key].int64_param = value
    if REPEAT in request.parameters:
        response.parameters["runs"].int64_param = repeat
        response.parameters["compute_mean_ns"].int64_param = sum(runs) // repeat
    with model.stats_lock:
        stats = model.stats
        stats.inference_count += int(request.inputs[0].shape[0]) if request.inputs and request.inputs[0].shape else 1
        stats.execution_count += 1
        stats.last_inference_ms = int(time.time() * 1000)
        stats.success.add(t3 - t0)
        stats.compute_input.add(t1 - t0)
        stats.compute_infer.add(sum(runs))
        stats.compute_output.add(t3 - t2)
    return response


def _count_failure(model: LoadedModel, ns: int) -> None:
    with model.stats_lock:
        model.stats.fail.add(ns)


def _fill_statistics(entry: Any, model: LoadedModel) -> None:
    with model.stats_lock:
        stats = model.stats
        entry.name, entry.version = model.name, "1"
        entry.last_inference = stats.last_inference_ms
        entry.inference_count, entry.execution_count = stats.inference_count, stats.execution_count
        for key in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
            duration = getattr(stats, key)
            target = getattr(entry.inference_stats, key)
            target.count, target.ns = duration.count, duration.ns


def repeat_of(request: Any) -> int:
    """How many back-to-back runs a request asks for (``edgevit_repeat``; 1 when absent).

    Raises:
        AgentError: INVALID_ARGUMENT for a value that is not an integer from 1 to :data:`MAX_REPEAT`.
    """
    if REPEAT not in request.parameters:
        return 1
    value = request.parameters[REPEAT]
    repeat = value.int64_param if value.WhichOneof("parameter_choice") == "int64_param" else None
    if repeat is None or not 1 <= repeat <= MAX_REPEAT:
        raise AgentError("INVALID_ARGUMENT", f"parameter {REPEAT} must be an int64 from 1 to {MAX_REPEAT} (back-to-back "
                                             f"runs of one request), got {_parameter_text(value)}")
    return int(repeat)


def _parameter_text(value: Any) -> str:
    choice = value.WhichOneof("parameter_choice")
    return "nothing" if choice is None else f"{choice} {getattr(value, choice)!r}"[:80]


def _upload_parameters(parameters: Any) -> tuple[dict[str, bytes], dict[str, str]]:
    """``file:<path>`` bytes and ``sha256:<path>`` strings of a RepositoryModelLoad request."""
    files, digests = {}, {}
    for key, value in parameters.items():
        if key.startswith("file:"):
            if value.WhichOneof("parameter_choice") != "bytes_param":
                raise AgentError("INVALID_ARGUMENT", f"parameter {key[:128]!r} must carry the file's bytes "
                                                     "(bytes_param)")
            files[key[5:]] = value.bytes_param
        elif key.startswith("sha256:"):
            digests[key[7:]] = value.string_param
        elif key == "config":
            continue  # Triton's model configuration: an edgevit artifact carries its manifest instead
        else:
            raise AgentError("INVALID_ARGUMENT", f"unknown parameter {key[:128]!r}; RepositoryModelLoad takes "
                                                 "'file:<relative path>' (bytes) and 'sha256:<relative path>'")
    return files, digests
