"""64 concurrent clients on loopback, each with its own channel, for a fixed number of requests:
every answer is right or the documented RESOURCE_EXHAUSTED, and the agent's memory returns to
its level before the load."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("grpc")

from edgevit.errors import AgentError  # noqa: E402

pytestmark = pytest.mark.slow  # real agent processes, over a minute in all
CLIENTS = 64
REQUESTS = 25  # per client: 1,600 in all


def test_sixty_four_clients(tmp_path, zoo_artifacts):
    from agent_helpers import start_agent

    from edgevit.runtime import load

    folder = zoo_artifacts["onnx-fp32"]
    agent = start_agent(tmp_path, "--threads", "2", "--max-concurrent", "1", "--max-queue", "32")
    try:
        with load(folder) as session:
            spec = session.input_specs[0]
            x = np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32)
            expected = next(iter(session.run({spec.name: x}).values()))
        with agent.client() as client:
            client.upload(folder)
            for _ in range(50):  # warm up: the allocator's and gRPC's steady state
                client.infer(folder.name, {spec.name: x})
        baseline = agent.rss_bytes()
        outcomes: dict[str, int] = {}
        wrong: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(CLIENTS)

        def client_loop() -> None:
            with agent.client(timeout=120) as client:
                start.wait()
                for _ in range(REQUESTS):
                    try:
                        result = client.infer(folder.name, {spec.name: x})
                        outcome = "OK"
                        if not np.array_equal(next(iter(result.outputs.values())), expected):
                            with lock:
                                wrong.append("different output")
                    except AgentError as exc:
                        outcome = exc.code
                    with lock:
                        outcomes[outcome] = outcomes.get(outcome, 0) + 1

        threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        print(f"load: {outcomes}; agent RSS {baseline / 2**20:.1f} MB before, {agent.rss_bytes() / 2**20:.1f} MB after")
        assert sum(outcomes.values()) == CLIENTS * REQUESTS and not wrong
        assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"}, outcomes
        assert outcomes.get("OK", 0) >= CLIENTS * REQUESTS // 4, outcomes
        with agent.client() as client:  # the queue is empty again: a lone request gets in at once
            assert client.infer(folder.name, {spec.name: x}).timings["queue_ns"] < 50_000_000
        after = agent.rss_bytes()
        assert after <= baseline + 24 * 2**20, (baseline, after)
    finally:
        assert agent.stop() == 0
