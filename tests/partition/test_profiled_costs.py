"""Planning with devices given by a profile: pieces carry predicted times per device (pure, no torch).

The predicted times are handed in as numbers (``PieceCost.profiled``); exporting and predicting
real pieces is tested in ``tests/split/test_profiles.py``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgevit.devices import Cluster, Device
from edgevit.errors import ArtifactError, PlanningError
from edgevit.partition.cost import PieceCost, ProfiledTime, compute_ms, compute_source
from edgevit.partition.pipeline import balance_pipeline, stage_cost
from edgevit.partition.placement import place, single_device
from edgevit.partition.plan import Plan, PlanPiece
from edgevit.partition.predict import predict_plan

MB = 1_000_000


def _timed(ms, profile="fast.json", run_ms=0.05, not_costed=()):
    return ProfiledTime(ms, run_ms, "onnxruntime", profile, f"sha-{profile}", "2026-11-30T00:00:00+00:00", 1,
                        not_costed)


def _piece(name, fast_ms, slow_ms, measured_ms=1.0, memory_mb=1.0, macs=1_000_000):
    """A piece predicted at ``fast_ms`` on ``fast`` and ``slow_ms`` on ``slow``; ``measured_ms`` here."""
    return PieceCost(name, 1, macs, int(memory_mb * MB), 0, 1_000, 100, measured_ms,
                     {"fast": _timed(fast_ms), "slow": _timed(slow_ms, "slow.json")})


def _profiled(name, memory_mb=100.0, profile="p.json"):
    return Device(name, memory_mb, 1000.0, 0.0, profile=profile)


def test_compute_ms_of_a_profiled_device_is_the_pieces_predicted_time():
    piece = _piece("sub0", 2.0, 8.0, measured_ms=100.0)
    assert compute_ms(piece, _profiled("fast")) == 2.0  # the measured time and the speed play no part
    assert compute_ms(piece, _profiled("slow")) == 8.0
    assert compute_ms(piece, Device("other", 100, 1000, 0.0, speed=4.0)) == 25.0  # unprofiled: as before
    source = compute_source(piece, _profiled("slow"))
    assert source == {"from": "profile", "backend": "onnxruntime", "profile": "slow.json",
                      "profile_sha256": "sha-slow.json", "profile_created_utc": "2026-11-30T00:00:00+00:00",
                      "predictor_version": 1, "complete": True, "not_costed": {}}
    assert compute_source(piece, Device("x", 1, 1, 0, speed=0.5, speed_origin="guess"))["speed_origin"] == "guess"


def test_a_profiled_device_without_a_prediction_is_refused_with_what_to_do():
    with pytest.raises(PlanningError) as error:
        compute_ms(_piece("sub0", 2.0, 8.0), _profiled("pi-c", profile="pi-c.json"))
    message = str(error.value)
    assert "device 'pi-c' is described by its profile 'pi-c.json'" in message
    assert "piece 'sub0' has no time predicted for it (it has predictions for fast, slow)" in message
    assert "split again with this device file" in message and "profile_plan" in message


def test_placement_follows_predicted_times_not_the_measured_ones():
    """The slow device is profiled 4x slower; the measured times (equal) would not tell them apart."""
    pieces = [_piece("big", 8.0, 32.0, memory_mb=50), _piece("small", 2.0, 8.0, memory_mb=10)]
    cluster = Cluster((_profiled("slow"), _profiled("fast")))
    placement = place(pieces, cluster)
    assert placement.device_of("big") == "fast"  # largest first, where it finishes earliest
    assert placement.device_of("small") == "slow"  # fast would finish at 8 + 2 = 10 ms, slow at 8 ms
    loads = {load.device: load for load in placement.loads}
    assert loads["fast"].compute_ms == 8.0 and loads["slow"].compute_ms == 8.0
    # five equal pieces: the fast device takes four (it finishes its 4th at 8 ms, the slow its 1st at 8 ms)
    equal = [_piece(f"sub{i}", 2.0, 8.0) for i in range(5)]
    counts = {d: 0 for d in ("fast", "slow")}
    for assignment in place(equal, cluster).assignments:
        counts[assignment.device] += 1
    assert counts == {"fast": 4, "slow": 1}
    assert single_device(_piece("unsplit", 10.0, 40.0), cluster).device == "fast"


def test_a_stage_pays_the_per_call_overhead_once():
    segments = [PieceCost(f"s{i}", 1, 1, 1, 0, 10, 10, 1.0, {"d": _timed(1.0 + i, run_ms=0.25)}) for i in range(3)]
    stage = stage_cost(segments, "stage0")
    assert stage.profiled["d"].ms == pytest.approx((1.0 + 2.0 + 3.0) - 2 * 0.25)
    assert stage.measured_ms == 3.0
    partial = [segments[0], PieceCost("s1", 1, 1, 1, 0, 10, 10, 1.0)]  # one segment not predicted on d
    assert stage_cost(partial, "stage0").profiled == {}
    lower = [segments[0], PieceCost("s1", 1, 1, 1, 0, 10, 10, 1.0,
                                    {"d": _timed(1.0, run_ms=0.25, not_costed=(("Erf", 2),))})]
    chained = stage_cost(lower, "stage0").profiled["d"]
    assert not chained.complete and chained.not_costed == (("Erf", 2),)
    other = PieceCost("s2", 1, 1, 1, 0, 10, 10, 1.0, {"d": _timed(1.0, profile="other.json")})
    with pytest.raises(PlanningError, match="different profiles"):
        stage_cost([segments[0], other], "stage0")


@pytest.mark.parametrize(("change", "words"), [
    ({"ms": "fast"}, "ms = 'fast'; expected a finite number >= 0"),
    ({"ms": float("nan")}, "ms = nan"),
    ({"run_ms": -1.0}, "run_ms = -1.0"),
    ({"predictor_version": "10"}, "predictor_version = '10'; expected a positive integer"),
    ({"range_ms": [3.0]}, "range_ms = [3.0]; expected [low, high] or null"),
    ({"range_ms": [4.0, 3.0]}, "expected [low, high] with low <= high"),
    ({"range_ms": ["a", 3.0]}, "range_ms = 'a'"),
    ({"idle_curve": [[1.0]]}, "idle_curve = [[1.0]]; expected a list of [ms, ratio] pairs"),
    ({"idle_curve": [[1.0, None]]}, "idle_curve = None"),
    ({"not_costed": ["Erf"]}, "not_costed = ['Erf']; expected an object"),
    ({"ms": None, "profile": None}, "ms = None"),
])
def test_a_malformed_predicted_time_in_a_plan_is_refused_naming_the_field(change, words):
    """A plan file is untrusted data: each field a predicted time records is checked on reading,
    and a wrong one is named with what is allowed, rather than surfacing as a bare ValueError."""
    good = replace(_timed(2.0, run_ms=0.25), range_ms=(1.75, 2.5), idle_curve=((1.0, 1.5), (10.0, 1.1))).to_dict()
    assert ProfiledTime.from_dict(good).range_ms == (1.75, 2.5)
    with pytest.raises(ArtifactError, match="split the model again") as caught:
        ProfiledTime.from_dict({**good, **change})
    assert words in str(caught.value)
    for key in ("ms", "predictor_version"):
        with pytest.raises(ArtifactError, match=f"missing {key}"):
            ProfiledTime.from_dict({k: v for k, v in good.items() if k != key})
    with pytest.raises(ArtifactError, match="expected an object"):
        PieceCost.from_dict("sub0", {"profiled": {"fast": [2.0]}})


def test_a_stage_adds_its_segments_ranges_like_their_times_and_a_plan_keeps_them():
    """Each end of the references' range is added as the times are (the overhead paid once); a
    segment without a range leaves the stage without one; the range round-trips through a plan's cost."""
    ranged = [PieceCost(f"s{i}", 1, 1, 1, 0, 10, 10, 1.0,
                        {"d": replace(_timed(2.0, run_ms=0.25), range_ms=(1.75, 2.5))}) for i in range(2)]
    stage = stage_cost(ranged, "stage0").profiled["d"]
    assert stage.ms == pytest.approx(3.75) and stage.range_ms == (pytest.approx(1.5 + 1.5 + 0.25), pytest.approx(4.75))
    assert stage.to_dict()["range_ms"] == [pytest.approx(3.25), pytest.approx(4.75)]
    assert PieceCost.from_dict("st", stage_cost(ranged, "st").to_dict()) == stage_cost(ranged, "st")
    mixed = [ranged[0], PieceCost("s9", 1, 1, 1, 0, 10, 10, 1.0, {"d": _timed(2.0, run_ms=0.25)})]
    assert stage_cost(mixed, "stage0").profiled["d"].range_ms is None
    assert "range_ms" not in _timed(2.0).to_dict()  # no references: nothing recorded


