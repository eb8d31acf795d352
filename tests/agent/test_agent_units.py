"""The agent's parts without a server: tensors on the wire, tokens, configuration, upload checks,
the admission queue. (The same rules are driven over real gRPC in the other agent tests.)"""

from __future__ import annotations

import asyncio
import hashlib
import json

import numpy as np
import pytest
from agent_helpers import write_dtype_model, write_token

from edgevit.agent.auth import Tokens, bearer_token, group_of
from edgevit.agent.config import AgentConfig
from edgevit.agent.repository import Repository, check_upload
from edgevit.agent.servicer import Admission
from edgevit.agent.tensors import decode_inputs, encode_outputs
from edgevit.artifact import TensorSpec
from edgevit.errors import AgentError, InvalidArgumentError

pb = pytest.importorskip("tritonclient.grpc.service_pb2")
SPEC = (TensorSpec("x", (None, 3, 4, 4), "float32"),)


def _request(array: np.ndarray, name: str = "x", datatype: str = "FP32", shape=None, raw: bytes | None = None):
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name=name, datatype=datatype)
    tensor.shape.extend(array.shape if shape is None else shape)
    request.raw_input_contents.append(array.tobytes() if raw is None else raw)
    return request


# -- tensors ---------------------------------------------------------------------------------------


def test_raw_and_typed_inputs_decode_to_the_same_array():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    raw = decode_inputs(_request(x), SPEC)["x"]
    typed_request = pb.ModelInferRequest(model_name="m")
    tensor = typed_request.inputs.add(name="x", datatype="FP32")
    tensor.shape.extend(x.shape)
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    np.testing.assert_array_equal(raw, x)
    np.testing.assert_array_equal(decode_inputs(typed_request, SPEC)["x"], x)


@pytest.mark.parametrize(("change", "message"), [
    (dict(name="image"), "unknown input(s) 'image'; missing input(s) 'x'; the model takes 'x' FP32[-1, 3, 4, 4]"),
    (dict(datatype="FP16"), "input 'x' has datatype FP16; the model takes FP32 (nothing is converted"),
    (dict(datatype="BYTES"), "input 'x' has datatype 'BYTES'; the model takes FP32"),
    (dict(shape=[1, 3, 4, 5]), "input 'x' has shape [1, 3, 4, 5]; the model takes 'x' FP32[-1, 3, 4, 4]"),
    (dict(shape=[0, 3, 4, 4]), "has shape [0, 3, 4, 4]"),
    (dict(shape=[1, 3, 4]), "has shape [1, 3, 4]"),
    (dict(raw=b"\0" * 10), "input 'x' has 10 bytes of raw contents; shape [1, 3, 4, 4] of FP32 needs 192"),
    (dict(shape=[2**62, 3, 4, 4]), "shape [4611686018427387904, 3, 4, 4] of FP32 needs 885443715538058477568"),
])
def test_bad_inputs_say_what_was_sent_and_what_the_model_takes(change, message):
    with pytest.raises(AgentError) as error:
        decode_inputs(_request(np.zeros((1, 3, 4, 4), np.float32), **change), SPEC)
    assert error.value.code == "INVALID_ARGUMENT" and message in str(error.value), str(error.value)


def test_typed_integers_out_of_range_are_refused():
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="INT8")
    tensor.shape.extend([1, 2])
    tensor.contents.int_contents.extend([1, 300])
    with pytest.raises(AgentError, match=r"outside the INT8 range \[-128, 127\]"):
        decode_inputs(request, (TensorSpec("x", (1, 2), "int8"),))


def test_outputs_are_little_endian_raw_and_can_be_selected():
    response = pb.ModelInferResponse()
    encode_outputs(response, {"a": np.arange(3, dtype=np.int64), "b": np.ones(2, np.float16)}, ["b"])
    assert [o.name for o in response.outputs] == ["b"] and response.outputs[0].datatype == "FP16"
    assert response.raw_output_contents[0] == np.ones(2, "<f2").tobytes()
    with pytest.raises(AgentError, match="unknown output"):
        encode_outputs(pb.ModelInferResponse(), {"a": np.zeros(1)}, ["c"])


# -- tokens ----------------------------------------------------------------------------------------

SERVICE = "/inference.GRPCInferenceService/"


def test_method_groups_follow_tritons_restricted_protocol():
    assert group_of("/grpc.health.v1.Health/Check") == "health" and group_of(SERVICE + "ModelReady") == "health"
    assert group_of(SERVICE + "RepositoryModelLoad") == "repository"
    assert group_of(SERVICE + "ModelInfer") == group_of(SERVICE + "SystemSharedMemoryRegister") == "inference"


