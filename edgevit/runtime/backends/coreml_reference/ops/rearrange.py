"""Rearranging MIL ops: ``depth_to_space`` / ``space_to_depth``, ``space_to_batch`` /
``batch_to_space``, ``sliding_windows``, ``reverse_sequence``, ``crop``, ``reshape_like`` and
``fill_like``.

They move values without arithmetic. ``depth_to_space`` follows TensorFlow's ``DepthToSpace``
(the op TensorFlow converts to): output channel ``c`` at block offset ``(i, j)`` reads input
channel ``(i * block + j) * C_out + c``; PyTorch's ``pixel_shuffle`` (channel-major) is its own
op. The space/batch pair follows TensorFlow's ``SpaceToBatchND``: output batch
``(i * block_w + j) * N + n`` holds the block offset ``(i, j)`` of image ``n``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op


def _rank4(args: OpArgs, x: np.ndarray) -> None:
    if x.ndim != 4:
        args.fail(f"has a rank-{x.ndim} input; it takes [N, C, H, W]")


@op("depth_to_space")
def depth_to_space(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    _rank4(args, x)
    b = args.int("block_size")
    n, c, h, w = x.shape
    return x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2).reshape(n, c // (b * b), h * b, w * b)


@op("space_to_depth")
def space_to_depth(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    _rank4(args, x)
    b = args.int("block_size")
    n, c, h, w = x.shape
    return x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)


@op("space_to_batch")
def space_to_batch(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    _rank4(args, x)
    bh, bw = args.ints("block_shape")
    pads = np.asarray(args["paddings"]).reshape(2, 2)
    x = np.pad(x, [(0, 0), (0, 0), tuple(pads[0]), tuple(pads[1])])
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // bh, bh, w // bw, bw).transpose(3, 5, 0, 1, 2, 4)
    return blocks.reshape(bh * bw * n, c, h // bh, w // bw)


@op("batch_to_space")
def batch_to_space(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    _rank4(args, x)
    bh, bw = args.ints("block_shape")
    crops = np.asarray(args["crops"]).reshape(2, 2)
    nb, c, h, w = x.shape
    n = nb // (bh * bw)
    full = x.reshape(bh, bw, n, c, h, w).transpose(2, 3, 4, 0, 5, 1).reshape(n, c, h * bh, w * bw)
    return full[:, :, crops[0, 0]:h * bh - crops[0, 1], crops[1, 0]:w * bw - crops[1, 1]]


@op("sliding_windows")
def sliding_windows(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    axis = args.axis("axis", x.ndim)
    size, stride = args.int("size"), args.int("stride", 1)
    windows = sliding_window_view(x, size, axis=axis)  # [..., d_axis - size + 1, ..., size]
    windows = np.take(windows, np.arange(0, x.shape[axis] - size + 1, stride), axis=axis)
    return np.moveaxis(windows, -1, axis + 1)


@op("reverse_sequence")
def reverse_sequence(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    seq_axis = args.axis("seq_axis", x.ndim, 0)
    batch_axis = args.axis("batch_axis", x.ndim, 0)
    lengths = args.ints("lengths")
    out = np.array(x, copy=True)
    for b, length in enumerate(lengths):
        if not 0 <= length <= x.shape[seq_axis]:
            args.fail(f"has length {length} for a sequence axis of {x.shape[seq_axis]}")
        index = [slice(None)] * x.ndim
        index[batch_axis] = b
        index[seq_axis] = slice(0, length)
        part = tuple(index)
        axis = seq_axis - (seq_axis > batch_axis)  # batch_axis is gone from the part
        out[part] = np.flip(x[part], axis=axis)
    return out


@op("crop")
def crop(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    if x.ndim < 3:
        args.fail(f"has a rank-{x.ndim} input; crop needs rank >= 3")
    top, bottom = args.ints("crop_height")
    left, right = args.ints("crop_width")
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]


@op("reshape_like", since=16)
def reshape_like(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["x"])
    refs = args.many("ref_tensors")
    begins, ends = _flat(args.many("begins")), _flat(args.many("ends"))
    masks = [bool(v) for v in _flat(args.many("end_masks"))]
    if not len(refs) == len(begins) == len(ends) == len(masks):
        args.fail(f"has {len(refs)} ref_tensors for {len(begins)} begins / {len(ends)} ends / {len(masks)} end_masks")
    shape: list[int] = []
    for ref, begin, end, to_end in zip(refs, begins, ends, masks):
        dims = np.shape(ref)
        shape += list(dims[begin:] if to_end else dims[begin:end])
    return x.reshape(shape)


def _flat(values: list) -> list:
    return [v for value in values for v in np.asarray(value).reshape(-1).tolist()]


@op("fill_like", since=16)
def fill_like(args: OpArgs) -> np.ndarray:
    return np.full(np.shape(args["ref_tensor"]), args.get("value", 0.0))
