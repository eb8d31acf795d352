"""Shared fixtures. Tests run on the tiny ``test_*`` models unless marked ``slow``.

``digits6``, ``spec`` and ``base_vit``: a tiny ViT trained briefly on six digit classes, for the
split and cluster tests. 16-pixel inputs (2x2 patches of 8 pixels) train to ~94% in six epochs
(~10 s); at 32 pixels the same tiny ViT needs several times longer to learn the upsampled 8x8 digits.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config):
    """PyTorch's threads (OpenMP) per test process: the cores shared among the pytest-xdist workers,
    at most two. Set here, before the workers start, so they inherit it; an ``OMP_NUM_THREADS`` of
    your own is kept. Two workers of two OpenMP threads each on two cores spin-wait on each other:
    tests/models/test_contract.py took 186 s with two threads per worker and 57 s with one."""
    from edgevit.environment import usable_cores

    workers = config.getoption("numprocesses", None)
    workers = workers if isinstance(workers, int) and workers > 0 else 1
    cores = usable_cores() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, min(2, cores // workers))))


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


#: the modules that take longest (measured with --durations on two workers, one PyTorch thread
#: each), longest first; the rest follow in collection order, then ``LAST``. The full suite runs on
#: two workers (pytest-xdist, a module to a worker, in this order: ``--no-loadscope-reorder``), so
#: the two take the long modules first and end together. xdist's own order (modules with most
#: tests first) started the one-test README tour (11 min) last, alone: 32 min 7 s against 27 min
#: 51 s in this order.
LONGEST_FIRST = (
    "tests/test_readme_tour.py",  # 627 s
    "tests/quantize/test_quantize_targets.py",  # 586 s
    "tests/export/test_targets.py",  # 364 s: exports every test model (tests/export/conftest.py)
    "tests/quantize/test_export.py",  # 184 s
    "tests/runtime/test_backends.py",  # 151 s
    "tests/probe/test_probe.py",  # 142 s
    "tests/split/test_quantized_plans.py",  # 74 s
    "tests/split/test_plans.py",  # 71 s
    "tests/agent/test_agent_fuzz.py",  # 67 s
    "tests/models/test_contract.py",  # 67 s
    "tests/split/test_profiles.py",  # 62 s
    "tests/predict/test_real_files.py",  # 56 s
    "tests/quantize/test_onnx_int8_formats.py",  # 56 s
)
#: modules that read test_targets' exports: last, so the exports are on disk when they start
#: (344 s for test_read_ops when it exported them itself on the other worker)
LAST = (
    "tests/export/test_read_ops.py",
    "tests/export/test_executorch.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    rank.update({path: len(LONGEST_FIRST) + 1 + i for i, path in enumerate(LAST)})
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONGEST_FIRST)))  # stable: the rest keep their order


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