def test_pipeline_balancing_gives_the_slower_device_fewer_segments():
    segments = [PieceCost(f"s{i}", 1, 1, MB, 0, 1_000, 1_000, 1.0,
                          {"fast": _timed(1.05, run_ms=0.05), "slow": _timed(4.05, "slow.json", run_ms=0.05)})
                for i in range(10)]
    cluster = Cluster((_profiled("slow"), _profiled("fast")))
    stages = balance_pipeline(segments, cluster).stages
    slow, fast = stages
    assert (slow.device, fast.device) == ("slow", "fast")
    assert (slow.last - slow.first + 1, fast.last - fast.first + 1) == (2, 8)  # 8.05 ms each
    assert slow.compute_ms == pytest.approx(2 * 4.0 + 0.05) and fast.compute_ms == pytest.approx(8 * 1.0 + 0.05)
    equal = Cluster((Device("a", 100, 1000, 0.0, speed=1.0), Device("b", 100, 1000, 0.0, speed=1.0)))
    assert [s.last for s in balance_pipeline(segments, equal).stages] == [4, 9]  # the measured times: halves


def test_cost_records_round_trip_and_predict_plan_uses_the_same_figures():
    piece = _piece("sub0", 2.0, 8.0, measured_ms=3.0)
    lower = PieceCost("sub1", 1, 1, 1, 0, 1_000, 100, 3.0,
                      {"fast": _timed(1.5), "slow": _timed(6.0, "slow.json", not_costed=(("Foo", 1),))})
    for cost in (piece, lower):
        assert PieceCost.from_dict(cost.name, cost.to_dict()) == cost
    assert "profiled" not in PieceCost("x", 1, 1, 1, 0, 1, 1, 1.0).to_dict()  # plans without profiles unchanged
    pieces = (PlanPiece("sub0", "submodel", "sub0", "fast", "input", "output", cost=piece.to_dict()),
              PlanPiece("sub1", "submodel", "sub1", "slow", "input", "output", cost=lower.to_dict()))
    fusion = PlanPiece("fusion", "fusion", "fusion", None, "input", "logits", cost={"measured_ms": 0.5})
    plan = Plan("classwise", {}, ("a", "b"), "onnx", "fp32", {}, pieces, fusion)
    cluster = Cluster((_profiled("fast"), _profiled("slow")))
    predicted = predict_plan(Plan.from_dict(plan.to_dict()), cluster)
    assert predicted["pieces"]["sub0"]["compute_ms"] == 2.0 and predicted["pieces"]["sub1"]["compute_ms"] == 6.0
    assert predicted["pieces"]["sub1"]["compute_from"]["complete"] is False
    assert predicted["pieces"]["sub1"]["compute_from"]["not_costed"] == {"Foo": 1}
    assert predicted["pieces"]["sub0"]["compute_from"]["profile"] == "fast.json"
    slowest = max(p["total_ms"] for p in predicted["pieces"].values())
    assert predicted["end_to_end_ms"] == pytest.approx(slowest + 0.5)
    moved = Plan("classwise", {}, ("a", "b"), "onnx", "fp32", {},
                 (pieces[0], PlanPiece("sub1", "submodel", "sub1", "pi-z", "input", "output", cost=lower.to_dict())),
                 fusion)
    with pytest.raises(PlanningError, match="'pi-z' is described by its profile 'p.json', but piece 'sub1' has no"):
        predict_plan(moved, Cluster((_profiled("fast"), _profiled("pi-z"))))


