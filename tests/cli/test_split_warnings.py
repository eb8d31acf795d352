"""The split summary says when devices are left idle or the plan is slower than not splitting (issue 17 #10)."""

from __future__ import annotations

from edgevit.cli.split import plan_warnings
from edgevit.partition.plan import Plan, PlanPiece


def _plan(strategy: str, devices: list[str], used: list[str], end_to_end: float, unsplit: float) -> Plan:
    pieces = tuple(PlanPiece(f"p{i}", "submodel", f"p{i}", name, "input", "output") for i, name in enumerate(used))
    return Plan(strategy, {}, ("a", "b"), "onnx", "fp32", {}, pieces,
                devices={"device": [{"name": n} for n in devices]},
                latency={"end_to_end_ms": end_to_end, "unsplit_device_ms": unsplit, "unsplit_device": "jetson"})


def test_idle_devices_and_a_slower_plan_are_warned_about():
    warnings = plan_warnings(_plan("classwise", ["jetson", "pi-a", "pi-b"], ["jetson", "jetson"], 12.0, 8.0))
    assert any("uses 1 of the 3 devices" in w and "pi-a, pi-b are left idle" in w for w in warnings)
    assert any("1.5x slower end to end than the unsplit model on jetson" in w for w in warnings)
    pipeline = plan_warnings(_plan("pipeline", ["a", "b"], ["a", "b"], 20.0, 3.0))
    assert len(pipeline) == 1 and "6.7x slower" in pipeline[0] and "frames per second" in pipeline[0]


def test_a_plan_that_uses_every_device_and_is_faster_has_no_warning():
    assert plan_warnings(_plan("classwise", ["a", "b"], ["a", "b"], 3.0, 8.0)) == []
