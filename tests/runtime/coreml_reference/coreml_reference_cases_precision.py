"""Op cases: fp16 values inside programs converted at fp32 precision (issue 16, finding 2).

The rule under test (docs/coreml_reference.md, *Precision*): a value is stored in the type the
program declares for it. An op that reads fp16 *parameters* next to an fp32 ``x`` (iOS17 allows
``gamma``, ``weight``, ``epsilon`` of another float type) computes in fp32 with the parameters'
fp16 values, exactly widened, and its fp32 result is not rounded; an op whose *output* is
declared fp16 is rounded to fp16 once, at its output, even in a program converted with
``compute_precision=FLOAT32`` (coremltools keeps such ops fp16-typed and, before iOS16, adds
casts "to preserve 16 bit computations"). Expectations are float64 computations on the same
(fp16-valued) numbers, rounded to fp16 where the program declares fp16.
"""

from __future__ import annotations

import numpy as np
from coreml_reference_cases import OpCase, rand, torch_fn

GAMMA16 = rand(3, seed=21).astype(np.float16)
BETA16 = rand(3, seed=22).astype(np.float16)
W3D16 = rand(2, 3, 2, 2, 2, seed=23).astype(np.float16)
MASK = np.random.default_rng(24).integers(0, 2, (6, 8)).astype(np.uint8)
NONZERO16 = rand(int(MASK.sum()), seed=25).astype(np.float16)


def _fp16(value) -> np.ndarray:
    """A float64 result rounded once to fp16 (what an fp16-typed output holds)."""
    return np.asarray(value).astype(np.float16)


def _instance_norm(x, gamma, beta, epsilon):
    mean = x.mean(axis=(2, 3), keepdims=True)
    variance = x.var(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)


def _l2_norm(x, epsilon):
    return x / np.sqrt(np.sum(x * x, axis=(-3, -2, -1), keepdims=True) + epsilon)


def _dense(nonzero, mask):
    dense = np.zeros(mask.shape)
    dense[mask == 1] = nonzero
    return dense


def _packed(mask):
    return np.packbits(mask.reshape(-1), bitorder="little")


EPS16 = np.float16(1e-3)
CASES = [
    # fp16 parameters, fp32 x and output (iOS17): fp32 arithmetic, fp32 tolerance, no fp16 rounding
    OpCase("instance_norm", "fp16-gamma-beta-epsilon-in-fp32-program",
           lambda mb, x: mb.instance_norm(x=x, gamma=GAMMA16, beta=BETA16, epsilon=EPS16), [rand(2, 3, 4, 5)],
           lambda x: _instance_norm(x, GAMMA16.astype(np.float64), BETA16.astype(np.float64), float(EPS16)),
           opset=17, output_dtype="float32"),
    OpCase("l2_norm", "fp16-epsilon-in-fp32-program",
           lambda mb, x: mb.l2_norm(x=x, epsilon=np.float16(0.5)), [rand(2, 3, 2, 4, low=-0.3, high=0.3)],
           lambda x: _l2_norm(x, 0.5), opset=17, output_dtype="float32"),
    OpCase("conv", "3d-fp16-weight-in-fp32-program",
           lambda mb, x: mb.conv(x=x, weight=W3D16), [rand(1, 3, 3, 4, 4)],
           lambda x: torch_fn("conv3d", x, W3D16.astype(np.float64)), opset=17, output_dtype="float32"),
    # fp16-typed ops in a program converted at fp32: rounded once, at the op's declared fp16 output
    OpCase("constexpr_sparse_to_dense", "fp16-data-then-add-rounds-once",
           lambda mb, x: mb.add(x=x, y=mb.constexpr_sparse_to_dense(
               nonzero_data=NONZERO16, mask=_packed(MASK), shape=np.array(MASK.shape, np.uint32))),
           [rand(6, 8, seed=26).astype(np.float16)], lambda x: _fp16(x + _dense(NONZERO16, MASK)),
           rtol=0, atol=0, also=("add",)),
    OpCase("instance_norm", "fp16-op-between-casts-ios15",
           lambda mb, x: mb.cast(x=mb.instance_norm(x=mb.cast(x=x, dtype="fp16"), gamma=GAMMA16, beta=BETA16,
                                                    epsilon=EPS16), dtype="fp32"),
           [rand(2, 3, 4, 5, low=-1, high=1)],
           lambda x: _fp16(_instance_norm(_fp16(x).astype(np.float64), GAMMA16.astype(np.float64),
                                          BETA16.astype(np.float64), float(EPS16))),
           opset=15, rtol=1e-6, atol=1e-6, also=("cast",), output_dtype="float32"),
    OpCase("conv", "3d-fp16-op-between-casts-ios15",
           lambda mb, x: mb.cast(x=mb.conv(x=mb.cast(x=x, dtype="fp16"), weight=W3D16), dtype="fp32"),
           [rand(1, 3, 3, 4, 4)],
           lambda x: _fp16(torch_fn("conv3d", _fp16(x).astype(np.float64), W3D16.astype(np.float64))),
           opset=15, rtol=1e-6, atol=1e-6, also=("cast",), output_dtype="float32"),
]
