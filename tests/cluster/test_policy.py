"""The failure policy over a scripted transport (no sockets, no models): deadlines, failover,
hedged requests and the circuit breaker with its backoff probes."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from edgevit.cluster.policy import FailurePolicy, PieceUnavailable, Policy
from edgevit.cluster.transport import Answer, Transport
from edgevit.errors import AgentError, InvalidArgumentError

X = {"input": np.zeros((1, 4), np.float32)}


class Scripted(Transport):
    """Each device answers after ``delay[device]`` seconds, or fails with ``error[device]``, or hangs."""

    def __init__(self, delay=None, error=None, hung=(), alive=None):
        self.delay, self.error, self.hung = dict(delay or {}), dict(error or {}), set(hung)
        self.alive = alive if alive is not None else {}
        self.calls: list[str] = []
        self.cancelled: list[str] = []

    async def infer(self, device, model, inputs, timeout):
        self.calls.append(device)
        try:
            async with asyncio.timeout(timeout):
                if device in self.hung:
                    await asyncio.Event().wait()
                await asyncio.sleep(self.delay.get(device, 0.001))
        except TimeoutError:
            raise AgentError("DEADLINE_EXCEEDED", f"{device} timed out") from None
        except asyncio.CancelledError:
            self.cancelled.append(device)
            raise
        if device in self.error:
            raise AgentError(self.error[device], f"{device} failed")
        return Answer({"output": np.full((1, 2), len(device), np.float32)}, self.delay.get(device, 0.001) * 1000, 0.5)

    async def ready(self, device, model=None, timeout=1.0):
        return self.alive.get(device, True)


def _run(coroutine):
    return asyncio.run(coroutine)


def test_a_failed_device_fails_over_to_the_replica():
    async def scenario():
        transport = Scripted(error={"a": "UNAVAILABLE"})
        policy = FailurePolicy(transport, Policy(hedge=False))
        answer = await policy.call("p", "m", ("a", "b"), X, time.monotonic() + 1)
        assert answer.device == "b" and answer.failed_over and not answer.hedged
        assert "a: UNAVAILABLE" in answer.errors[0] and transport.calls == ["a", "b"]
        assert policy.counters.failed_over == 1

    _run(scenario())


def test_a_hung_device_costs_the_deadline_then_a_clear_error():
    async def scenario():
        policy = FailurePolicy(Scripted(hung={"a"}), Policy(hedge=False, deadline_ms=100))
        start = time.monotonic()
        with pytest.raises(PieceUnavailable) as error:
            await policy.call("p", "m", ("a",), X, start + 0.1)
        assert 0.09 < time.monotonic() - start < 0.5
        assert "piece 'p' could not be computed" in str(error.value) and error.value.code == "UNAVAILABLE"

    _run(scenario())


def test_a_slow_primary_is_hedged_and_the_loser_cancelled():
    async def scenario():
        transport = Scripted(delay={"a": 0.01, "b": 0.01})
        policy = FailurePolicy(transport, Policy(hedge_min_samples=20))
        for _ in range(20):  # learn the piece's latency: ~10 ms
            await policy.call("p", "m", ("a", "b"), X, time.monotonic() + 1)
        assert policy.hedge_delay("p") == pytest.approx(0.01, abs=0.01)
        transport.delay["a"] = 0.5  # the primary slows down
        start = time.monotonic()
        answer = await policy.call("p", "m", ("a", "b"), X, start + 1)
        assert answer.device == "b" and answer.hedged and time.monotonic() - start < 0.2
        assert "a" in transport.cancelled and policy.counters.hedge_won == 1

    _run(scenario())


def test_no_hedge_before_enough_samples_or_without_a_replica():
    async def scenario():
        policy = FailurePolicy(Scripted(delay={"a": 0.05}), Policy(hedge_min_samples=5))
        answer = await policy.call("p", "m", ("a", "b"), X, time.monotonic() + 1)
        assert not answer.hedged and answer.device == "a"
        for _ in range(6):
            answer = await policy.call("q", "m", ("a",), X, time.monotonic() + 1)
        assert not answer.hedged and policy.counters.hedged == 0

    _run(scenario())


def test_the_breaker_marks_a_device_down_probes_it_and_takes_it_back():
    async def scenario():
        alive = {"a": False}
        transport = Scripted(error={"a": "UNAVAILABLE"}, alive=alive)
        policy = FailurePolicy(transport, Policy(hedge=False, breaker_failures=3, probe_initial_ms=20, probe_max_ms=80))
        for _ in range(3):
            assert (await policy.call("p", "m", ("a", "b"), X, time.monotonic() + 1)).device == "b"
        assert policy.devices_down() == ["a"] and policy.counters.marked_down == 1
        transport.calls.clear()
        await policy.call("p", "m", ("a", "b"), X, time.monotonic() + 1)
        assert transport.calls == ["b"], "a device that is down gets no requests"
        with pytest.raises(PieceUnavailable, match="a is marked down"):
            await policy.call("p", "m", ("a",), X, time.monotonic() + 1, try_down=False)
        await asyncio.sleep(0.2)
        probes = policy.health["a"].probes
        assert probes >= 2, "probed with backoff while down"
        del transport.error["a"]
        alive["a"] = True
        for _ in range(40):
            if not policy.devices_down():
                break
            await asyncio.sleep(0.02)
        assert policy.devices_down() == [] and policy.counters.back_up == 1
        assert (await policy.call("p", "m", ("a", "b"), X, time.monotonic() + 1)).device == "a"
        await policy.close()

    _run(scenario())


def test_every_device_down_is_tried_anyway_for_a_stage():
    async def scenario():
        transport = Scripted(error={"a": "UNAVAILABLE"})
        policy = FailurePolicy(transport, Policy(hedge=False, breaker_failures=1, probe_initial_ms=1000))
        with pytest.raises(PieceUnavailable):
            await policy.call("p", "m", ("a",), X, time.monotonic() + 1)
        assert policy.devices_down() == ["a"]
        del transport.error["a"]
        answer = await policy.call("p", "m", ("a",), X, time.monotonic() + 1)
        assert answer.device == "a" and policy.devices_down() == []
        await policy.close()

    _run(scenario())


def test_a_request_error_is_not_retried_elsewhere():
    async def scenario():
        transport = Scripted(error={"a": "INVALID_ARGUMENT"})
        with pytest.raises(PieceUnavailable, match="a: INVALID_ARGUMENT"):
            await FailurePolicy(transport, Policy(hedge=False)).call("p", "m", ("a", "b"), X, time.monotonic() + 1)
        assert transport.calls == ["a"]

    _run(scenario())


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(deadline_ms=0), "deadline_ms must be a positive number"),
    (dict(hedge_quantile=1.0), "hedge_quantile must be in [0.5, 1)"),
    (dict(breaker_failures=0), "breaker_failures must be a positive integer"),
])
def test_bad_policies(kwargs, message):
    with pytest.raises(InvalidArgumentError) as error:
        Policy(**kwargs)
    assert message in str(error.value)
