"""Running the agent: :func:`serve` builds the gRPC server, loads the repository and serves until
SIGTERM or SIGINT, then drains.

Life of an agent, as its health service reports it (``grpc.health.v1``, service ``""`` and
``inference.GRPCInferenceService``):

1. **starting**: the port is bound, health answers NOT_SERVING, ``ServerReady`` is false, while
   the artifacts already in the repository are loaded and run once on zeros;
2. **serving**: health SERVING, ``ServerReady`` true; one log line says where and with what;
3. **draining** (SIGTERM or SIGINT): health NOT_SERVING, ``ServerReady`` false, new requests are
   refused, requests in flight may finish for up to ``drain_seconds``; then the process exits 0.

The device record (``ServerMetadata``'s ``edgevit-device`` trailing metadata) is the agent's
machine as ``edgevit bench`` stamps its own results: CPU, cores, memory, OS, Python, backend
versions, the int8 kernel path, plus the agent's settings.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from edgevit.agent.auth import Tokens
from edgevit.agent.config import MESSAGE_SLACK_BYTES, AgentConfig, read_token
from edgevit.agent.repository import Repository
from edgevit.errors import require

log = logging.getLogger("edgevit.agent")

SERVICE_NAME = "inference.GRPCInferenceService"


def serve(config: AgentConfig) -> int:
    """Run an agent with ``config`` until SIGTERM/SIGINT; returns the exit code (0 after a drain).

    Example:
        >>> serve(AgentConfig(port=8001, repository="/var/lib/edgevit", token_file="/etc/edgevit/token"))
    """
    setup_logging()
    return asyncio.run(_serve(config))


def setup_logging() -> None:
    """One line per event on stderr: time, level, message."""
    logger = logging.getLogger("edgevit.agent")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s edgevit-agent %(levelname)s %(message)s",
                                               "%Y-%m-%dT%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def server_options(config: AgentConfig) -> list[tuple[str, Any]]:
    """gRPC channel options: messages large enough for an upload (and any image), keepalive."""
    limit = config.max_upload_bytes + MESSAGE_SLACK_BYTES
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0), ("grpc.keepalive_time_ms", 60_000),
            ("grpc.http2.max_pings_without_data", 0), ("grpc.keepalive_permit_without_calls", 1)]


def device_record(config: AgentConfig) -> dict[str, Any]:
    """The device's environment stamp and the agent's settings (what a remote benchmark reports)."""
    from edgevit.environment import cpu_flags, environment
    from edgevit.runtime import BACKENDS
    from edgevit.runtime.cpu import int8_path

    backends = {}
    for name in BACKENDS.names():
        try:
            backend = BACKENDS.get(name)
            if backend.available():
                backends[name] = backend.version()
        except Exception:  # noqa: BLE001 - a backend that does not import is simply not offered
            continue
    return {"name": config.name, "environment": environment().to_dict(), "cpu_flags": list(cpu_flags()), "backends": backends,
            "int8_path": int8_path().to_dict(),
            "agent": {"threads": config.threads, "spin": bool(config.spin), "max_concurrent": config.max_concurrent,
                      "max_queue": config.max_queue, "max_upload_mb": config.max_upload_mb,
                      "tls": config.tls_cert is not None, "mutual_tls": config.tls_client_ca is not None,
                      "tokens": config.token_file is not None or config.admin_token_file is not None}}


async def _serve(config: AgentConfig) -> int:
    grpc = require("grpc", "agent", "the device agent")
    health_async = require("grpc_health.v1._async", "agent", "the device agent's health service")
    health_pb2 = require("grpc_health.v1.health_pb2", "agent", "the device agent's health service")
    health_pb2_grpc = require("grpc_health.v1.health_pb2_grpc", "agent", "the device agent's health service")
    service_grpc = require("tritonclient.grpc.service_pb2_grpc", "agent", "the device agent")
    from edgevit.agent.servicer import make_servicer

    tokens = Tokens.of(read_token(config.token_file, "inference token") if config.token_file else None,
                       read_token(config.admin_token_file, "admin token") if config.admin_token_file else None)
    if tokens.inference is not None and tokens.inference == tokens.admin:
        log.warning("the inference and admin tokens are the same: every inference client may upload models")
    repository = Repository(config.repository, threads=config.threads, max_upload_bytes=config.max_upload_bytes,
                            spin=config.spin)
    servicer = make_servicer(repository, tokens, device_record(config), config.max_concurrent, config.max_queue)
    health = health_async.HealthServicer()
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    server = grpc.aio.server(options=server_options(config))
    service_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = _bind(grpc, server, config)
    await server.start()
    log.info("listening on %s:%d; loading the repository %s (health NOT_SERVING until done)",
             f"[{config.host}]" if ":" in config.host else config.host, port, config.repository)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    load = loop.run_in_executor(None, repository.load_all)
    done, _ = await asyncio.wait([load, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    if load in done:
        load.result()
        servicer.ready = True
        for service in ("", SERVICE_NAME):
            await health.set(service, health_pb2.HealthCheckResponse.SERVING)
        host = f"[{config.host}]" if ":" in config.host else config.host
        log.info("ready: serving %d model(s) from %s on %s:%d (%s, %s, threads %s, max-concurrent %d)",
                 len(repository.models), config.repository, host, port,
                 "TLS" + (" with client certificates" if config.tls_client_ca else "") if config.tls_cert else
                 "plaintext", "tokens" if tokens.enabled else "no tokens", config.threads or "default",
                 config.max_concurrent)
        if tokens.enabled and config.tls_cert is None and not config.loopback:
            log.warning("tokens are sent in clear text on %s: give --tls-cert/--tls-key", config.host)
        await stop.wait()

    log.info("draining: refusing new requests, waiting up to %.0f s for those in flight", config.drain_seconds)
    servicer.ready = False
    await health.enter_graceful_shutdown()
    await server.stop(config.drain_seconds)
    await servicer.close()
    repository.close()
    log.info("stopped")
    return 0


def _bind(grpc: Any, server: Any, config: AgentConfig) -> int:
    """Bind the port (TLS when configured); the port actually bound (``--port 0`` picks one)."""
    from edgevit.errors import InvalidArgumentError

    address = config.address
    try:
        if config.tls_cert is None:
            port = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
                root_certificates=config.tls_client_ca.read_bytes() if config.tls_client_ca else None,
                require_client_auth=config.tls_client_ca is not None)
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        port, why = 0, f" ({exc})"
    else:
        why = ""
    if not port:
        raise InvalidArgumentError(f"cannot listen on {address}: the port is in use or the address is not this "
                                   f"machine's{why}")
    return port
