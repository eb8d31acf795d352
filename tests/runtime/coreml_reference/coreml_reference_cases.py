"""The op-case record shared by the coreml-reference case tables.

An :class:`OpCase` is one tiny MIL program (built with coremltools' builder), its inputs,
and an independent expectation (a numpy formula or PyTorch) computed in float64 from the
same inputs. ``op`` is the op under test: the test checks that the saved program really
contains it, so a converter rewrite cannot make a case pass without exercising the op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OpCase:
    op: str
    name: str
    build: Callable[..., Any]  # (mb, *input vars) -> output var(s)
    inputs: list[np.ndarray]
    expect: Callable[..., Any]  # (*inputs as float64) -> expected array or tuple of arrays
    opset: int = 16
    rtol: float = 1e-5
    atol: float = 1e-5
    also: tuple[str, ...] = field(default=())  # other ops the program holds on purpose
    output_dtype: str | None = None  # default: float16 when an input is fp16

    @property
    def id(self) -> str:
        return f"{self.op}-{self.name}"

    @property
    def fp16(self) -> bool:
        return any(a.dtype == np.float16 for a in self.inputs)

    @property
    def expected_dtype(self) -> str | None:
        return self.output_dtype or ("float16" if self.fp16 else None)


def rand(*shape: int, low: float = -2.0, high: float = 2.0, seed: int = 0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed + 17 * len(shape) + sum(shape)).uniform(low, high, shape).astype(dtype)


def half(*shape: int, low: float = -2.0, high: float = 2.0, seed: int = 0) -> np.ndarray:
    return rand(*shape, low=low, high=high, seed=seed, dtype=np.float16)


def torch_fn(name: str, *args, **kwargs):
    """Call ``torch.nn.functional.<name>`` on float64 numpy arrays; returns numpy."""
    import torch

    tensors = [torch.from_numpy(np.asarray(a, np.float64)) if isinstance(a, np.ndarray) else a for a in args]
    return getattr(torch.nn.functional, name)(*tensors, **kwargs).numpy()
