"""Pipeline balancing against brute force (pure, no torch)."""

from __future__ import annotations

import itertools
import random

import pytest

from edgevit.devices import Cluster, Device, equal_devices
from edgevit.errors import PlanningError
from edgevit.partition.cost import PieceCost
from edgevit.partition.pipeline import _stage, balance_pipeline

MB = 1_000_000


def _segments(times, weights_mb=None, out_bytes=4_000):
    weights_mb = weights_mb or [1.0] * len(times)
    return [PieceCost(f"s{i}", 1, 1, int(w * MB), 1000, 12_000 if i == 0 else out_bytes, out_bytes, t)
            for i, (t, w) in enumerate(zip(times, weights_mb))]


def _brute_force(segments, cluster):
    n, k = len(segments), len(cluster.devices)
    best = float("inf")
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = [0, *cuts, n]
        stages = [_stage(segments, bounds[i], bounds[i + 1] - 1, cluster.devices, i) for i in range(k)]
        if all(s is not None for s in stages):
            best = min(best, max(s.total_ms for s in stages))
    return best


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 4])
def test_balancing_matches_brute_force(seed, k):
    rng = random.Random(seed)
    segments = _segments([rng.uniform(0.5, 5.0) for _ in range(8)])
    devices = Cluster(tuple(Device(f"d{i}", 100, rng.choice([100.0, 1000.0]), 0.5, speed=rng.choice([0.5, 1.0, 2.0]))
                            for i in range(k)))
    plan = balance_pipeline(segments, devices)
    assert plan.bottleneck_ms == pytest.approx(_brute_force(segments, devices))
    covered = [i for s in plan.stages for i in range(s.first, s.last + 1)]
    assert covered == list(range(8))  # consecutive, complete, in chain order
    assert [s.device for s in plan.stages] == [d.name for d in devices.devices]


def test_even_costs_split_evenly_and_latency_adds_up():
    plan = balance_pipeline(_segments([1.0] * 6, out_bytes=0), equal_devices(3, link_latency_ms=0.0))
    assert [(s.first, s.last) for s in plan.stages] == [(0, 1), (2, 3), (4, 5)]
    assert plan.compute_only_ms == pytest.approx(6.0)
    assert plan.end_to_end_ms == pytest.approx(6.0 + plan.stages[0].input_transfer_ms)


def test_memory_forces_the_cut():
    segments = _segments([1.0, 1.0, 1.0, 1.0], weights_mb=[10, 10, 1, 1])
    devices = Cluster((Device("big", 25, 1000, 0.5, speed=1.0), Device("small", 5, 1000, 0.5, speed=1.0)))
    plan = balance_pipeline(segments, devices)
    assert (plan.stages[0].first, plan.stages[0].last) in ((0, 1), (0, 2))
    for stage in plan.stages:
        assert stage.memory_bytes <= next(d for d in devices.devices if d.name == stage.device).memory_bytes


def test_errors():
    with pytest.raises(PlanningError, match="5 devices but the model has only 4 segments"):
        balance_pipeline(_segments([1.0] * 4), equal_devices(5))
    with pytest.raises(PlanningError, match="no way to cut"):
        balance_pipeline(_segments([1.0] * 4, weights_mb=[50] * 4), equal_devices(2, memory_mb=10))
