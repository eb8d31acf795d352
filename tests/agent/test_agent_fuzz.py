"""10,000 generated requests against a live agent (hypothesis): random model names, versions,
input names, datatypes, shapes, raw and typed contents, byte lengths, parameters and requested
outputs, plus hostile uploads. The agent must answer every one with OK or a documented status
(never UNKNOWN or INTERNAL, never a crash), and answer a valid request exactly as before."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
grpc = pytest.importorskip("grpc")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tritonclient.grpc import service_pb2 as pb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc as pbg  # noqa: E402

from edgevit.agent.client import artifact_files  # noqa: E402

pytestmark = pytest.mark.slow  # real agent processes, over a minute in all
EXAMPLES = 500
REQUESTS_PER_EXAMPLE = 20  # 10,000 requests in all
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION}
DATATYPES = ["FP32", "FP16", "FP64", "INT8", "UINT8", "INT64", "INT32", "BOOL", "BYTES", "BF16", "", "fp32", "FP32\0"]
TEXT = st.text(max_size=24)

names = st.one_of(st.sampled_from(["dtype-float32", "dtype-int8", "nope", ""]), TEXT)
shapes = st.one_of(st.just([1, 4]), st.just([3, 4]),
                   st.lists(st.integers(min_value=-2**63, max_value=2**63 - 1), max_size=10),
                   st.lists(st.integers(min_value=0, max_value=6), max_size=4))
parameters = st.dictionaries(TEXT, st.one_of(st.integers(-2**63, 2**63 - 1), st.booleans(), TEXT), max_size=3)


@st.composite
def infer_requests(draw):
    request = pb.ModelInferRequest(model_name=draw(names), model_version=draw(st.sampled_from(["", "1", "2", "x"])),
                                   id=draw(TEXT))
    _parameters(request.parameters, draw(parameters))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(name=draw(st.sampled_from(["x", "y", ""])), datatype=draw(st.sampled_from(DATATYPES)))
        shape = draw(shapes)
        tensor.shape.extend(shape)
        _parameters(tensor.parameters, draw(parameters))
        if raw:
            length = draw(st.sampled_from([0, 16, 32, 64, 4 * max(1, _size(shape)) if _size(shape) < 4096 else 7]))
            request.raw_input_contents.append(draw(st.binary(min_size=length, max_size=length)))
        elif draw(st.booleans()):
            tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=16)))
        else:
            tensor.contents.int_contents.extend(draw(st.lists(st.integers(-2**31, 2**31 - 1), max_size=16)))
    for _ in range(draw(st.integers(0, 2))):
        request.outputs.add(name=draw(st.sampled_from(["doubled", "same", "zzz"])))
    if draw(st.integers(0, 9)) == 0:  # raw contents that do not match the inputs' count
        request.raw_input_contents.append(b"\0" * 16)
    return request


@st.composite
def upload_requests(draw, valid_files):
    request = pb.RepositoryModelLoadRequest(model_name=draw(st.one_of(st.just("fuzzed"), TEXT)))
    files = dict(valid_files) if draw(st.booleans()) else {}
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.one_of(st.sampled_from(["../x", "/etc/x", "a/../../b", "model.onnx", "manifest.json",
                                               ".hidden", "model.onnx/x", "ok.bin"]), TEXT))
        files[path] = draw(st.binary(max_size=64))
    for path, data in files.items():
        request.parameters[f"file:{path}"].bytes_param = data
    if draw(st.booleans()):
        request.parameters[draw(TEXT)].string_param = draw(TEXT)
    return request


def _parameters(target, values) -> None:
    for key, value in values.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        else:
            target[key].string_param = value


def _size(shape) -> int:
    total = 1
    for dim in shape:
        total *= max(dim, 0)
    return total


def test_ten_thousand_generated_requests(agent, dtype_artifacts):
    with grpc.insecure_channel(agent.url) as channel:
        stub = pbg.GRPCInferenceServiceStub(channel)
        for dtype in ("float32", "int8"):
            upload = pb.RepositoryModelLoadRequest(model_name=f"dtype-{dtype}")
            for path, data in artifact_files(dtype_artifacts[dtype]).items():
                upload.parameters[f"file:{path}"].bytes_param = data
            stub.RepositoryModelLoad(upload, timeout=30)
        valid_files = artifact_files(dtype_artifacts["float32"])
        probe = pb.ModelInferRequest(model_name="dtype-float32")
        tensor = probe.inputs.add(name="x", datatype="FP32")
        tensor.shape.extend([2, 4])
        probe.raw_input_contents.append(np.arange(8, dtype="<f4").tobytes())
        before = stub.ModelInfer(probe, timeout=10).raw_output_contents
        seen: dict[str, int] = {}

        def send(method, request) -> None:
            try:
                getattr(stub, method)(request, timeout=30)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
                assert exc.details(), f"{code} without a message"
                if code not in ALLOWED:
                    alive = "alive" if agent.process.poll() is None else f"exited {agent.process.returncode}"
                    tail = agent.log.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{code.name}: {exc.details()} (agent {alive}) for\n{request}\n"
                                         f"agent log tail:\n{tail}") from exc
            seen[code.name] = seen.get(code.name, 0) + 1

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(infer_requests(), min_size=REQUESTS_PER_EXAMPLE - 2, max_size=REQUESTS_PER_EXAMPLE - 2),
               st.lists(upload_requests(valid_files), min_size=2, max_size=2))
        def fuzz(infers, uploads):
            for request in infers:
                send("ModelInfer", request)
            for request in uploads:
                send("RepositoryModelLoad", request)

        fuzz()
        print(f"fuzz: {sum(seen.values())} requests, outcomes {seen}")
        assert sum(seen.values()) == EXAMPLES * REQUESTS_PER_EXAMPLE
        assert seen.get("INVALID_ARGUMENT", 0) > 1000 and seen.get("NOT_FOUND", 0) > 100, seen
        assert agent.process.poll() is None, "the agent is alive"
        assert stub.ModelInfer(probe, timeout=10).raw_output_contents == before
    leftovers = [p.name for p in agent.repository.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers
