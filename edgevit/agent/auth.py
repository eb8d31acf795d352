"""Who may call what: bearer tokens in the ``authorization`` metadata, checked per method group.

The groups follow Triton's restricted-protocol groups:

* **health** (open, for probes): ``grpc.health.v1.Health``, ``ServerLive``, ``ServerReady``,
  ``ModelReady``;
* **inference** (the inference token, or the admin token): metadata, ``ModelInfer``,
  ``ModelStatistics`` and everything else of the service;
* **repository** (the admin token only): ``RepositoryIndex``, ``RepositoryModelLoad``,
  ``RepositoryModelUnload``.

An agent started without tokens lets every caller in (loopback, ``--insecure``, or mutual TLS,
where the certificate is the credential). Tokens are compared as SHA-256 digests with
:func:`hmac.compare_digest`, so neither their content nor their length leaks through timing.
A missing or wrong token is UNAUTHENTICATED; a valid inference token on a repository call is
PERMISSION_DENIED.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from edgevit.errors import AgentError

SERVICE = "/inference.GRPCInferenceService/"
OPEN = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch", SERVICE + "ServerLive",
                  SERVICE + "ServerReady", SERVICE + "ModelReady"})
REPOSITORY = frozenset({SERVICE + "RepositoryIndex", SERVICE + "RepositoryModelLoad",
                        SERVICE + "RepositoryModelUnload"})


def group_of(method: str) -> str:
    """``health``, ``repository`` or ``inference`` for a full gRPC method name."""
    if method in OPEN:
        return "health"
    if method in REPOSITORY:
        return "repository"
    return "inference"


@dataclass(frozen=True)
class Tokens:
    """The digests of the tokens an agent accepts (None: that token is not configured)."""

    inference: bytes | None = None
    admin: bytes | None = None

    @classmethod
    def of(cls, inference: str | None, admin: str | None) -> Tokens:
        return cls(_digest(inference) if inference else None, _digest(admin) if admin else None)

    @property
    def enabled(self) -> bool:
        return self.inference is not None or self.admin is not None

    def authorize(self, method: str, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        """Return if the caller may call ``method``; AgentError UNAUTHENTICATED/PERMISSION_DENIED if not."""
        group = group_of(method)
        if group == "health" or not self.enabled:
            return
        token = bearer_token(metadata)
        if token is None:
            raise AgentError("UNAUTHENTICATED", "this agent needs a token: send the metadata 'authorization: Bearer "
                                                "<token>' (edgevit: --token-file; tritonclient: headers=)")
        digest = _digest(token)
        is_admin = self.admin is not None and hmac.compare_digest(digest, self.admin)
        is_inference = self.inference is not None and hmac.compare_digest(digest, self.inference)
        if not (is_admin or is_inference):
            raise AgentError("UNAUTHENTICATED", "the token is not valid for this agent")
        if group == "repository" and not is_admin:
            why = ("uploads need the admin token (--admin-token-file)" if self.admin is not None
                   else "this agent was started without --admin-token-file, so it accepts no uploads or unloads")
            raise AgentError("PERMISSION_DENIED", f"the inference token may not change the repository: {why}")


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, or None."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
