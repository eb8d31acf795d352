"""The agent driven by the ecosystem's own client, tritonclient, over real gRPC on loopback:
health, metadata, uploads with ``load_model(files=...)``, inference equal to ``edgevit.runtime``
on the same artifact, statistics, unload; and the standard ``grpc.health.v1`` service."""

from __future__ import annotations

import numpy as np
import pytest
from agent_helpers import DTYPES

triton = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from edgevit.agent.client import artifact_files  # noqa: E402
from edgevit.runtime import load  # noqa: E402


def _upload(client, folder, name=None):
    client.load_model(name or folder.name, files={f"file:{path}": data for path, data in artifact_files(folder).items()})


def _infer(client, name, feeds, outputs=None):
    inputs = []
    for key, array in feeds.items():
        tensor = triton.InferInput(key, list(array.shape), triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    requested = [triton.InferRequestedOutput(o) for o in outputs] if outputs else None
    return client.infer(name, inputs, outputs=requested)


def triton_dtype(dtype) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(np.dtype(dtype))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["onnx-fp32", "onnx-fp16", "tflite-fp32"])
def test_tritonclient_uploads_and_infers_like_the_runtime(agent, zoo_artifacts, kind):
    folder = zoo_artifacts[kind]
    client = agent.triton()
    assert client.is_server_live() and client.is_server_ready()
    assert not client.is_model_ready(folder.name)
    _upload(client, folder)
    assert client.is_model_ready(folder.name)

    with load(folder) as session:
        spec = session.input_specs[0]
        metadata = client.get_model_metadata(folder.name, as_json=True)
        assert metadata["inputs"] == [{"name": spec.name, "datatype": triton_dtype(spec.dtype),
                                       "shape": [str(d) for d in spec.shape]}]
        assert metadata["outputs"][0]["name"] == session.output_specs[0].name
        x = np.random.default_rng(1).standard_normal(spec.shape).astype(spec.dtype)
        expected = session.run({spec.name: x})
    result = _infer(client, folder.name, {spec.name: x})
    for name, value in expected.items():
        np.testing.assert_array_equal(result.as_numpy(name), value)  # the same runtime, bit for bit
    parameters = result.get_response().parameters
    assert {"queue_ns", "input_ns", "compute_ns", "output_ns", "server_ns"} <= set(parameters)
    assert 0 < parameters["compute_ns"].int64_param < parameters["server_ns"].int64_param

    statistics = client.get_inference_statistics(folder.name, as_json=True)["model_stats"][0]
    assert statistics["name"] == folder.name and int(statistics["execution_count"]) == 1
    assert int(statistics["inference_stats"]["success"]["count"]) == 1
    assert int(statistics["inference_stats"]["compute_infer"]["ns"]) == parameters["compute_ns"].int64_param

    client.unload_model(folder.name)
    assert not client.is_model_ready(folder.name)
    assert folder.name not in {m["name"] for m in client.get_model_repository_index(as_json=True).get("models", [])}


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_datatype_round_trips(agent, dtype_artifacts, dtype):
    folder = dtype_artifacts[dtype]
    client = agent.triton()
    _upload(client, folder)
    x = (np.arange(8).reshape(2, 4) % 3).astype(dtype)
    result = _infer(client, folder.name, {"x": x})
    np.testing.assert_array_equal(result.as_numpy("same"), x)
    np.testing.assert_array_equal(result.as_numpy("doubled"), x.astype(np.float32) * 2)
    only = _infer(client, folder.name, {"x": x}, outputs=["same"])
    assert only.as_numpy("doubled") is None and only.as_numpy("same") is not None
    client.unload_model(folder.name)


