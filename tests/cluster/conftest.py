"""Plans of the tiny digits ViT (``base_vit`` in tests/conftest.py) for the cluster tests: a
class-wise split over three devices and a two-stage pipeline, written once per session (ONNX)."""

from __future__ import annotations

import pytest


def _split(base_vit, data, devices: int, out, **options):
    import torch

    from edgevit.devices import equal_devices
    from edgevit.split import SplitOptions, split

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        split(base_vit, data, equal_devices(devices, memory_mb=64), out, SplitOptions(measure_rounds=2, **options),
              progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def classwise3(base_vit, digits6, tmp_path_factory):
    """A class-wise plan with three sub-models on devices dev0, dev1, dev2 (presence columns)."""
    return _split(base_vit, digits6, 3, tmp_path_factory.mktemp("classwise3") / "plan", reduction=4, prune_steps=1,
                  recover_epochs=2, fusion_epochs=20)


@pytest.fixture(scope="session")
def pipeline2(base_vit, tmp_path_factory):
    """A two-stage pipeline plan on dev0 -> dev1."""
    return _split(base_vit, None, 2, tmp_path_factory.mktemp("pipeline2") / "plan", strategy="pipeline")


@pytest.fixture
def images(digits6, spec):
    """24 preprocessed validation digits, float32 NCHW."""
    import numpy as np

    x, _ = digits6[1].arrays(spec)
    return np.ascontiguousarray(x[:24])
