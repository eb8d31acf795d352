"""The coordinator side: running split plans across device agents.

* :mod:`~edgevit.cluster.transport`: the :class:`Transport` interface every way of reaching a
  piece implements (gRPC to an agent, a local subprocess, an in-process fake for tests);
* :mod:`~edgevit.cluster.policy`: deadlines, hedged requests, failover to replicas and a
  circuit breaker per device;
* :mod:`~edgevit.cluster.session`: the class-wise and pipeline runners, written once over a
  transport (:func:`connect`);
* :mod:`~edgevit.cluster.deploy`: uploading a plan's pieces (and replicas) to their devices;
* :mod:`~edgevit.cluster.emulate`: a user-space link emulator (latency, bandwidth, cuts) for
  rehearsing a fleet on one machine;
* :mod:`~edgevit.cluster.fleet`: agents behind emulated links, and their device file;
* :mod:`~edgevit.cluster.local`: a plan run on this machine (``run_local``, ``run_in_process``).

Imports no torch; the names below are imported on first use.

Example:
    >>> from edgevit.cluster import Policy, connect
    >>> with connect("plan/", "devices.toml", policy=Policy(deadline_ms=250)) as session:
    ...     session.run(["cat.png"]).predictions
"""

from __future__ import annotations

from typing import Any

__all__ = ["connect", "ClusterSession", "Policy", "deploy_plan", "Fleet", "FleetDevice", "LinkProxy", "LinkSpec"]

_LAZY = {
    "connect": "edgevit.cluster.session",
    "ClusterSession": "edgevit.cluster.session",
    "Policy": "edgevit.cluster.policy",
    "deploy_plan": "edgevit.cluster.deploy",
    "Fleet": "edgevit.cluster.fleet",
    "FleetDevice": "edgevit.cluster.fleet",
    "LinkProxy": "edgevit.cluster.emulate",
    "LinkSpec": "edgevit.cluster.emulate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgevit.cluster' has no attribute {name!r}")
