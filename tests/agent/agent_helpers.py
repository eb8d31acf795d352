"""Real agents in real processes for the agent tests, and small artifacts made without torch.

* :func:`start_agent` runs ``edgevit serve --port 0`` in a subprocess (its log in a file, so a
  full pipe can never stall it) and waits for its ready line; :class:`Agent` stops it with a
  real signal.
* :func:`write_dtype_model` writes an ONNX artifact whose input has any OIP datatype:
  ``doubled = float32(x) * 2`` and ``same = x``, so both decoding and encoding of that type show.
* :func:`make_certificates` makes a CA, a server certificate for 127.0.0.1 and a client
  certificate (``cryptography``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevit.artifact import Manifest, TensorSpec
from edgevit.cluster.fleet import SERVE

#: the datatypes a ModelInfer must carry (the issue's list, and the rest of what ONNX models take)
DTYPES = ("float32", "float16", "int8", "uint8", "int64", "int32", "float64", "bool")
READY = re.compile(r"ready: serving \d+ model\(s\) from .* on (?:\[[^\]]+\]|[^\s:]+):(\d+)")
LISTENING = re.compile(r"listening on (?:\[[^\]]+\]|[^\s:]+):(\d+)")


@dataclass
class Agent:
    """An agent process on loopback."""

    process: subprocess.Popen
    port: int
    log: Path
    repository: Path
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kwargs):
        from edgevit.agent.client import AgentClient

        return AgentClient(self.url, **kwargs)

    def triton(self, **kwargs):
        import tritonclient.grpc as triton

        return triton.InferenceServerClient(self.url, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self.stopped = True
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)


def start_agent(tmp_path: Path, *args: str, repository: Path | None = None, wait: str = "ready",
                timeout: float = 90.0, env: dict[str, str] | None = None) -> Agent:
    """Start ``edgevit serve --port 0 --repository ... *args`` and wait for its ready (or listening) line."""
    repository = repository or tmp_path / "repository"
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / f"agent-{time.monotonic_ns()}.log"
    command = [sys.executable, "-c", SERVE, "serve", "--port", "0", "--repository", str(repository), *args]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    pattern = READY if wait == "ready" else LISTENING
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        match = pattern.search(text)
        if match:
            return Agent(process, int(match.group(1)), log, repository)
        if process.poll() is not None:
            raise AssertionError(f"the agent exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the agent was not {wait} within {timeout} s:\n{log.read_text(errors='replace')}")


def write_dtype_model(folder: Path, dtype: str, batch: int | None = None) -> Path:
    """An ONNX artifact taking ``x`` of ``dtype`` ``[batch, 4]``: outputs ``doubled`` (float32) and ``same``."""
    import onnx
    from onnx import TensorProto, helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    dim = batch if batch is not None else "batch"
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["as_float"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["as_float", "as_float"], ["doubled"]),
         helper.make_node("Identity", ["x"], ["same"])],
        f"dtype_{dtype}",
        [helper.make_tensor_value_info("x", elem, [dim, 4])],
        [helper.make_tensor_value_info("doubled", TensorProto.FLOAT, [dim, 4]),
         helper.make_tensor_value_info("same", elem, [dim, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    Manifest(
        model={"name": f"dtype-{dtype}", "family": "test", "num_classes": 4},
        target="onnx", precision="fp32", model_file="model.onnx",
        inputs=(TensorSpec("x", (batch, 4), dtype),),
        outputs=(TensorSpec("doubled", (batch, 4)), TensorSpec("same", (batch, 4), dtype)),
        preprocessing={"size": 8}, files={"model.onnx": (folder / "model.onnx").stat().st_size},
    ).write(folder)
    return folder


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def certificate(subject: str, key, issuer_name, issuer_key, ca: bool, san=None):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgevit test CA")])
    ca = certificate("edgevit test CA", ca_key, ca_name, ca_key, True)
    paths = {}
    for role, san in (("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                      ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(f"edgevit test {role}", key, ca_name, ca_key, False, san)
        (folder / f"{role}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{role}.key").write_bytes(key_pem(key))
        paths[role], paths[f"{role}_key"] = folder / f"{role}.pem", folder / f"{role}.key"
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["ca"] = folder / "ca.pem"
    return paths


def write_token(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def write_slow_model(folder: Path, steps: int = 24, size: int = 768) -> Path:
    """An ONNX artifact that computes for a while: ``steps`` chained [size, size] matrix products.

    At 2 threads on this project's machines one run takes a few hundred ms, long enough to catch
    a request in flight or an agent still loading it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = (np.eye(size, dtype=np.float32) * 0.5 + 0.5 / size).astype(np.float32)
    nodes, previous = [], "x"
    for step in range(steps):
        nodes.append(helper.make_node("MatMul", [previous, "W"], [f"h{step}"]))
        previous = f"h{step}"
    nodes.append(helper.make_node("Identity", [previous], ["y"]))
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
                              initializer=[numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    Manifest(model={"name": "slow", "family": "test", "num_classes": size}, target="onnx", precision="fp32",
             model_file="model.onnx", inputs=(TensorSpec("x", (size, size)),), outputs=(TensorSpec("y", (size, size)),),
             preprocessing={"size": 8}, files={"model.onnx": (folder / "model.onnx").stat().st_size}).write(folder)
    return folder
