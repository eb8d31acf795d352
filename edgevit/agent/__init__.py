"""The device agent, ``edgevit serve``: one small process per device that takes artifacts over
the network, runs them with :mod:`edgevit.runtime` and answers over the Open Inference Protocol
(KServe v2) on gRPC, the protocol of Triton, KServe, Seldon MLServer and OpenVINO Model Server.

* :mod:`~edgevit.agent.config`: :class:`AgentConfig` (what ``edgevit serve`` parses into);
* :mod:`~edgevit.agent.repository`: artifacts on disk, checked uploads, loaded sessions;
* :mod:`~edgevit.agent.tensors`: OIP tensors to numpy and back, checked;
* :mod:`~edgevit.agent.auth`: bearer tokens per method group;
* :mod:`~edgevit.agent.servicer` / :mod:`~edgevit.agent.server`: the gRPC service and its life;
* :mod:`~edgevit.agent.client`: edgevit's client (:class:`AgentClient`, :func:`deploy`).

Imports no torch (a test checks it); grpc and tritonclient's generated stubs come with the
``agent`` extra: ``pip install 'edgevit[agent,onnxruntime]'``.

Example:
    >>> from edgevit.agent import AgentConfig, serve
    >>> serve(AgentConfig(host="0.0.0.0", port=8001, repository="/var/lib/edgevit",
    ...                   token_file="/etc/edgevit/token", admin_token_file="/etc/edgevit/admin-token",
    ...                   tls_cert="agent.pem", tls_key="agent.key"))
"""

from __future__ import annotations

from typing import Any

__all__ = ["AgentConfig", "serve", "AgentClient", "InferResult", "deploy"]

_LAZY = {
    "AgentConfig": "edgevit.agent.config",
    "serve": "edgevit.agent.server",
    "AgentClient": "edgevit.agent.client",
    "InferResult": "edgevit.agent.client",
    "deploy": "edgevit.agent.client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgevit.agent' has no attribute {name!r}")
