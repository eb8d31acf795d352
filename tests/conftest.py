"""Shared fixtures. Tests run on the tiny ``test_*`` models unless marked ``slow``."""

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
