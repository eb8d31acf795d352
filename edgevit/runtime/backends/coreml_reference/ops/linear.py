"""Matrix MIL ops: ``linear``, ``matmul``, ``einsum`` and iOS18's ``scaled_dot_product_attention``.

Products run in float32 BLAS (fp16 programs: fp16 operands, float32 accumulation, result
rounded to fp16 by the executor).
"""

from __future__ import annotations

import math

import numpy as np

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op


@op("linear")
def linear(args: OpArgs) -> np.ndarray:
    x, weight = args["x"], args["weight"]
    out = np.matmul(x, np.asarray(weight).T)
    bias = args.get("bias")
    return out + bias if bias is not None else out


@op("matmul")
def matmul(args: OpArgs) -> np.ndarray:
    x, y = np.asarray(args["x"]), np.asarray(args["y"])
    if args.bool("transpose_x") and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if args.bool("transpose_y") and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    if x.dtype != y.dtype:  # iOS17 allows a const operand of another float type
        x, y = x.astype(np.float32), y.astype(np.float32)
    return np.matmul(x, y)


@op("einsum")
def einsum(args: OpArgs) -> np.ndarray:
    values = args.many("values")
    equation = args.str("equation")
    return np.einsum(equation.replace(" ", ""), *values, optimize=True)


@op("scaled_dot_product_attention", since=18)
def scaled_dot_product_attention(args: OpArgs) -> np.ndarray:
    query, key, value = args["query"], args["key"], args["value"]
    scores = np.matmul(query, np.swapaxes(key, -1, -2)) * np.float32(1.0 / math.sqrt(query.shape[-1]))
    mask = args.get("attn_mask")
    if mask is not None:
        mask = np.asarray(mask)
        scores = np.where(mask, scores, -np.inf) if mask.dtype == bool else scores + mask
    scores = scores - np.max(scores, axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= np.sum(weights, axis=-1, keepdims=True)
    return np.matmul(weights, value)
