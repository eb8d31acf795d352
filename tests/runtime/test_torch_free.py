"""The device side never needs torch: a fresh interpreter imports and runs the runtime without it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edgevit.runtime import BACKENDS
from edgevit.runtime.session import _backends_for

ROOT = Path(__file__).resolve().parents[2]


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_runtime_does_not_import_torch():
    result = _fresh(
        "import sys\n"
        "import edgevit.runtime\n"
        "from edgevit.runtime import BACKENDS\n"
        "for name in BACKENDS.names():\n"
        "    try:\n"
        "        BACKENDS.get(name)\n"
        "    except Exception:\n"  # a backend being written elsewhere must not fail this test
        "        pass\n"
        "from edgevit.runtime import load, Session\n"
        "heavy = sorted(m for m in ('torch', 'coremltools', 'tensorflow', 'litert_torch') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout


@pytest.mark.parametrize("backend", [cls.name for cls in _backends_for(".onnx") if cls.available()])
def test_running_onnx_and_predicting_does_not_import_torch(tiny_onnx, backend):
    result = _fresh(
        "import sys, numpy as np\n"
        "from edgevit.runtime import load\n"
        f"with load({str(tiny_onnx)!r}, backend={backend!r}, threads=1) as s:\n"
        "    s.run({'pixel_values': np.zeros((2, 3, 8, 8), np.float32)})\n"
        "    assert s.predict([np.zeros((20, 30, 3), np.uint8)])[0].ok\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "TORCH False" in result.stdout


def test_core_install_pulls_no_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [dep.split(">")[0].split("=")[0].strip() for dep in project["dependencies"]] == ["numpy"]
    backend_extras = set()
    for name in BACKENDS.names():
        try:
            backend = BACKENDS.get(name)
        except (ImportError, AttributeError):  # a backend being written elsewhere
            continue
        if not backend.needs_torch:  # ExecuTorch's Python runtime links libtorch; it says so (needs_torch)
            backend_extras.add(backend.extra)
    for extra in sorted(backend_extras) + ["bench"]:
        assert extra in project["optional-dependencies"], f"the error messages name extra {extra!r}; add it"
        deps = project["optional-dependencies"][extra]
        assert not any(dep.startswith("torch") for dep in deps), f"extra {extra!r} pulls torch: {deps}"


def test_agent_client_and_coordinator_import_no_torch():
    result = _fresh(
        "import sys\n"
        "import edgevit.agent, edgevit.agent.server, edgevit.agent.servicer, edgevit.agent.client\n"
        "import edgevit.agent.repository, edgevit.agent.tensors, edgevit.agent.auth, edgevit.bench.remote\n"
        "import edgevit.cluster.session, edgevit.cluster.transport, edgevit.cluster.policy, edgevit.cluster.deploy\n"
        "import edgevit.cluster.fleet, edgevit.cluster.processes, edgevit.cluster.local, edgevit.partition.predict\n"
        "from edgevit.cli import build_parser\n"
        "build_parser()\n"
        "heavy = sorted(m for m in ('torch', 'coremltools', 'tensorflow', 'litert_torch', 'onnx') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout


def test_the_agent_serves_where_torch_cannot_be_imported(tmp_path, tiny_onnx):
    """A device without torch: a ``torch`` that refuses to import is first on the path of the agent
    process and of the client process; the agent starts, takes an upload and answers."""
    import os

    sys.path.insert(0, str(ROOT / "tests" / "agent"))
    try:
        from agent_helpers import start_agent
    finally:
        sys.path.pop(0)
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is not installed on this device')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    agent = start_agent(tmp_path / "agent", env={"PYTHONPATH": path})
    try:
        result = subprocess.run(
            [sys.executable, "-c",
             "import sys, numpy as np\n"
             "from edgevit.agent.client import AgentClient\n"
             f"with AgentClient('{agent.url}') as c:\n"
             f"    c.upload({str(tiny_onnx)!r})\n"
             "    r = c.infer('tiny-onnx-fp32', {'pixel_values': np.ones((1, 3, 8, 8), np.float32)})\n"
             "print('OUT', r.outputs['logits'].shape, 'torch' in sys.modules)\n"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": path})
        assert result.returncode == 0, result.stderr
        assert "OUT (1, 4) False" in result.stdout
    finally:
        assert agent.stop() == 0
    assert "torch" not in agent.log_text()
