"""Greedy placement, feasibility and latency composition (pure, no torch)."""

from __future__ import annotations

import itertools

import pytest

from edgevit.devices import Cluster, Device, equal_devices
from edgevit.errors import PlanningError
from edgevit.partition.cost import PieceCost, transfer_ms
from edgevit.partition.placement import NoFeasibleDevice, check_devices_fit, place, single_device

MB = 1_000_000


def _piece(name, memory_mb, ms, macs=1_000_000):
    return PieceCost(name, params=1, macs=macs, weight_bytes=int(memory_mb * MB), activation_bytes=0,
                     input_bytes=12_288, output_bytes=384, measured_ms=ms)


def _cluster(*devices):
    return Cluster(tuple(devices), source="test.toml")


def _dev(name, memory_mb, speed=1.0, mbps=1000.0, latency=0.5):
    return Device(name, memory_mb, mbps, latency, speed=speed)


def test_one_piece_per_equal_device_and_end_to_end():
    pieces = [_piece(f"sub{i}", 10 + i, 5.0 + i) for i in range(3)]
    fusion = _piece("fusion", 0.1, 0.2)
    placement = place(pieces, equal_devices(3), fusion)
    devices = [a.device for a in placement.assignments]
    assert sorted(devices) == ["dev0", "dev1", "dev2"]  # spread, one each
    slowest = max(load.total_ms for load in placement.loads)
    assert placement.end_to_end_ms == pytest.approx(slowest + 0.2)
    load = next(load for load in placement.loads if load.pieces == ("sub2",))
    device = equal_devices(3).devices[0]
    assert load.total_ms == pytest.approx(transfer_ms(12_288, device) + 7.0 + transfer_ms(384, device))
    assert placement.compute_only_ms == pytest.approx(7.0 + 0.2)


def test_largest_goes_first_to_the_device_where_it_finishes_earliest():
    fast, slow = _dev("fast", 100, speed=4.0), _dev("slow", 100, speed=1.0)
    pieces = [_piece("small", 1, 4.0), _piece("big", 50, 8.0)]
    placement = place(pieces, _cluster(slow, fast))
    assert placement.device_of("big") == "fast"  # placed first, on the faster device
    # then small: fast would finish at 2 + 1 = 3 (+ transfers), slow at 4 (+ transfers)
    assert placement.device_of("small") == "fast"
    assert placement.assignments[0].piece == "small"  # assignments keep the input order


def test_memory_limits_and_sharing():
    big_room, small_room = _dev("big", 100), _dev("small", 10)
    pieces = [_piece("a", 60, 1.0), _piece("b", 30, 1.0), _piece("c", 8, 1.0)]
    placement = place(pieces, _cluster(small_room, big_room))
    assert placement.device_of("a") == "big" and placement.device_of("b") == "big"
    assert placement.device_of("c") == "small"
    for load in placement.loads:
        device = next(d for d in (big_room, small_room) if d.name == load.device)
        assert load.memory_bytes <= device.memory_bytes


def test_exhaustive_check_greedy_is_feasible_and_near_optimal():
    devices = _cluster(_dev("a", 40, 1.0), _dev("b", 40, 2.0), _dev("c", 25, 0.5))
    pieces = [_piece("p0", 20, 6.0), _piece("p1", 15, 4.0), _piece("p2", 10, 3.0), _piece("p3", 5, 1.0)]
    placement = place(pieces, devices)
    best = float("inf")
    for choice in itertools.product(devices.devices, repeat=len(pieces)):
        use = {d.name: 0.0 for d in devices.devices}
        time = {d.name: 0.0 for d in devices.devices}
        for piece, device in zip(pieces, choice):
            use[device.name] += piece.memory_bytes
            time[device.name] += piece.measured_ms / device.speed
        if all(use[d.name] <= d.memory_bytes for d in devices.devices):
            best = min(best, max(time.values()))
    greedy = max(load.compute_ms for load in placement.loads)
    assert greedy <= best * 4 / 3 + 1e-9  # LPT's bound for identical machines holds comfortably here


def test_no_feasible_device_says_how_much_is_free():
    with pytest.raises(NoFeasibleDevice) as info:
        place([_piece("sub0", 50, 1.0)], _cluster(_dev("a", 20), _dev("b", 30)))
    error = info.value
    assert error.piece == "sub0" and error.needed_bytes == 50 * MB and error.best_free_bytes == 30 * MB
    assert "sub0" in str(error) and "a: 20 MB free" in str(error)


def test_check_devices_fit_names_device_and_numbers():
    smallest = PieceCost("smallest", 10, 10, 2 * MB, MB // 2, 0, 0)
    check_devices_fit(_cluster(_dev("ok", 3)), smallest)
    with pytest.raises(PlanningError) as info:
        check_devices_fit(_cluster(_dev("ok", 3), _dev("tiny", 1.5)), smallest)
    message = str(info.value)
    assert "'tiny'" in message and "1.5 MB" in message and "2.5 MB" in message


def test_measured_throughput_devices_use_macs():
    device = Device("npu", 100, 1000, 0.0, gmacs_per_s=2.0)
    placement = place([_piece("sub0", 1, None, macs=4_000_000)], _cluster(device))
    assert placement.assignments[0].compute_ms == pytest.approx(2.0)
    with pytest.raises(PlanningError, match="no measured time"):
        place([_piece("sub0", 1, None)], _cluster(_dev("rel", 100)))


def test_single_device_reference():
    unsplit = _piece("unsplit", 50, 10.0)
    load = single_device(unsplit, _cluster(_dev("slow", 100, 1.0), _dev("fast", 100, 2.0), _dev("tiny", 10, 9.0)))
    assert load.device == "fast" and load.compute_ms == pytest.approx(5.0)
    assert single_device(unsplit, _cluster(_dev("tiny", 10))) is None


def test_replicas_respect_memory_and_never_share_the_piece_s_device():
    from edgevit.partition.placement import place_replicas

    pieces = {f"sub{i}": (f"d{i}", 30) for i in range(4)}
    chosen = place_replicas(pieces, {f"d{i}": 70 for i in range(4)}, 1)
    assert all(devices[0] == f"d{i}" and devices[1] != devices[0] for i, devices in enumerate(chosen.values()))
    used = {d: sum(30 for devices in chosen.values() for x in devices if x == d) for d in ("d0", "d1", "d2", "d3")}
    assert max(used.values()) <= 70, used
    assert sorted(devices[1] for devices in chosen.values()) == ["d0", "d1", "d2", "d3"], "spread out"
    assert place_replicas(pieces, {f"d{i}": 70 for i in range(4)}, 0) == {n: (d,) for n, (d, _) in pieces.items()}


def test_too_little_room_for_replicas_names_the_piece_and_the_free_memory():
    from edgevit.errors import PlanningError
    from edgevit.partition.placement import place_replicas

    with pytest.raises(PlanningError) as error:
        place_replicas({"sub0": ("a", 50_000_000), "sub1": ("b", 50_000_000)}, {"a": 60_000_000, "b": 60_000_000}, 1)
    assert "piece 'sub" in str(error.value) and "needs 1 standby device(s)" in str(error.value)
    assert "10 MB free" in str(error.value) and "--replicas" in str(error.value)


def test_predict_plan_on_other_devices():
    from edgevit.devices import Cluster, Device
    from edgevit.partition.plan import Plan, PlanPiece
    from edgevit.partition.predict import predict_plan

    cost = {"input_bytes": 12_500, "output_bytes": 250, "measured_ms": 2.0}
    pieces = tuple(PlanPiece(f"sub{i}", "submodel", f"sub{i}", f"d{i}", "input", "output", cost=cost)
                   for i in range(2))
    fusion = PlanPiece("fusion", "fusion", "fusion", None, "input", "logits", cost={"measured_ms": 0.1})
    plan = Plan("classwise", {}, ("a", "b"), "onnx", "fp32", {}, pieces, fusion)
    cluster = Cluster((Device("d0", 64, 100, 1.0, speed=0.5), Device("d1", 64, 100, 1.0, speed=1.0)))
    predicted = predict_plan(plan, cluster, request_ms=0.5)
    slow = predicted["pieces"]["sub0"]
    assert slow["compute_ms"] == pytest.approx(4.0) and slow["input_transfer_ms"] == pytest.approx(1.0 + 1.0)
    assert predicted["end_to_end_ms"] == pytest.approx(2.0 + 4.0 + (1.0 + 0.02) + 0.5 + 0.1)
    fanned = predict_plan(plan, cluster, request_ms=0.5, fanout_ms=0.75)
    assert fanned["end_to_end_ms"] == pytest.approx(predicted["end_to_end_ms"] + 0.75 * (2 - 1))
    stages = Plan("pipeline", {}, ("a", "b"), "onnx", "fp32", {}, pieces)
    pipe = predict_plan(stages, cluster)
    assert pipe["end_to_end_ms"] == pytest.approx(sum(p["total_ms"] for p in pipe["pieces"].values()))
    assert pipe["frames_per_s"] == pytest.approx(1000 / 4.0)
