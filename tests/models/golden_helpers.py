"""The one tolerance of the golden-output tests (imported by name: a ``conftest`` is ambiguous)."""

from __future__ import annotations

#: float32 differences from summation order, a few units in the last place per layer, grow to
#: about 2e-6 of the largest logit over a deep model and change with the thread count (measured:
#: EfficientFormerV2's 1.04e-5 on logits of 5.4 with OMP_NUM_THREADS=1, 0.94e-5 with 2). A wrong
#: weight, layer order or normalisation moves the logits by 1e-2 of their scale or more.
GOLDEN_RTOL = 1e-5


def assert_matches_golden(actual, expected, rtol: float = GOLDEN_RTOL) -> None:
    """``actual`` equals the official output within ``rtol`` of each value and of the largest |value|
    (so that a logit near zero is judged against the output's scale, not its own)."""
    import torch

    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)
