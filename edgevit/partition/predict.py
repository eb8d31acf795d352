"""A plan's latency on a given set of devices, from its recorded piece costs (pure).

``plan.json`` carries the prediction for the devices it was made for. The same plan may run on
other devices (an emulated fleet, the real boards): :func:`predict_plan` recomputes it from each
piece's compute time on each device (for a device given by a profile, the piece's time
predicted from that profile, ``cost.profiled``; else its measured time ``cost.measured_ms``,
timed on the planning machine, over the device's speed), the device file's links, and
``request_ms``: what one request costs besides compute and the
bytes on the link (serialization, gRPC, the agent's own work), which the link model alone leaves
out and which, on loopback, is larger than the compute of a small piece. ``request_ms`` is
measured, not guessed: ``edgevit bench --url`` reports it as "network + agent"; the cluster
benchmark measures it per fleet with a model that computes nothing. ``fanout_ms``: what each
further concurrent request of a class-wise plan adds, because one coordinator serializes,
sends and receives the K requests one after another (measured the same way, with K concurrent
requests that compute nothing against one).

The end-to-end figure is one request through an idle plan: each piece's device is asked once
and was idle before, and a profile that timed models after an idle gap prices that
(``compute_ms``, :func:`edgevit.partition.cost.request_compute_ms`; 2.1x the back-to-back time
for a 1.3 ms ViT sub-model, 1.1x for a 46 ms model, on this project's AVX2 VM). The frame rate of a pipeline kept busy is set by the stages
run back to back (``back_to_back_ms``, :func:`edgevit.partition.cost.compute_ms`, what placement
balances).

* class-wise: every sub-model's device in parallel (input transfer, compute, feature transfer,
  one request), the slowest of them, plus ``fanout_ms`` for each of the other K - 1 requests,
  then the fusion head on the coordinator;
* pipeline: the stages one after another (each a request and its transfers); the steady-state
  frame rate is set by the slowest stage.

Example:
    >>> predict_plan(plan, load_devices("fleet/devices.toml"), request_ms=2.4)["end_to_end_ms"]
"""

from __future__ import annotations

from typing import Any

from edgevit.devices import Cluster, Device
from edgevit.errors import PlanningError
from edgevit.partition.cost import PieceCost, compute_ms, compute_source, request_compute_ms, transfer_ms

__all__ = ["predict_plan"]


def predict_plan(plan: Any, cluster: Cluster, request_ms: float = 0.0, fanout_ms: float = 0.0) -> dict[str, Any]:
    """``{"end_to_end_ms", "frames_per_s", "pieces": {name: {...}}, "request_ms"}`` of ``plan`` on ``cluster``.

    Each piece's entry gives ``compute_ms`` (one request at an idle device, what the end-to-end
    figure adds up) and ``back_to_back_ms`` (the device kept busy, what a pipeline's frame rate
    is set by), and says where they came from (``compute_from``: the profile, its digest and the
    predictor version, or the speed and its ``speed_origin``).

    Raises:
        PlanningError: a piece's device is not in ``cluster``, a piece has no measured time and
            its device gives a relative speed, or its device gives a profile and the plan has no
            time predicted from it for that device.
    """
    pieces = {}
    for piece in plan.pieces:
        device = _device(cluster, piece.device, piece.name)
        cost = PieceCost.from_dict(piece.name, piece.cost)
        compute = request_compute_ms(cost, device)
        transfer_in, transfer_out = transfer_ms(cost.input_bytes, device), transfer_ms(cost.output_bytes, device)
        pieces[piece.name] = {"device": device.name, "compute_ms": compute,
                              "back_to_back_ms": compute_ms(cost, device), "input_transfer_ms": transfer_in,
                              "output_transfer_ms": transfer_out, "request_ms": request_ms,
                              "total_ms": transfer_in + compute + transfer_out + request_ms,
                              "compute_from": compute_source(cost, device)}
    if plan.strategy == "classwise":
        fusion = 0.0
        if plan.fusion is not None and plan.fusion.cost.get("measured_ms") is not None:
            fusion = float(plan.fusion.cost["measured_ms"]) / cluster.coordinator_speed
        slowest = max(p["total_ms"] for p in pieces.values())
        fanout = fanout_ms * (len(pieces) - 1)
        return {"end_to_end_ms": slowest + fanout + fusion, "fusion_ms": fusion, "frames_per_s": None,
                "slowest_piece_ms": slowest, "fanout_ms": fanout, "pieces": pieces, "request_ms": request_ms}
    total = sum(p["total_ms"] for p in pieces.values())
    # a stage is busy for its compute only, back to back; transfers and the request overlap with other frames
    bottleneck = max(p["back_to_back_ms"] for p in pieces.values())
    return {"end_to_end_ms": total, "frames_per_s": 1000.0 / bottleneck if bottleneck > 0 else None,
            "bottleneck_ms": bottleneck, "pieces": pieces, "request_ms": request_ms}


def _device(cluster: Cluster, name: str | None, piece: str) -> Device:
    for device in cluster.devices:
        if device.name == name:
            return device
    raise PlanningError(f"piece {piece!r} is placed on {name!r}, which is not in {cluster.source} "
                        f"({', '.join(d.name for d in cluster.devices)})")