def test_errors_are_status_codes_with_a_clear_message(agent, dtype_artifacts):
    client = agent.triton()
    folder = dtype_artifacts["float32"]
    _upload(client, folder)
    cases = [
        (lambda: _infer(client, "nope", {"x": np.zeros((1, 4), np.float32)}), "StatusCode.NOT_FOUND",
         f"unknown model 'nope'; loaded: {folder.name}"),
        (lambda: _infer(client, folder.name, {"y": np.zeros((1, 4), np.float32)}), "StatusCode.INVALID_ARGUMENT",
         "unknown input(s) 'y'; missing input(s) 'x'"),
        (lambda: _infer(client, folder.name, {"x": np.zeros((1, 4), np.float16)}), "StatusCode.INVALID_ARGUMENT",
         "datatype FP16; the model takes FP32"),
        (lambda: _infer(client, folder.name, {"x": np.zeros((1, 5), np.float32)}), "StatusCode.INVALID_ARGUMENT",
         "has shape [1, 5]"),
        (lambda: client.get_model_metadata("nope"), "StatusCode.NOT_FOUND", "unknown model 'nope'"),
        (lambda: client.get_model_config(folder.name), "StatusCode.UNIMPLEMENTED", "use ModelMetadata"),
        (lambda: client.unload_model("nope"), "StatusCode.NOT_FOUND", "no model 'nope' to unload"),
    ]
    for call, status, message in cases:
        with pytest.raises(InferenceServerException) as error:
            call()
        assert error.value.status() == status and message in error.value.message(), error.value
    assert not client.is_model_ready("nope")  # ModelReady answers false, it does not fail
    client.unload_model(folder.name)


def test_standard_grpc_health_checking(agent):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(agent.url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as error:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


def test_edgevit_client_reads_the_device_record_and_digest(agent, dtype_artifacts):
    from edgevit.artifact import artifact_digest

    folder = dtype_artifacts["float32"]
    with agent.client() as client:
        device = client.device()
        assert device["environment"]["cpu_model"] and "onnxruntime" in device["backends"]
        assert device["agent"]["max_concurrent"] == 1 and device["agent"]["spin"] is False and device["int8_path"]["u8s8_kernel"]
        first = client.upload(folder)
        again = client.upload(folder)
        assert first.uploaded and not again.uploaded and first.digest == artifact_digest(folder)
        assert client.metadata(folder.name)["digest"] == first.digest
        result = client.infer(folder.name, {"x": np.ones((3, 4), np.float32)})
        np.testing.assert_array_equal(result.outputs["doubled"], np.full((3, 4), 2, np.float32))
        assert result.round_trip_ns > result.timings["server_ns"] > result.timings["compute_ns"] > 0
        client.unload(folder.name)


def test_back_to_back_runs_are_asked_for_with_a_bounded_parameter(agent, dtype_artifacts):
    """``edgevit_repeat`` (how a probe times a kernel as it runs inside a model): tritonclient passes it as a
    request parameter; the response says how many ran; anything but an int64 in range is INVALID_ARGUMENT."""
    from edgevit.agent.servicer import MAX_REPEAT
    from edgevit.probe.timers import MAX_REPEAT as TIMER_MAX

    assert TIMER_MAX == MAX_REPEAT
    folder = dtype_artifacts["float32"]
    client = agent.triton()
    _upload(client, folder, "repeat")
    x = np.ones((2, 4), np.float32)
    tensor = triton.InferInput("x", [2, 4], "FP32")
    tensor.set_data_from_numpy(x)
    before = int(client.get_inference_statistics("repeat", as_json=True)["model_stats"][0].get("execution_count", 0))
    result = client.infer("repeat", [tensor], parameters={"edgevit_repeat": 7})
    np.testing.assert_array_equal(result.as_numpy("same"), x)
    parameters = result.get_response().parameters
    assert parameters["runs"].int64_param == 7 and parameters["compute_ns"].int64_param > 0
    assert parameters["compute_mean_ns"].int64_param > 0
    assert "runs" not in _infer(client, "repeat", {"x": x}).get_response().parameters  # only when asked
    stats = client.get_inference_statistics("repeat", as_json=True)["model_stats"][0]
    assert int(stats["execution_count"]) == before + 2
    for bad in (0, MAX_REPEAT + 1, "7", 2.5):
        with pytest.raises(InferenceServerException) as error:
            client.infer("repeat", [tensor], parameters={"edgevit_repeat": bad})
        assert "INVALID_ARGUMENT" in str(error.value.status()) and "edgevit_repeat must be an int64 from 1 to" in str(error.value)
    client.unload_model("repeat")
