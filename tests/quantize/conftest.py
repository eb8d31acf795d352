"""Shared fixtures for the quantization tests: each family's ``test_*`` model trained on digits
(weights in ``data/``, made by ``data/make_weights.py``), converted to float once per target."""

from __future__ import annotations

from pathlib import Path

import pytest
from quantize_helpers import CALIB_SIZE, weights


@pytest.fixture(scope="session")
def trained():
    """``trained(model)`` -> the digits-trained, reparameterized torch model (cached)."""
    from edgevit.models import create_model

    cache: dict[str, object] = {}

    def get(model: str):
        if model not in cache:
            cache[model] = create_model(model, weights=weights(model)).reparameterize().eval()
        return cache[model]

    return get


@pytest.fixture(scope="session")
def float_file(tmp_path_factory, trained):
    """``float_file(model, target)`` -> the float model file the export pipeline quantizes (cached):
    what the target's converter writes for a quantized precision (fp32; fp16 program for Core ML)."""
    import torch

    from edgevit.export.options import ExportOptions
    from edgevit.export.targets import get_target
    from edgevit.models import model_info
    from edgevit.quantize.base import quiet

    cache: dict[tuple[str, str], Path] = {}

    def get(model: str, target: str) -> Path:
        if (model, target) not in cache:
            converter = get_target(target)
            folder = tmp_path_factory.mktemp(f"float-{model}-{target}")
            path = folder / converter.model_file
            size = model_info(model).image_size
            options = ExportOptions(target=target, precision="int8", deployment_target="iOS17")
            with quiet():
                converter.convert(trained(model), torch.randn(1, 3, size, size), options, path)
            cache[(model, target)] = path
        return cache[(model, target)]

    return get


@pytest.fixture(scope="session")
def calibration():
    """``calibration(model)`` -> CALIB_SIZE digits training images preprocessed for ``model``."""
    from edgevit.models import model_info
    from edgevit.quantize import calibration_set

    cache: dict[str, object] = {}

    def get(model: str):
        if model not in cache:
            info = model_info(model)
            cache[model] = calibration_set("digits", CALIB_SIZE, info.preprocess.spec(info.image_size))
        return cache[model]

    return get
