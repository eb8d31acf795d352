"""Convolution and pooling MIL ops: ``conv``, ``conv_transpose``, ``avg_pool``, ``max_pool``, ``l2_pool``.

Layouts are MIL's: ``x`` is ``[N, C, *spatial]`` (1 to 3 spatial dims), ``weight`` is
``[C_out, C_in / groups, *kernel]``. Padding follows MIL's ``pad_type``:

* ``valid``: none; ``custom``: ``pad = [before_0, after_0, before_1, after_1, ...]``;
* ``same`` / ``same_lower``: total ``max(0, (ceil(in / s) - 1) * s + k_eff - in)``, the odd
  element after (``same``) or before (``same_lower``) the data.

Everything is vectorised over pixels: 1x1 convolutions are one matrix product, depthwise
convolutions add one shifted slice per kernel tap, others gather windows (im2col) into one
batched matrix product per group.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op

PAD_TYPES = ("valid", "same", "same_lower", "custom")


def spatial_padding(
    args: OpArgs, sizes: tuple[int, ...], kernel: list[int], strides: list[int], dilations: list[int]
) -> list[tuple[int, int]]:
    """(before, after) padding for each spatial dim, from ``pad_type`` and ``pad``."""
    pad_type = args.choice("pad_type", PAD_TYPES, "valid")
    n = len(sizes)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        pad = args.ints("pad", [0] * 2 * n)
        if len(pad) != 2 * n:
            args.fail(f"has {len(pad)} pad values for {n} spatial dims (needs {2 * n})")
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    pairs = []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        effective = (k - 1) * d + 1
        total = max(0, (math.ceil(size / s) - 1) * s + effective - size)
        small, large = total // 2, total - total // 2
        pairs.append((small, large) if pad_type == "same" else (large, small))
    return pairs


def _spatial_params(args: OpArgs, x: np.ndarray, kernel: list[int]) -> tuple[list[int], list[int]]:
    n = x.ndim - 2
    if n < 1 or len(kernel) != n:
        args.fail(f"has a rank-{x.ndim} input and a {len(kernel)}-d kernel")
    strides = args.ints("strides", [1] * n)
    dilations = args.ints("dilations", [1] * n)
    if len(strides) != n or len(dilations) != n:
        args.fail(f"has {len(strides)} strides / {len(dilations)} dilations for {n} spatial dims")
    return strides, dilations


def _windows(xp: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int],
             out: list[int]) -> np.ndarray:
    """A strided view ``[N, C, *out, *kernel]`` of the windows of the padded input ``xp``."""
    n = len(kernel)
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    view = sliding_window_view(xp, effective, axis=tuple(range(2, 2 + n)))
    index = (slice(None), slice(None))
    index += tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides))
    index += tuple(slice(None, None, d) for d in dilations)
    return view[index]


@op("conv")
def conv(args: OpArgs) -> np.ndarray:
    x, weight = args["x"], np.asarray(args["weight"], np.float32)
    kernel = list(weight.shape[2:])
    strides, dilations = _spatial_params(args, x, kernel)
    groups = args.int("groups", 1)
    channels = x.shape[1]
    if groups < 1 or channels % groups or weight.shape[0] % groups or weight.shape[1] * groups != channels:
        args.fail(f"has groups={groups} for {channels} input channels and weight {list(weight.shape)}")
    pads = spatial_padding(args, x.shape[2:], kernel, strides, dilations)
    xp = np.pad(x, [(0, 0), (0, 0), *pads]) if any(p for pair in pads for p in pair) else x
    out_sizes = [(p - ((k - 1) * d + 1)) // s + 1 for p, k, s, d in zip(xp.shape[2:], kernel, strides, dilations)]
    if min(out_sizes) < 1:
        args.fail(f"gives an empty output ({out_sizes}) for input {list(x.shape)}")
    result = _convolve(xp, weight, strides, dilations, groups, out_sizes)
    bias = args.get("bias")
    if bias is not None:
        result = result + np.asarray(bias, np.float32).reshape((1, -1) + (1,) * len(kernel))
    return result


def _convolve(xp: np.ndarray, weight: np.ndarray, strides: list[int], dilations: list[int], groups: int,
              out: list[int]) -> np.ndarray:
    batch, channels = xp.shape[:2]
    c_out, kernel = weight.shape[0], list(weight.shape[2:])
    if groups == 1 and all(k == 1 for k in kernel):
        picked = xp[(slice(None), slice(None)) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides))]
        flat = np.matmul(weight.reshape(c_out, channels), picked.reshape(batch, channels, -1))
        return flat.reshape(batch, c_out, *out)
    if groups == channels and c_out == channels:  # depthwise: one shifted slice per kernel tap
        result = np.zeros((batch, channels, *out), np.float32)
        for tap in np.ndindex(*kernel):
            index = (slice(None), slice(None)) + tuple(
                slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(tap, dilations, out, strides)
            )
            taps = weight[(slice(None), 0) + tap].reshape((1, channels) + (1,) * len(kernel))
            result += xp[index] * taps
        return result
    windows = _windows(xp, kernel, strides, dilations, out)  # [N, C, *out, *kernel]
    n = len(kernel)
    per_group = channels // groups
    windows = windows.reshape(batch, groups, per_group, *out, *kernel)
    order = (0, 1, *range(3, 3 + n), 2, *range(3 + n, 3 + 2 * n))
    columns = windows.transpose(order).reshape(batch, groups, math.prod(out), per_group * math.prod(kernel))
    filters = weight.reshape(groups, c_out // groups, -1).transpose(0, 2, 1)
    product = np.matmul(columns, filters)  # [N, groups, pixels, c_out / groups]
    return product.transpose(0, 1, 3, 2).reshape(batch, c_out, *out)


@op("conv_transpose")
def conv_transpose(args: OpArgs) -> np.ndarray:
    """The transpose (gradient) of ``conv``: every input pixel adds ``weight`` times itself to
    the output window it would have come from.

    ``weight`` is ``[C_in, C_out / groups, *kernel]``. The full output is
    ``(in - 1) * stride + (kernel - 1) * dilation + 1`` per dim; ``custom`` padding removes
    ``pad[2i]`` before and ``pad[2i + 1]`` after, ``same`` removes ``full - in * stride`` (the
    odd one after), and ``output_shape`` keeps that many from the first kept element,
    zero-extending at the end (PyTorch's ``output_padding``).
    """
    x, weight = args["x"], np.asarray(args["weight"], np.float32)
    kernel = list(weight.shape[2:])
    strides, dilations = _spatial_params(args, x, kernel)
    groups = args.int("groups", 1)
    batch, c_in = x.shape[:2]
    if groups < 1 or c_in % groups or weight.shape[0] != c_in:
        args.fail(f"has groups={groups} for {c_in} input channels and weight {list(weight.shape)}")
    c_out = weight.shape[1] * groups
    sizes = x.shape[2:]
    full_sizes = [(i - 1) * s + (k - 1) * d + 1 for i, k, s, d in zip(sizes, kernel, strides, dilations)]
    full = np.zeros((batch, groups, c_out // groups, *full_sizes), np.float32)
    xg = x.reshape(batch, groups, c_in // groups, *sizes)
    wg = weight.reshape(groups, c_in // groups, c_out // groups, *kernel)
    for tap in np.ndindex(*kernel):
        contribution = np.einsum("ngi...,gio->ngo...", xg, wg[(slice(None), slice(None), slice(None)) + tap])
        index = (slice(None),) * 3 + tuple(slice(t * d, t * d + (i - 1) * s + 1, s)
                                           for t, d, i, s in zip(tap, dilations, sizes, strides))
        full[index] += contribution
    full = full.reshape(batch, c_out, *full_sizes)
    out = _transpose_crop(args, full, sizes, strides)
    bias = args.get("bias")
    if bias is not None:
        out = out + np.asarray(bias, np.float32).reshape((1, -1) + (1,) * len(kernel))
    return out


def _transpose_crop(args: OpArgs, full: np.ndarray, sizes, strides) -> np.ndarray:
    n = len(sizes)
    pad_type = args.choice("pad_type", ("valid", "same", "custom"), "valid")
    full_sizes = full.shape[2:]
    if pad_type == "custom":
        pad = args.ints("pad", [0] * 2 * n)
        befores, afters = pad[0::2], pad[1::2]
    elif pad_type == "same":
        totals = [max(0, f - i * s) for f, i, s in zip(full_sizes, sizes, strides)]
        befores, afters = [t // 2 for t in totals], [t - t // 2 for t in totals]
    else:
        befores, afters = [0] * n, [0] * n
    wanted = [f - b - a for f, b, a in zip(full_sizes, befores, afters)]
    if args.get("output_shape") is not None:
        wanted = args.ints("output_shape")[2:]
    extra = [max(0, b + w - f) for b, w, f in zip(befores, wanted, full_sizes)]
    if any(extra):
        full = np.pad(full, [(0, 0), (0, 0)] + [(0, e) for e in extra])
    return full[(slice(None), slice(None)) + tuple(slice(b, b + w) for b, w in zip(befores, wanted))]


# -- pooling ------------------------------------------------------------------------------------


def _pool_geometry(args: OpArgs, x: np.ndarray):
    kernel = args.ints("kernel_sizes")
    strides, _ = _spatial_params(args, x, kernel)
    ones = [1] * len(kernel)
    pads = spatial_padding(args, x.shape[2:], kernel, strides, ones)
    ceil_mode = args.bool("ceil_mode")
    out, extra = [], []
    for size, k, s, (before, after) in zip(x.shape[2:], kernel, strides, pads):
        total = before + after
        if ceil_mode:
            o = math.floor((size + total - k + s - 1) / s + 1)
            if (o - 1) * s >= size + total / 2 and total > 0:
                o -= 1
        else:
            o = (size + total - k) // s + 1
        if o < 1:
            args.fail(f"gives an empty output for input {list(x.shape)}")
        out.append(o)
        extra.append(max(0, (o - 1) * s + k - (size + total)))
    return kernel, strides, pads, out, extra


def _pool(args: OpArgs, kind: str) -> np.ndarray:
    x = args["x"]
    kernel, strides, pads, out, extra = _pool_geometry(args, x)
    ones = [1] * len(kernel)
    widths = [(0, 0), (0, 0)] + [(b, a + e) for (b, a), e in zip(pads, extra)]
    axes = tuple(range(-len(kernel), 0))
    if kind == "max":
        padded = np.pad(x, widths, constant_values=-np.inf)
        return _windows(padded, kernel, strides, ones, out).max(axis=axes)
    padded = np.pad(x * x if kind == "l2" else x, widths)
    sums = _windows(padded, kernel, strides, ones, out).sum(axis=axes)
    if kind == "l2":
        return np.sqrt(sums)
    inside = np.ones((1, 1, *x.shape[2:]), np.float32)
    if args.bool("exclude_padding_from_average"):
        counted = np.pad(inside, widths)
    else:  # padding counts, the extra cells of ceil_mode do not
        counted = np.pad(np.pad(inside, [(0, 0), (0, 0), *pads], constant_values=1),
                         [(0, 0), (0, 0)] + [(0, e) for e in extra])
    counts = _windows(counted, kernel, strides, ones, out).sum(axis=axes)
    return sums / counts


@op("avg_pool")
def avg_pool(args: OpArgs) -> np.ndarray:
    return _pool(args, "avg")


@op("max_pool")
def max_pool(args: OpArgs) -> np.ndarray:
    return _pool(args, "max")


@op("l2_pool")
def l2_pool(args: OpArgs) -> np.ndarray:
    return _pool(args, "l2")
