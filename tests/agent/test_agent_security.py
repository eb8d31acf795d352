"""Who gets in, and what a hostile upload can do: real agents on loopback, driven with tritonclient
and edgevit's client. Every refusal has its status code; nothing is written outside the
repository; no refused upload leaves a model or a folder behind."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from agent_helpers import SERVE, make_certificates, start_agent, write_token

triton = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from edgevit.agent.client import artifact_files  # noqa: E402
from edgevit.errors import AgentError  # noqa: E402

INFERENCE = "inference-token-" + "i" * 24
ADMIN = "admin-token-" + "a" * 28


def _files(folder, **replace):
    files = {f"file:{path}": data for path, data in artifact_files(folder).items()}
    files.update({f"file:{path}": data for path, data in replace.items()})
    return files


def _status(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as error:
        call()
    return error.value.status(), error.value.message()


def _infer(client, name, headers=None):
    tensor = triton.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    return client.infer(name, [tensor], headers=headers)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """An agent with an inference token and an admin token."""
    root = tmp_path_factory.mktemp("guarded")
    running = start_agent(root, "--token-file", str(write_token(root / "token", INFERENCE)),
                          "--admin-token-file", str(write_token(root / "admin", ADMIN)))
    yield running
    running.stop()


def test_tokens_gate_each_group(guarded, dtype_artifacts):
    folder = dtype_artifacts["float32"]
    client = guarded.triton()
    inference = {"authorization": f"Bearer {INFERENCE}"}
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert client.is_server_live() and client.is_server_ready()  # health stays open for probes
    status, message = _status(lambda: client.load_model(folder.name, files=_files(folder)))
    assert status == "StatusCode.UNAUTHENTICATED" and "authorization: Bearer" in message
    status, _ = _status(lambda: client.load_model(folder.name, files=_files(folder),
                                                  headers={"authorization": "Bearer " + "w" * 30}))
    assert status == "StatusCode.UNAUTHENTICATED"
    status, message = _status(lambda: client.load_model(folder.name, files=_files(folder), headers=inference))
    assert status == "StatusCode.PERMISSION_DENIED" and "admin token" in message
    client.load_model(folder.name, files=_files(folder), headers=admin)
    assert _status(lambda: _infer(client, folder.name))[0] == "StatusCode.UNAUTHENTICATED"
    assert _status(lambda: client.get_model_metadata(folder.name))[0] == "StatusCode.UNAUTHENTICATED"
    np.testing.assert_array_equal(_infer(client, folder.name, inference).as_numpy("doubled"), np.full((1, 4), 2.0))
    assert _status(lambda: client.unload_model(folder.name, headers=inference))[0] == "StatusCode.PERMISSION_DENIED"
    client.unload_model(folder.name, headers=admin)


def test_edgevit_client_with_tokens(guarded, dtype_artifacts, tmp_path):
    folder = dtype_artifacts["int64"]
    with guarded.client(token_file=write_token(tmp_path / "t", INFERENCE)) as client:
        with pytest.raises(AgentError) as error:
            client.upload(folder)
        assert error.value.code == "PERMISSION_DENIED"
    with guarded.client(token=ADMIN) as client:
        assert client.upload(folder).uploaded
        client.unload(folder.name)


@pytest.mark.parametrize(("files", "code", "message"), [
    ({"../escaped.txt": b"x"}, "INVALID_ARGUMENT", "'../escaped.txt' is not a relative path"),
    ({"/tmp/escaped.txt": b"x"}, "INVALID_ARGUMENT", "is not a relative path"),
    ({"sub/../../escaped.txt": b"x"}, "INVALID_ARGUMENT", "is not a relative path"),
    ({"model.onnx": b"\x08\x01corrupt"}, "INVALID_ARGUMENT", "the manifest says"),
    ({"manifest.json": json.dumps({"format": "edgevit-artifact", "model": {}, "target": "onnx", "precision": 8,
                                   "model_file": "model.onnx", "inputs": [{"name": 1}], "outputs": [],
                                   "preprocessing": []}).encode()},
     "INVALID_ARGUMENT", "manifest is invalid: precision 8 is not a precision name"),
])
def test_hostile_uploads_leave_nothing_behind(agent, dtype_artifacts, files, code, message):
    folder = dtype_artifacts["float32"]
    client = agent.triton()
    before = sorted(p.name for p in agent.repository.parent.rglob("*"))
    status, text = _status(lambda: client.load_model("victim", files=_files(folder, **files)))
    assert status == f"StatusCode.{code}" and message in text, text
    assert sorted(p.name for p in agent.repository.parent.rglob("*")) == before, "nothing written anywhere"
    assert not client.is_model_ready("victim")
    assert list(agent.repository.iterdir()) == []


def test_a_corrupt_model_of_the_right_size_is_refused(agent, dtype_artifacts, tmp_path):
    folder = dtype_artifacts["float32"]
    size = len((folder / "model.onnx").read_bytes())
    status, text = _status(lambda: agent.triton().load_model("corrupt", files=_files(
        folder, **{"model.onnx": b"\x08\x07" + b"\xff" * (size - 2)})))
    assert status == "StatusCode.INVALID_ARGUMENT" and "the model file is corrupt" in text
    assert ".staging" not in text and str(agent.repository) not in text
    assert list(agent.repository.iterdir()) == []


def test_oversized_uploads(tmp_path, dtype_artifacts):
    small = start_agent(tmp_path, "--max-upload-mb", "1")
    try:
        client = small.triton()
        folder = dtype_artifacts["float32"]
        status, text = _status(lambda: client.load_model("big", files=_files(folder, **{"model.onnx": b"x" * (1 << 20)})))
        assert status == "StatusCode.RESOURCE_EXHAUSTED" and "accepts at most 1 MB (--max-upload-mb)" in text
        status, _ = _status(lambda: client.load_model("bigger", files=_files(folder, **{"pad.bin": b"x" * (3 << 20)})))
        assert status == "StatusCode.RESOURCE_EXHAUSTED"  # gRPC's own message limit, before any parsing
        assert list(small.repository.iterdir()) == []
    finally:
        assert small.stop() == 0


def test_tls_and_mutual_tls(tmp_path, dtype_artifacts):
    certs = make_certificates(tmp_path / "certs")
    tls = start_agent(tmp_path / "tls", "--tls-cert", str(certs["server"]), "--tls-key", str(certs["server_key"]))
    try:
        assert _status(lambda: tls.triton().is_server_live())[0] == "StatusCode.UNAVAILABLE"  # plaintext refused
        secure = tls.triton(ssl=True, root_certificates=str(certs["ca"]))
        assert secure.is_server_live()
        with tls.client(tls_ca=certs["ca"]) as client:
            assert client.upload(dtype_artifacts["uint8"]).uploaded
    finally:
        assert tls.stop() == 0
    mutual = start_agent(tmp_path / "mtls", "--tls-cert", str(certs["server"]), "--tls-key", str(certs["server_key"]),
                         "--tls-client-ca", str(certs["ca"]))
    try:
        with mutual.client(tls_ca=certs["ca"]) as anonymous, pytest.raises(AgentError) as error:
            anonymous.live()
        assert error.value.code == "UNAVAILABLE"
        with mutual.client(tls_ca=certs["ca"], tls_cert=certs["client"], tls_key=certs["client_key"]) as client:
            assert client.live() and client.upload(dtype_artifacts["int8"]).uploaded
    finally:
        assert mutual.stop() == 0


def test_refuses_to_start_on_the_network_without_credentials(tmp_path):
    result = subprocess.run([sys.executable, "-c", SERVE, "serve", "--host", "0.0.0.0", "--port", "0",
                             "--repository", str(tmp_path / "r")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("InvalidArgumentError: refusing to serve on '0.0.0.0' without credentials")
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()
