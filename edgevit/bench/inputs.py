"""Inputs for timing: random data of a model's declared input shapes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgevit.artifact import TensorSpec
from edgevit.errors import InvalidArgumentError


def batch_shape(spec: TensorSpec, batch: int, where: str = "") -> tuple[int, ...]:
    """``spec.shape`` with the batch dimension set to ``batch``; refuses a fixed batch that differs."""
    if not spec.shape:
        return ()
    first = spec.shape[0]
    if first is not None and first != batch:
        raise InvalidArgumentError(
            f"{where or 'the model'} has a fixed batch of {first} (input {spec.name!r} {spec.shape}); "
            f"it cannot be timed at batch {batch}: export it with --batch {batch} or --batch dynamic, "
            f"or bench with --batch {first}"
        )
    rest = spec.shape[1:]
    if any(dim is None for dim in rest):
        raise InvalidArgumentError(
            f"input {spec.name!r} of {where or 'the model'} has dynamic dimensions {spec.shape} besides the batch; "
            "benchmarking needs fixed sizes: export it with a fixed image size"
        )
    return (batch, *rest)


def random_feeds(specs: Sequence[TensorSpec], batch: int, where: str = "", seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal floats (zeros for integer inputs) of every input's shape at ``batch``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = batch_shape(spec, batch, where)
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype)
    return feeds