@pytest.mark.parametrize(("metadata", "method", "code"), [
    ((), "ModelInfer", "UNAUTHENTICATED"),
    ((("authorization", "Bearer wrong-token-0123456789"),), "ModelInfer", "UNAUTHENTICATED"),
    ((("authorization", "Basic dXNlcjpwYXNz"),), "ModelInfer", "UNAUTHENTICATED"),
    ((("authorization", "Bearer inference-token-0123456789"),), "RepositoryModelLoad", "PERMISSION_DENIED"),
    ((("authorization", "Bearer inference-token-0123456789"),), "ModelInfer", None),
    ((("Authorization", "bearer admin-token-0123456789abc"),), "RepositoryModelLoad", None),
    ((("authorization", "Bearer admin-token-0123456789abc"),), "ModelInfer", None),
    ((), "ServerLive", None),
])
def test_tokens(metadata, method, code):
    tokens = Tokens.of("inference-token-0123456789", "admin-token-0123456789abc")
    if code is None:
        tokens.authorize(SERVICE + method, metadata)
    else:
        with pytest.raises(AgentError) as error:
            tokens.authorize(SERVICE + method, metadata)
        assert error.value.code == code


def test_without_an_admin_token_nobody_may_upload():
    with pytest.raises(AgentError, match="started without --admin-token-file"):
        Tokens.of("inference-token-0123456789", None).authorize(
            SERVICE + "RepositoryModelLoad", (("authorization", "Bearer inference-token-0123456789"),))
    assert bearer_token([("authorization", b"Bearer abc")]) == "abc"


# -- configuration ---------------------------------------------------------------------------------


def test_a_network_address_needs_credentials_or_insecure(tmp_path):
    with pytest.raises(InvalidArgumentError, match="refusing to serve on '0.0.0.0' without credentials"):
        AgentConfig(host="0.0.0.0", repository=tmp_path)
    token = write_token(tmp_path / "token", "a" * 32)
    assert AgentConfig(host="0.0.0.0", repository=tmp_path, token_file=token).authenticated
    assert AgentConfig(host="0.0.0.0", repository=tmp_path, insecure=True)
    assert AgentConfig(host="::1", repository=tmp_path).loopback and AgentConfig(host="localhost").loopback


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(tls_cert="cert.pem"), "TLS needs both --tls-cert and --tls-key"),
    (dict(tls_client_ca="ca.pem"), "--tls-client-ca (mutual TLS) needs --tls-cert"),
    (dict(token_file="missing"), "--token-file 'missing' does not exist"),
    (dict(max_concurrent=0), "max_concurrent must be an integer >= 1"),
    (dict(port=70000), "port must be an integer between 0 and 65535"),
    (dict(max_upload_mb=4096), "max_upload_mb must be an integer between 1 and 2047"),
])
def test_bad_configurations(kwargs, message):
    with pytest.raises(InvalidArgumentError) as error:
        AgentConfig(**kwargs)
    assert message in str(error.value)


def test_short_tokens_are_refused(tmp_path):
    from edgevit.agent.config import read_token

    with pytest.raises(InvalidArgumentError, match="at least 16 characters"):
        read_token(write_token(tmp_path / "t", "short"), "inference token")
    assert read_token(write_token(tmp_path / "u", "x" * 20), "inference token") == "x" * 20


# -- uploads ---------------------------------------------------------------------------------------


@pytest.fixture
def upload(tmp_path) -> dict[str, bytes]:
    folder = write_dtype_model(tmp_path / "m", "float32")
    return {name: (folder / name).read_bytes() for name in ("manifest.json", "model.onnx")}


def _manifest_with(upload, **changes) -> dict[str, bytes]:
    data = json.loads(upload["manifest.json"])
    data.update(changes)
    return {**upload, "manifest.json": json.dumps(data).encode()}


