"""Fixtures of the agent tests: artifacts (hand-made ONNX files of every datatype, and the zoo's
``test_vit`` exported by edgevit), and one plain loopback agent per test module."""

from __future__ import annotations

import pytest
from agent_helpers import DTYPES, start_agent, write_dtype_model


@pytest.fixture(scope="session")
def dtype_artifacts(tmp_path_factory) -> dict[str, object]:
    """``{dtype: artifact folder}`` of :func:`write_dtype_model` models (dynamic batch)."""
    root = tmp_path_factory.mktemp("dtype-artifacts")
    return {dtype: write_dtype_model(root / f"dtype-{dtype}", dtype) for dtype in DTYPES}


@pytest.fixture(scope="session")
def zoo_artifacts(tmp_path_factory) -> dict[str, object]:
    """``test_vit`` exported by edgevit: ONNX fp32 and fp16, TFLite fp32 (random init, not verified)."""
    from edgevit.export import export

    root = tmp_path_factory.mktemp("zoo-artifacts")
    out = {}
    for target, precision in (("onnx", "fp32"), ("onnx", "fp16"), ("tflite", "fp32")):
        artifact = export("test_vit", target=target, precision=precision, out=root, verify=False, quiet=True)
        out[f"{target}-{precision}"] = artifact.path
    return out


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """A loopback agent without tokens, shared by the tests of one module."""
    running = start_agent(tmp_path_factory.mktemp("agent"))
    yield running
    running.stop()
