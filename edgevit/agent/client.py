"""edgevit's client of a device agent (or of any Open Inference Protocol gRPC server).

It speaks the same generated service as tritonclient, over one gRPC channel, and adds what
edgevit needs on top: artifact uploads with per-file sha256 and a digest check, the agent's
device record, and per-request device timings.

Example:
    >>> with AgentClient("pi-a.local:8001", token_file="admin.token", tls_ca="ca.pem") as agent:
    ...     agent.upload("cas_vit_xs-onnx-int8")
    ...     result = agent.infer("cas_vit_xs-onnx-int8", {"input": x})
    ...     result.outputs["logits"], result.timings["compute_ns"]
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.artifact import MANIFEST_NAME, artifact_digest, read_manifest
from edgevit.errors import AgentError, InvalidArgumentError, require

#: tritonclient's limit: the largest message gRPC allows
MAX_MESSAGE_BYTES = 2**31 - 1
DEVICE_KEY = "edgevit-device"
DIGEST_KEY = "edgevit-artifact-sha256"
BACKEND_KEY = "edgevit-backend"
TIMING_KEYS = ("queue_ns", "input_ns", "compute_ns", "output_ns", "server_ns", "runs", "compute_mean_ns")


@dataclass(frozen=True)
class InferResult:
    """One inference through an agent.

    Attributes:
        outputs: output name -> array.
        timings: the agent's own timings of the request in ns (``queue_ns``, ``input_ns``,
            ``compute_ns``, ``output_ns``, ``server_ns``), as far as the server reports them.
        round_trip_ns: the client's wall time of the call.
    """

    outputs: dict[str, np.ndarray]
    timings: dict[str, int] = field(default_factory=dict)
    round_trip_ns: int = 0


@dataclass(frozen=True)
class Upload:
    """What :meth:`AgentClient.upload` did: ``uploaded`` False when the agent already had it."""

    name: str
    digest: str
    uploaded: bool
    bytes: int
    seconds: float


def parse_url(url: str) -> str:
    """``HOST:PORT`` (an optional ``grpc://`` dropped); anything else is an InvalidArgumentError."""
    text = str(url).strip().removeprefix("grpc://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in text:
        raise InvalidArgumentError(f"agent address {url!r} is not HOST:PORT (e.g. 127.0.0.1:8001 or pi-a.local:8001)")
    return text


class AgentClient:
    """A connection to one agent.

    Args:
        url: ``HOST:PORT``.
        token / token_file: the bearer token (inference or admin), or a file holding it.
        tls_ca: CA certificate (PEM) to verify the agent with; enables TLS.
        tls_cert / tls_key: this client's certificate and key for mutual TLS.
        timeout: default deadline of a call in seconds.
    """

    def __init__(self, url: str, token: str | None = None, token_file: str | Path | None = None,
                 tls_ca: str | Path | None = None, tls_cert: str | Path | None = None,
                 tls_key: str | Path | None = None, timeout: float = 30.0) -> None:
        grpc = require("grpc", "agent", "talking to a device agent")
        self._grpc = grpc
        self._pb = require("tritonclient.grpc.service_pb2", "agent", "talking to a device agent")
        stubs = require("tritonclient.grpc.service_pb2_grpc", "agent", "talking to a device agent")
        self.url = parse_url(url)
        self.timeout = timeout
        if token_file is not None:
            token = Path(token_file).read_text().strip()
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        if tls_ca is None and tls_cert is None:
            self._channel = grpc.insecure_channel(self.url, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
                private_key=Path(tls_key).read_bytes() if tls_key else None,
                certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None)
            self._channel = grpc.secure_channel(self.url, credentials, options=options)
        self._stub = stubs.GRPCInferenceServiceStub(self._channel)

    # -- plumbing ----------------------------------------------------------------------------

    def _call(self, method: str, request: Any, timeout: float | None = None, with_call: bool = False) -> Any:
        rpc = getattr(self._stub, method)
        try:
            if with_call:
                return rpc.with_call(request, timeout=timeout or self.timeout, metadata=self._metadata)
            return rpc(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            raise AgentError(code, f"{self.url} {method}: {exc.details() or code}") from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- health and metadata -----------------------------------------------------------------

    def live(self) -> bool:
        return self._call("ServerLive", self._pb.ServerLiveRequest()).live

    def ready(self) -> bool:
        return self._call("ServerReady", self._pb.ServerReadyRequest()).ready

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the agent answers ready; AgentError UNAVAILABLE naming the last reason if not."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                if self._call("ServerReady", self._pb.ServerReadyRequest(), timeout=2.0).ready:
                    return
                last = "it answers but is not ready (still loading its repository?)"
            except AgentError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise AgentError("UNAVAILABLE", f"the agent at {self.url} was not ready within {timeout:g} s: {last}")

    def device(self) -> dict[str, Any]:
        """The agent's device record: its machine, backends and settings (``{}`` from a non-edgevit server)."""
        response, call = self._call("ServerMetadata", self._pb.ServerMetadataRequest(), with_call=True)
        for key, value in call.trailing_metadata() or ():
            if key == DEVICE_KEY:
                return json.loads(value)
        return {"name": response.name, "server": response.name, "version": response.version}

    def model_ready(self, name: str) -> bool:
        return self._call("ModelReady", self._pb.ModelReadyRequest(name=name)).ready

    def metadata(self, name: str) -> dict[str, Any]:
        """``{"inputs": [{name, datatype, shape}], "outputs": [...], "platform", "digest"}`` of a model."""
        response, call = self._call("ModelMetadata", self._pb.ModelMetadataRequest(name=name), with_call=True)
        trailing = dict(call.trailing_metadata() or ())
        tensors = lambda entries: [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}  # noqa: E731
                                   for t in entries]
        return {"name": response.name, "platform": response.platform, "inputs": tensors(response.inputs),
                "outputs": tensors(response.outputs), "digest": trailing.get(DIGEST_KEY),
                "backend": trailing.get(BACKEND_KEY)}

    def models(self) -> list[dict[str, str]]:
        """The repository index (admin token): ``[{name, state, reason}]``."""
        response = self._call("RepositoryIndex", self._pb.RepositoryIndexRequest())
        return [{"name": m.name, "state": m.state, "reason": m.reason} for m in response.models]

    def statistics(self, name: str = "") -> list[dict[str, Any]]:
        """Triton-style statistics of one model (or all), cumulative since it was loaded."""
        response = self._call("ModelStatistics", self._pb.ModelStatisticsRequest(name=name))
        out = []
        for stats in response.model_stats:
            durations = {key: {"count": getattr(stats.inference_stats, key).count,
                               "ns": getattr(stats.inference_stats, key).ns}
                         for key in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")}
            out.append({"name": stats.name, "inference_count": stats.inference_count,
                        "execution_count": stats.execution_count, "last_inference_ms": stats.last_inference,
                        **durations})
        return out

    # -- the repository ----------------------------------------------------------------------

    def upload(self, folder: str | Path, name: str | None = None, force: bool = False,
               timeout: float = 600.0) -> Upload:
        """Send an artifact folder to the agent (admin token); skipped when the agent already
        serves the same files under that name (same digest), unless ``force``."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        name = name or folder.resolve().name
        digest = artifact_digest(folder)
        start = time.perf_counter()
        if not force and self.has(name, digest):
            return Upload(name, digest, False, 0, time.perf_counter() - start)
        files = artifact_files(folder, manifest)
        request = self._pb.RepositoryModelLoadRequest(model_name=name)
        for relative, data in files.items():
            request.parameters[f"file:{relative}"].bytes_param = data
            request.parameters[f"sha256:{relative}"].string_param = hashlib.sha256(data).hexdigest()
        self._call("RepositoryModelLoad", request, timeout=timeout)
        served = self.metadata(name).get("digest")
        if served is not None and served != digest:
            raise AgentError("DATA_LOSS", f"{self.url} serves {name!r} with digest {served[:12]}..., not the uploaded "
                                          f"{digest[:12]}...; upload again")
        return Upload(name, digest, True, sum(map(len, files.values())), time.perf_counter() - start)

    def has(self, name: str, digest: str | None = None) -> bool:
        """Whether the agent serves ``name`` (with this artifact digest, when given)."""
        if not self.model_ready(name):
            return False
        return digest is None or self.metadata(name).get("digest") == digest

    def unload(self, name: str) -> None:
        self._call("RepositoryModelUnload", self._pb.RepositoryModelUnloadRequest(model_name=name))

    # -- inference ---------------------------------------------------------------------------

    def infer(self, name: str, feeds: dict[str, np.ndarray], outputs: list[str] | None = None,
              timeout: float | None = None, repeat: int | None = None) -> InferResult:
        """Run ``name`` on ``feeds`` (raw little-endian contents); outputs by name with the agent's timings.

        ``repeat`` asks the agent to run the model that many times back to back (1 to 200):
        ``timings["compute_ns"]`` is then the median run, ``timings["compute_mean_ns"]`` their mean
        and ``timings["runs"]`` how many ran (an agent without the ``edgevit_repeat`` extension runs
        it once and sends neither).
        """
        from edgevit.agent.tensors import fill_request, read_response

        request = fill_request(self._pb.ModelInferRequest(model_name=name), feeds, outputs)
        if repeat is not None:
            request.parameters["edgevit_repeat"].int64_param = repeat
        start = time.perf_counter_ns()
        response = self._call("ModelInfer", request, timeout=timeout)
        round_trip = time.perf_counter_ns() - start
        arrays, parameters = read_response(response)
        timings = {key: value for key, value in parameters.items() if key in TIMING_KEYS}
        return InferResult(arrays, timings, round_trip)


def artifact_files(folder: Path, manifest: Any = None) -> dict[str, bytes]:
    """The files of an artifact an agent needs: ``manifest.json`` and the files the manifest lists
    (or everything under the model file when it lists none), by relative path."""
    manifest = manifest or read_manifest(folder)
    names = set(manifest.files) if manifest.files else set()
    model = folder / manifest.model_file
    if not names:
        names = {p.relative_to(folder).as_posix() for p in ([model] if model.is_file() else model.rglob("*"))
                 if p.is_file()}
    names.add(MANIFEST_NAME)
    return {name: (folder / name).read_bytes() for name in sorted(names)}


def deploy(artifacts: list[str | Path], url: str, *, force: bool = False, **connection: Any) -> list[Upload]:
    """Upload artifact folders to the agent at ``url`` (admin token) and check each is ready.

    Args:
        artifacts: artifact folders; each is served under its folder name.
        force: upload even when the agent already has the same files.
        connection: :class:`AgentClient` arguments (``token_file``, ``tls_ca``...).

    Example:
        >>> deploy(["cas_vit_xs-onnx-int8"], "pi-a.local:8001", token_file="admin.token", tls_ca="ca.pem")
    """
    with AgentClient(url, **connection) as agent:
        done = []
        for folder in artifacts:
            upload = agent.upload(folder, force=force)
            if not agent.model_ready(upload.name):
                raise AgentError("UNAVAILABLE", f"{url} accepted {upload.name!r} but does not report it ready")
            done.append(upload)
        return done
