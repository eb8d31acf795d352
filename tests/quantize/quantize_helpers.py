"""Helpers the quantization tests import by name (a module named ``conftest`` is ambiguous when
several test folders are collected together)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).with_name("data")
CALIB_SIZE = 16


def weights(model: str) -> Path:
    """The digits-trained weights of a ``test_*`` model (made by ``data/make_weights.py``)."""
    return DATA / f"{model}-digits.safetensors"