@pytest.mark.parametrize(("change", "code", "message"), [
    (lambda u: {**u, "../evil": b"x"}, "INVALID_ARGUMENT", "'../evil' is not a relative path"),
    (lambda u: {**u, "/etc/cron.d/x": b"x"}, "INVALID_ARGUMENT", "'/etc/cron.d/x' is not a relative path"),
    (lambda u: {**u, "a\\..\\b": b"x"}, "INVALID_ARGUMENT", "is not a relative path"),
    (lambda u: {**u, ".bashrc": b"x"}, "INVALID_ARGUMENT", "is not a relative path"),
    (lambda u: {**u, "notes.txt": b"x"}, "INVALID_ARGUMENT", "'notes.txt' is neither the model file"),
    (lambda u: {k: v for k, v in u.items() if k != "manifest.json"}, "INVALID_ARGUMENT", "has no manifest.json"),
    (lambda u: {**u, "manifest.json": b"{not json"}, "INVALID_ARGUMENT", "manifest.json is not valid JSON"),
    (lambda u: {**u, "manifest.json": b"[1, 2]"}, "INVALID_ARGUMENT", "expected a JSON object"),
    (lambda u: _manifest_with(u, model_file="../../etc/passwd"), "INVALID_ARGUMENT", "is not a plain file name"),
    (lambda u: _manifest_with(u, inputs="abc"), "INVALID_ARGUMENT", "inputs must be a list of 1..64"),
    (lambda u: _manifest_with(u, inputs=[{"name": "x", "shape": [-1, 4]}]), "INVALID_ARGUMENT",
     "inputs[0].shape must be a list of at most 8 positive integers"),
    (lambda u: _manifest_with(u, preprocessing={"size": 10**9}), "INVALID_ARGUMENT", "preprocessing.size must be"),
    (lambda u: _manifest_with(u, preprocessing={"std": [0, 1, 1]}), "INVALID_ARGUMENT",
     "preprocessing.std must be positive"),
    (lambda u: _manifest_with(u, target="pickle"), "INVALID_ARGUMENT", "target 'pickle' is not one of"),
    (lambda u: {**u, "model.onnx": u["model.onnx"] + b"x"}, "INVALID_ARGUMENT", "the manifest says"),
    (lambda u: {**u, "model.onnx/x": b"x"}, "INVALID_ARGUMENT", "sent both as a file and as a folder"),
    (lambda u: {**u, "big.bin": b"x" * 2048}, "RESOURCE_EXHAUSTED", "this agent accepts at most"),
    (lambda u: {}, "INVALID_ARGUMENT", "the upload has no files"),
])
def test_upload_refusals(upload, change, code, message):
    with pytest.raises(AgentError) as error:
        check_upload(change(upload), {}, max_bytes=2048)
    assert error.value.code == code and message in str(error.value), str(error.value)


def test_digests_are_checked(upload):
    good = {name: hashlib.sha256(data).hexdigest() for name, data in upload.items()}
    check_upload(upload, good, max_bytes=1 << 20)
    with pytest.raises(AgentError, match="does not match its sha256"):
        check_upload(upload, {**good, "model.onnx": "0" * 64}, max_bytes=1 << 20)


def test_a_refused_install_leaves_no_folder_and_a_good_one_replaces_atomically(upload, tmp_path):
    repository = Repository(tmp_path / "repo")
    corrupt = {**upload, "model.onnx": b"\x08\x07garbage" + b"\0" * (len(upload["model.onnx"]) - 9)}
    with pytest.raises(AgentError, match="the model file is corrupt") as error:
        repository.install("m", corrupt)
    assert ".staging" not in str(error.value) and str(tmp_path) not in str(error.value), "no agent paths leak"
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == []
    first = repository.install("m", upload)
    assert first.acquire()  # a request in flight on the first version
    second = repository.install("m", upload)
    assert repository.models["m"] is second and not first.acquire(), "the old version takes no new requests"
    first.run({"x": np.zeros((1, 4), np.float32)})  # ...but the one in flight still runs
    first.release()
    assert first.session._closed, "closed once its last request is done"
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["m"]
    repository.unload("m")
    assert list((tmp_path / "repo").iterdir()) == [] and "m" not in repository.models


def test_admission_lets_limit_in_queues_the_rest_and_refuses_beyond():
    async def scenario():
        admission = Admission(limit=1, queue=1)
        await admission.enter()
        waiter = asyncio.ensure_future(admission.enter())
        await asyncio.sleep(0)
        with pytest.raises(AgentError, match="1 requests running and 1 queued"):
            await admission.enter()
        admission.leave()  # the slot goes to the waiter
        await asyncio.wait_for(waiter, 1)
        assert admission.running == 1 and not admission.waiting
        cancelled = asyncio.ensure_future(admission.enter())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        admission.leave()
        assert admission.running == 0 and not admission.waiting

    asyncio.run(scenario())


def test_the_repository_loads_onnx_models_spinning_when_configured(upload, tmp_path):
    for spin, expected in ((None, "0"), (True, "1")):
        model = Repository(tmp_path / f"repo-{spin}", spin=spin).install("m", upload)
        options = model.session.backend_model.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
    with pytest.raises(InvalidArgumentError, match="spin must be True, False or None"):
        AgentConfig(spin="on")