def test_predict_plan_adds_up_one_request_at_idle_devices_and_paces_a_pipeline_back_to_back():
    """A profile with an idle fit: the end-to-end figure uses ``idle_ms`` of each piece, the frame
    rate the back-to-back time; a stage of segments keeps the fit; the record round-trips."""
    from dataclasses import replace

    curve = ((2.0, 2.0), (8.0, 1.625))  # x2 at 2 ms, x1.625 at 8 ms and beyond
    idle = {"fast": replace(_timed(2.0), idle_curve=curve), "slow": replace(_timed(8.0, "slow.json"), idle_curve=curve)}
    assert idle["fast"].idle_ms == pytest.approx(4.0) and _timed(2.0).idle_ms is None
    import math

    stage = ProfiledTime.chained([idle["fast"], idle["fast"]])  # 3.95 ms, the curve kept: interpolated in log size
    assert stage.idle_ms == pytest.approx(3.95 * (2.0 - 0.375 * math.log(3.95 / 2.0) / math.log(4.0)))
    first = PieceCost("s0", 1, 1, 1, 0, 1_000, 100, 3.0, idle)
    second = PieceCost("s1", 1, 1, 1, 0, 1_000, 100, 3.0, {"slow": idle["slow"]})
    assert PieceCost.from_dict("s0", first.to_dict()) == first
    assert first.to_dict()["profiled"]["fast"]["idle_ms"] == pytest.approx(4.0)
    pieces = (PlanPiece("s0", "stage", "s0", "fast", "input", "x", cost=first.to_dict()),
              PlanPiece("s1", "stage", "s1", "slow", "x", "logits", cost=second.to_dict()))
    plan = Plan("pipeline", {}, ("a", "b"), "onnx", "fp32", {}, pieces, None)
    predicted = predict_plan(Plan.from_dict(plan.to_dict()), Cluster((_profiled("fast"), _profiled("slow"))),
                             request_ms=0.5)
    s0, s1 = predicted["pieces"]["s0"], predicted["pieces"]["s1"]
    assert (s0["compute_ms"], s0["back_to_back_ms"]) == (pytest.approx(4.0), 2.0)
    assert (s1["compute_ms"], s1["back_to_back_ms"]) == (pytest.approx(13.0), 8.0)
    assert predicted["end_to_end_ms"] == pytest.approx(s0["total_ms"] + s1["total_ms"])
    assert s1["total_ms"] == pytest.approx(s1["input_transfer_ms"] + 13.0 + s1["output_transfer_ms"] + 0.5)
    assert predicted["frames_per_s"] == pytest.approx(1000.0 / 8.0)
    speeds = Cluster((Device("fast", 100, 1000, 0.0, speed=1.0), Device("slow", 100, 1000, 0.0, speed=0.5)))
    by_speed = predict_plan(plan, speeds)["pieces"]["s1"]
    assert by_speed["compute_ms"] == by_speed["back_to_back_ms"] == 6.0  # a speed says nothing of idle gaps
