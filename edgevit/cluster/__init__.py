"""The coordinator side: running split plans across device agents.

* :mod:`~edgevit.cluster.transport`: the :class:`Transport` interface every way of reaching a
  piece implements (gRPC to an agent, a local subprocess, an in-process fake for tests);
* :mod:`~edgevit.cluster.policy`: deadlines, hedged requests, failover to replicas and a
  circuit breaker per device;
* :mod:`~edgevit.cluster.session`: the class-wise and pipeline runners, written once over a
  transport (:func:`connect`);
* :mod:`~edgevit.cluster.deploy`: uploading a plan's pieces (and replicas) to their devices;
* :mod:`~edgevit.cluster.emulate`: a user-space link emulator (latency, bandwidth, cuts) for
  rehearsing a fleet on one machine.

Imports no torch.
"""
