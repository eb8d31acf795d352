"""An agent's life with real processes and real signals: NOT_SERVING while it loads its repository,
artifacts kept across restarts, leftovers of a killed upload removed, and SIGTERM draining the
requests in flight before it exits 0."""

from __future__ import annotations

import shutil
import signal
import threading
import time

import numpy as np
import pytest
from agent_helpers import start_agent, write_slow_model

grpc = pytest.importorskip("grpc")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from edgevit.errors import AgentError  # noqa: E402

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def _health(url: str) -> int:
    with grpc.insecure_channel(url) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    return write_slow_model(tmp_path_factory.mktemp("slow") / "slow-onnx-fp32")


def test_not_serving_while_loading_then_serving_and_kept_across_restarts(tmp_path, slow_model, dtype_artifacts):
    repository = tmp_path / "repository"
    repository.mkdir()
    shutil.copytree(slow_model, repository / slow_model.name)  # loading runs it once on zeros: ~0.5 s
    leftover = repository / ".staging-killed.abc123"
    leftover.mkdir()
    (leftover / "model.onnx").write_bytes(b"half an upload")
    agent = start_agent(tmp_path, "--threads", "1", repository=repository, wait="listening")
    try:
        assert _health(agent.url) == NOT_SERVING
        with agent.client() as client:
            assert not client.ready()
            client.wait_ready(60)
            assert _health(agent.url) == SERVING and client.model_ready(slow_model.name)
            client.upload(dtype_artifacts["float32"])
        assert not leftover.exists(), "an interrupted upload's staging folder is removed at start"
    finally:
        assert agent.stop() == 0
    again = start_agent(tmp_path / "again", repository=repository)
    try:
        with again.client() as client:
            assert client.model_ready(slow_model.name) and client.model_ready(dtype_artifacts["float32"].name)
            result = client.infer(dtype_artifacts["float32"].name, {"x": np.ones((1, 4), np.float32)})
            np.testing.assert_array_equal(result.outputs["doubled"], np.full((1, 4), 2.0, np.float32))
    finally:
        assert again.stop() == 0
    assert "load " not in again.log_text(), "nothing was uploaded again"


def test_sigterm_drains_requests_in_flight_then_exits_zero(tmp_path, slow_model):
    agent = start_agent(tmp_path, "--threads", "2", "--drain-seconds", "30")
    with agent.client() as client:
        client.upload(slow_model)
        x = np.ones((768, 768), np.float32)
        answers: list[object] = []
        threads = [threading.Thread(target=lambda: answers.append(_infer_or_error(agent, x))) for _ in range(2)]
        with grpc.insecure_channel(agent.url) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
            assert next(watch).status == SERVING
            for thread in threads:
                thread.start()
            time.sleep(0.3)  # both requests are in: one running, one queued
            agent.process.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING, "watchers hear about the drain"
            for thread in threads:
                thread.join(60)
        assert all(isinstance(a, np.ndarray) and a.shape == (768, 768) for a in answers), answers
        with pytest.raises(AgentError) as error:
            client.infer(slow_model.name, {"x": x}, timeout=10)
        assert error.value.code == "UNAVAILABLE"
    assert agent.process.wait(60) == 0
    log = agent.log_text()
    assert "draining" in log and "stopped" in log and "Traceback" not in log


def _infer_or_error(agent, x):
    try:
        with agent.client() as client:
            return client.infer("slow-onnx-fp32", {"x": x}, timeout=60).outputs["y"]
    except AgentError as exc:
        return exc
