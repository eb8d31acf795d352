"""tests/tolerances.py: every row says why, and a row's check means what it says."""

from __future__ import annotations

import numpy as np
import pytest
import tolerances
from tolerances import EXACT, GOLDEN, ONE_LAYER, Close, Share, max_rel_err

ROWS = {name: row for name, row in vars(tolerances).items() if isinstance(row, (Close, Share))}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_row_says_why(name):
    assert ROWS[name].why.strip(), name


def test_close_is_numpys_rule_and_scaled_rows_judge_against_the_largest_value():
    expected = np.array([10.0, 1e-3], dtype=np.float32)
    ONE_LAYER.check(expected + np.array([5e-5, 5e-7], dtype=np.float32), expected)
    with pytest.raises(AssertionError):
        ONE_LAYER.check(expected + np.float32(1e-3), expected)
    GOLDEN.check(expected + np.array([0, 5e-5], dtype=np.float32), expected)  # 5e-5 of 10 is within 1e-5 of scale
    assert not GOLDEN.holds(expected + np.array([0, 2e-4], dtype=np.float32), expected)


def test_exact_accepts_nothing_but_equality_for_torch_and_numpy():
    import torch

    x = torch.randn(3, 4)
    EXACT.check(x, x.clone())
    with pytest.raises(AssertionError):
        EXACT.check(x, x + 1e-7 * x.abs().max())
    with pytest.raises(AssertionError):
        EXACT.check(x.numpy(), np.nextafter(x.numpy(), np.inf))


def test_max_rel_err_is_the_artifact_rows_measure():
    assert max_rel_err([1.0, 2.1], [1.0, 2.0]) == pytest.approx(0.05)
    assert max_rel_err([0.0, 0.1], [0.0, 0.0], floor=1.0) == pytest.approx(0.1)
