"""How an agent is run: :class:`AgentConfig`, what ``edgevit serve`` parses its flags into.

The checks that keep a device safe happen here, before anything listens: tokens are read from
files (never from the command line, where ``ps`` shows them), TLS files must exist and come in
pairs, and an agent on an address other than loopback refuses to start without credentials
(tokens or mutual TLS) unless ``insecure`` says that is intended.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from edgevit.errors import InvalidArgumentError

log = logging.getLogger("edgevit.agent")

DEFAULT_PORT = 8001  # Triton's gRPC port
DEFAULT_MAX_UPLOAD_MB = 256
DEFAULT_MAX_QUEUE = 64
MIN_TOKEN_LENGTH = 16
#: room in a gRPC message beyond an upload's files (names, parameters, framing)
MESSAGE_SLACK_BYTES = 1 << 20


@dataclass(frozen=True)
class AgentConfig:
    """Everything ``edgevit serve`` is asked to do.

    Attributes:
        host / port: where to listen (port 0: any free port; the ready line says which).
        repository: the folder artifacts are kept in (and loaded from at start).
        threads: CPU threads per model (None: the backend's default, all cores).
        spin: onnxruntime's intra-op spinning (True: faster on a device that runs only the agent;
            None: the backend's default, off).
        max_concurrent: inference requests run at once; more wait in a queue.
        max_queue: requests allowed to wait; beyond it RESOURCE_EXHAUSTED.
        max_upload_mb: the largest artifact accepted (also the gRPC message limit).
        token_file / admin_token_file: files holding the bearer tokens for inference
            (health, metadata, inference, statistics) and for the repository (load/unload).
        tls_cert / tls_key: serve TLS with this certificate chain and key (PEM).
        tls_client_ca: require client certificates signed by this CA (mutual TLS).
        insecure: allow a non-loopback address without tokens or mutual TLS.
        drain_seconds: how long SIGTERM waits for in-flight requests before exiting.
        name: the device's name in ServerMetadata's device record (default: the host name).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    repository: Path = Path("edgevit-repository")
    threads: int | None = None
    spin: bool | None = None
    max_concurrent: int = 1
    max_queue: int = DEFAULT_MAX_QUEUE
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    token_file: Path | None = None
    admin_token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    insecure: bool = False
    drain_seconds: float = 30.0
    name: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        for key in ("repository", "token_file", "admin_token_file", "tls_cert", "tls_key", "tls_client_ca"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, Path(value))
        _positive("port", self.port, low=0, high=65535)
        if self.threads is not None:
            _positive("threads", self.threads)
        if self.spin is not None and not isinstance(self.spin, bool):
            raise InvalidArgumentError(f"spin must be True, False or None, got {self.spin!r}")
        _positive("max_concurrent", self.max_concurrent)
        _positive("max_queue", self.max_queue, low=0)
        _positive("max_upload_mb", self.max_upload_mb, high=2047)  # gRPC messages are limited to 2 GiB
        if not isinstance(self.drain_seconds, (int, float)) or not 0 <= self.drain_seconds <= 3600:
            raise InvalidArgumentError(f"drain_seconds must be between 0 and 3600, got {self.drain_seconds!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgumentError("TLS needs both --tls-cert and --tls-key (the certificate chain and its "
                                       "private key, PEM)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidArgumentError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key as well")
        for key in ("token_file", "admin_token_file", "tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise InvalidArgumentError(f"--{key.replace('_', '-')} {str(path)!r} does not exist or is not a file")
        if not self.loopback and not (self.authenticated or self.insecure):
            raise InvalidArgumentError(
                f"refusing to serve on {self.host!r} without credentials: anyone who can reach it could upload "
                "models and run them. Give --token-file and --admin-token-file (and --tls-cert/--tls-key so the "
                "tokens are not sent in clear), or --tls-client-ca for mutual TLS; or --insecure if this network "
                "is yours alone. Serving on 127.0.0.1 needs none of these")

    @property
    def loopback(self) -> bool:
        """Whether the listening address is reachable only from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def authenticated(self) -> bool:
        """Whether callers must prove who they are (bearer tokens or client certificates)."""
        return self.token_file is not None or self.admin_token_file is not None or self.tls_client_ca is not None

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb << 20

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def read_token(path: Path, what: str) -> str:
    """The token in ``path`` (surrounding whitespace removed); refuses a short or empty one and
    warns when other users can read the file."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"cannot read the {what} file {str(path)!r}: {exc}") from exc
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise InvalidArgumentError(
            f"the {what} in {str(path)!r} must be at least {MIN_TOKEN_LENGTH} characters without spaces; make one "
            "with: python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the %s file %s can be read by other users; chmod 600 it", what, path)
    return token


def _positive(name: str, value: object, low: int = 1, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidArgumentError(f"{name} must be an integer {limit}, got {value!r}")
