"""Shared fixtures. Tests run on the tiny ``test_*`` models unless marked ``slow``.

``digits6``, ``spec`` and ``base_vit``: a tiny ViT trained briefly on six digit classes, for the
split and cluster tests. 16-pixel inputs (2x2 patches of 8 pixels) train to ~94% in six epochs
(~10 s); at 32 pixels the same tiny ViT needs several times longer to learn the upsampled 8x8 digits.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _seed():
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    try:
        import torch
    except ImportError:  # the torch-free tests run without it
        return
    torch.manual_seed(0)


#: the modules that take longest (minutes each, measured with --durations), longest first. The full
#: suite runs on two workers (pytest-xdist, a module to a worker); starting these first lets the two
#: end together instead of one finishing the README tour alone.
LONGEST_FIRST = (
    "tests/quantize/test_quantize_targets.py",
    "tests/test_readme_tour.py",
    "tests/export/test_targets.py",
    "tests/export/test_read_ops.py",
    "tests/split/test_plans.py",
    "tests/cluster/test_cluster_fleet.py",
    "tests/quantize/test_export.py",
    "tests/probe/test_probe.py",
    "tests/split/test_quantized_plans.py",
    "tests/models/test_contract.py",
    "tests/runtime/test_backends.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order


CLASSES = [0, 1, 2, 3, 4, 5]
IMAGE_SIZE = 16


@pytest.fixture(scope="session")
def digits6():
    from edgevit.data.datasets import load_dataset

    return (load_dataset("digits", "train").with_classes(CLASSES), load_dataset("digits", "val").with_classes(CLASSES))


@pytest.fixture(scope="session")
def spec(digits6):
    from edgevit.train import dataset_spec

    return dataset_spec("test_vit", digits6[0], IMAGE_SIZE)


@pytest.fixture(scope="session")
def base_vit(digits6, spec):
    """``test_vit`` trained on the six classes; the tests check its accuracy is far above chance."""
    import torch

    from edgevit.models import create_model
    from edgevit.train import TrainConfig, train

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # session fixtures run outside the per-test thread fixture
    model = create_model("test_vit", num_classes=len(CLASSES), image_size=IMAGE_SIZE)
    config = TrainConfig(epochs=6, batch_size=32, lr=1e-3, warmup_epochs=0.3, augment=False, label_smoothing=0.0)
    result = train(model, digits6[0], digits6[1], config, spec, progress=False)
    torch.set_num_threads(threads)
    model.labels = list(digits6[0].classes)
    assert result.final_top1 > 80, result.history
    return model.eval()
