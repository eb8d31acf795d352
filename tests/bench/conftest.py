"""Bench tests time the hand-built ONNX model of the runtime tests (no conversion needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from runtime_helpers import write_tiny_onnx  # noqa: E402


@pytest.fixture
def two_artifacts(tmp_path) -> list[Path]:
    import numpy as np

    return [
        write_tiny_onnx(tmp_path / "tiny-a-onnx-fp32"),
        write_tiny_onnx(tmp_path / "tiny-b-onnx-fp32", batch=1, weights=np.ones((3, 4), np.float32)),
    ]
