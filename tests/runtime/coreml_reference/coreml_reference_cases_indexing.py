"""Op cases: the ops issue 16 found missing — transposed convolution, local response norm,
scatters, sorting, rearrangements and batched gathers (expectations in float64, written as
plain loops or PyTorch, not with the executor's helpers)."""

from __future__ import annotations

import itertools

import numpy as np
from coreml_reference_cases import OpCase, half, rand, torch_fn

X = rand(2, 4, 5, 6, seed=31)
WT = rand(4, 3, 3, 3, seed=32)  # conv_transpose weight [C_in, C_out / groups, kH, kW]
BT = rand(3, seed=33)


def _conv_t(weight=WT, bias=None, **kwargs):
    return lambda mb, x: mb.conv_transpose(x=x, weight=weight, bias=bias, **kwargs)


CASES = [
    OpCase("conv_transpose", "valid-stride2-bias", _conv_t(bias=BT, strides=[2, 2]), [X],
           lambda x: torch_fn("conv_transpose2d", x, WT, BT, stride=2)),
    OpCase("conv_transpose", "custom-pad-dilation", _conv_t(pad_type="custom", pad=[1, 1, 2, 2], dilations=[2, 1]),
           [X], lambda x: torch_fn("conv_transpose2d", x, WT, padding=(1, 2), dilation=(2, 1))),
    OpCase("conv_transpose", "output-shape-like-output-padding",
           _conv_t(pad_type="custom", pad=[1, 1, 1, 1], strides=[2, 2], output_shape=[2, 3, 10, 12]), [X],
           lambda x: torch_fn("conv_transpose2d", x, WT, stride=2, padding=1, output_padding=1)),
    OpCase("conv_transpose", "groups-2", _conv_t(rand(4, 2, 2, 2, seed=34), strides=[2, 2], groups=2), [X],
           lambda x: torch_fn("conv_transpose2d", x, rand(4, 2, 2, 2, seed=34), stride=2, groups=2)),
    OpCase("conv_transpose", "same-stride2-crops-at-the-end", _conv_t(pad_type="same", strides=[2, 2]), [X],
           lambda x: torch_fn("conv_transpose2d", x, WT, stride=2)[..., :10, :12]),
    OpCase("conv_transpose", "1d-ios17", lambda mb, x: mb.conv_transpose(x=x, weight=rand(4, 2, 3, seed=35),
                                                                         strides=[3]), [rand(1, 4, 7)],
           lambda x: torch_fn("conv_transpose1d", x, rand(4, 2, 3, seed=35), stride=3), opset=17),
    OpCase("conv_transpose", "fp16", _conv_t(WT.astype(np.float16), strides=[2, 2]), [X.astype(np.float16)],
           lambda x: torch_fn("conv_transpose2d", x, WT.astype(np.float16), stride=2), rtol=3e-3, atol=1e-2),
    OpCase("local_response_norm", "size-3", lambda mb, x: mb.local_response_norm(x=x, size=3, alpha=0.3, beta=0.8, k=2.0),
           [X], lambda x: torch_fn("local_response_norm", x, 3, alpha=0.3, beta=0.8, k=2.0)),
    OpCase("local_response_norm", "size-4-defaults", lambda mb, x: mb.local_response_norm(x=x, size=4), [X],
           lambda x: torch_fn("local_response_norm", x, 4, alpha=1e-4, beta=0.75, k=1.0)),
    OpCase("local_response_norm", "fp16-rank3-ios17", lambda mb, x: mb.local_response_norm(x=x, size=5, alpha=1.0),
           [half(2, 6, 7)], lambda x: torch_fn("local_response_norm", x, 5, alpha=1.0), opset=17, rtol=3e-3,
           atol=2e-3),
]

# -- scatters ---------------------------------------------------------------------------------------

DATA = rand(4, 3, seed=36)
UPD = rand(3, 3, seed=37)
IDX = np.array([2, 0, 2], np.int32)  # a repeated index: combined in order


def _scatter_rows(data, indices, updates, combine):
    out = data.copy()
    for row, index in enumerate(indices):
        out[index] = updates[row] if combine is None else combine(out[index], updates[row])
    return out


COMBINE = {"update": None, "add": np.add, "sub": np.subtract, "mul": np.multiply, "max": np.maximum,
           "min": np.minimum}
CASES += [
    OpCase("scatter", f"{mode}-repeated-index", lambda mb, x, y, mode=mode: mb.scatter(
        data=x, indices=IDX, updates=y, axis=0, mode=mode), [DATA, UPD],
           lambda x, y, mode=mode: _scatter_rows(x, IDX, y, COMBINE[mode]))
    for mode in ("add", "sub", "mul", "max", "min")
]
CASES += [
    OpCase("scatter", "update-axis1-negative-ios15", lambda mb, x, y: mb.scatter(
        data=x, indices=np.array([-1, 0], np.int32), updates=y, axis=1, mode="update"),
           [rand(2, 3, 4, seed=38), rand(2, 2, 4, seed=39)],
           lambda x, y: np.concatenate([y[:, 1:2], x[:, 1:2], y[:, 0:1]], axis=1), opset=15),
    OpCase("scatter", "div-ios17", lambda mb, x, y: mb.scatter(data=x, indices=np.array([1, 3], np.int32), updates=y,
                                                               mode="div"), [DATA, rand(2, 3, low=1, high=2, seed=40)],
           lambda x, y: _scatter_rows(x, [1, 3], y, np.divide), opset=17),
    OpCase("scatter", "add-fp16-ios18", lambda mb, x, y: mb.scatter(data=x, indices=IDX, updates=y, mode="add"),
           [DATA.astype(np.float16), UPD.astype(np.float16)],
           lambda x, y: _scatter_rows(x, IDX, y, np.add), opset=18, rtol=2e-3, atol=2e-3),
]
AIDX = np.array([[1, 0, 2], [2, 2, 0]], np.int32)


def _scatter_along(data, indices, updates, axis, combine):
    out = data.copy()
    for position in itertools.product(*map(range, indices.shape)):
        target = list(position)
        target[axis] = indices[position]
        target = tuple(target)
        out[target] = updates[position] if combine is None else combine(out[target], updates[position])
    return out


CASES += [
    OpCase("scatter_along_axis", f"{mode}-axis{axis}", lambda mb, x, y, mode=mode, axis=axis: mb.scatter_along_axis(
        data=x, indices=AIDX if axis == 1 else AIDX.T[:2].copy(), updates=y, axis=axis, mode=mode),
           [rand(2, 4, seed=41) if axis == 1 else rand(3, 2, seed=41), rand(2, 3, seed=42) if axis == 1 else rand(2, 2, seed=42)],
           lambda x, y, mode=mode, axis=axis: _scatter_along(x, AIDX if axis == 1 else AIDX.T[:2], y, axis,
                                                             COMBINE[mode]), opset=opset)
    for mode, axis, opset in (("update", 1, 15), ("add", 1, 17), ("max", 0, 16))
]
NDIDX = np.array([[0, 1], [2, 0], [0, 1]], np.int32)


def _scatter_nd(data, indices, updates, combine):
    out = data.copy()
    for row, index in enumerate(indices):
        out[tuple(index)] = updates[row] if combine is None else combine(out[tuple(index)], updates[row])
    return out


CASES += [
    OpCase("scatter_nd", f"{mode}-slices", lambda mb, x, y, mode=mode: mb.scatter_nd(
        data=x, indices=NDIDX, updates=y, mode=mode), [rand(3, 2, 4, seed=43), rand(3, 4, seed=44)],
           lambda x, y, mode=mode: _scatter_nd(x, NDIDX, y, COMBINE[mode]), opset=opset)
    for mode, opset in (("add", 15), ("update", 17), ("mul", 18))
]
CASES += [
    OpCase("slice_update", "strided-ios18", lambda mb, x, y: mb.slice_update(
        x=x, update=y, begin=np.array([1, 0], np.int32), end=np.array([4, 5], np.int32),
        stride=np.array([2, 2], np.int32)), [rand(5, 5, seed=45), rand(2, 3, seed=46)],
           lambda x, y: _put(x, (slice(1, 4, 2), slice(0, 5, 2)), y), opset=18),
    OpCase("slice_update", "masks-squeeze-fp16", lambda mb, x, y: mb.slice_update(
        x=x, update=y, begin=np.array([2, 1], np.int32), end=np.array([0, 0], np.int32),
        squeeze_mask=np.array([True, False]), end_mask=np.array([False, True])),
           [half(4, 5, seed=47), half(4, seed=48)], lambda x, y: _put(x, (2, slice(1, None)), y), opset=18),
]


def _put(x, index, update):
    out = x.copy()
    out[index] = update
    return out


# -- sorting and selection --------------------------------------------------------------------------

TIES = np.array([[3.0, 1.0, 3.0, -2.0, 1.0, 5.0], [0.5, 0.5, -1.0, 2.0, 2.0, 0.5]], np.float32)


def _stable_order(x, axis, ascending):
    """Sort indices by (value, position) with a plain Python sort on each line."""
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape, np.int64)
    for line in np.ndindex(*moved.shape[:-1]):
        values = list(moved[line])
        out[line] = sorted(range(len(values)), key=lambda i: (values[i] if ascending else -values[i], i))
    return np.moveaxis(out, -1, axis)


def _top(x, k, axis, ascending):
    order = np.take(_stable_order(x, axis, ascending), np.arange(k), axis=axis)
    return np.take_along_axis(x, order, axis=axis), order


CASES += [
    OpCase("topk", "descending-ties", lambda mb, x: mb.topk(x=x, k=3), [TIES], lambda x: _top(x, 3, -1, False),
           opset=15),
    OpCase("topk", "ascending-axis0", lambda mb, x: mb.topk(x=x, k=2, axis=0, ascending=True), [rand(4, 5, seed=49)],
           lambda x: _top(x, 2, 0, True)),
    OpCase("topk", "values-only-ios16", lambda mb, x: mb.topk(x=x, k=4, return_indices=False), [rand(3, 7, seed=50)],
           lambda x: _top(x, 4, -1, False)[0]),
    OpCase("topk", "fp16-values-ios17", lambda mb, x: mb.topk(x=x, k=2, axis=1, return_indices=False),
           [half(2, 5, 3, seed=51)], lambda x: _top(x, 2, 1, False)[0], opset=17),
    OpCase("topk", "fp16-indices-ios18", lambda mb, x: mb.topk(x=x, k=2, axis=1)[1], [half(2, 5, 3, seed=51)],
           lambda x: _top(x, 2, 1, False)[1], opset=18, output_dtype="int32"),
    OpCase("argsort", "descending-ties", lambda mb, x: mb.argsort(x=x), [TIES], lambda x: _stable_order(x, -1, False),
           output_dtype="int32"),
    OpCase("argsort", "ascending-axis0", lambda mb, x: mb.argsort(x=x, axis=0, ascending=True), [rand(4, 3, seed=52)],
           lambda x: _stable_order(x, 0, True), output_dtype="int32"),
]


def _cumsum(x, axis, exclusive, reverse):
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros_like(moved)
    n = moved.shape[-1]
    for i in range(n):
        span = range(i + 1, n) if reverse else range(0, i)
        span = list(span) + ([] if exclusive else [i])
        out[..., i] = sum((moved[..., j] for j in span), np.zeros(moved.shape[:-1]))
    return np.moveaxis(out, -1, axis)


CASES += [
    OpCase("cumsum", f"axis{axis}-exclusive{int(ex)}-reverse{int(rev)}",
           lambda mb, x, axis=axis, ex=ex, rev=rev: mb.cumsum(x=x, axis=axis, exclusive=ex, reverse=rev),
           [rand(3, 4, seed=53)], lambda x, axis=axis, ex=ex, rev=rev: _cumsum(x, axis, ex, rev))
    for axis, ex, rev in ((0, False, False), (1, True, False), (-1, False, True), (0, True, True))
]
CASES += [
    OpCase("cumsum", "fp16", lambda mb, x: mb.cumsum(x=x, axis=1), [half(2, 6, seed=54)],
           lambda x: _cumsum(x, 1, False, False), rtol=3e-3, atol=3e-3),
    OpCase("non_zero", "mixed", lambda mb, x: mb.non_zero(x=x),
           [np.array([[0, 1.5, 0], [2.0, 0, -1.0]], np.float32)],
           lambda x: np.array([[0, 1], [1, 0], [1, 2]]), output_dtype="int32"),
    OpCase("one_hot", "axis-last", lambda mb, x: mb.one_hot(indices=x, one_hot_vector_size=4),
           [np.array([[0, 3], [2, 1]], np.int32)],
           lambda x: np.array([[[1, 0, 0, 0], [0, 0, 0, 1]], [[0, 0, 1, 0], [0, 1, 0, 0]]]), output_dtype="int32"),
    OpCase("one_hot", "axis0-on-off", lambda mb, x: mb.add(x=mb.one_hot(indices=np.array([1, 0, 2], np.int32),
                                                                       one_hot_vector_size=3, axis=0,
                                                                       on_value=5.0, off_value=-1.0), y=x),
           [rand(3, 3, seed=55)], lambda x: x + np.array([[-1, 5, -1], [5, -1, -1], [-1, -1, 5]]), also=("add",)),
    OpCase("band_part", "lower1-upper0", lambda mb, x: mb.band_part(x=x, lower=1, upper=0), [rand(2, 4, 5, seed=56)],
           lambda x: x * np.array([[1 if 0 <= m - n <= 1 else 0 for n in range(5)] for m in range(4)])),
    OpCase("band_part", "upper-triangle", lambda mb, x: mb.band_part(x=x, lower=0, upper=-1), [rand(4, 4, seed=57)],
           lambda x: np.triu(x)),
]

# -- rearrangements --------------------------------------------------------------------------------

D2S = rand(1, 8, 2, 3, seed=58)


def _depth_to_space(x, b):
    n, c, h, w = x.shape
    out = np.zeros((n, c // (b * b), h * b, w * b))
    for ci, hi, wi, i, j in itertools.product(range(c // (b * b)), range(h), range(w), range(b), range(b)):
        out[:, ci, hi * b + i, wi * b + j] = x[:, (i * b + j) * (c // (b * b)) + ci, hi, wi]
    return out


def _space_to_batch(x, block, pads):
    x = np.pad(x, [(0, 0), (0, 0), tuple(pads[0]), tuple(pads[1])])
    n, c, h, w = x.shape
    out = np.zeros((n * block[0] * block[1], c, h // block[0], w // block[1]))
    for b, i, j in itertools.product(range(n), range(block[0]), range(block[1])):
        out[(i * block[1] + j) * n + b] = x[b, :, i::block[0], j::block[1]]
    return out


CASES += [
    OpCase("depth_to_space", "block2", lambda mb, x: mb.depth_to_space(x=x, block_size=2), [D2S],
           lambda x: _depth_to_space(x, 2)),
    OpCase("space_to_depth", "inverts-depth-to-space", lambda mb, x: mb.space_to_depth(x=x, block_size=2),
           [_depth_to_space(D2S, 2).astype(np.float32)], lambda x: D2S),
    OpCase("space_to_batch", "block-2-3-padded", lambda mb, x: mb.space_to_batch(
        x=x, block_shape=np.array([2, 3], np.int32), paddings=np.array([[1, 1], [2, 0]], np.int32)),
           [rand(2, 3, 4, 4, seed=59)], lambda x: _space_to_batch(x, (2, 3), [[1, 1], [2, 0]])),
    OpCase("batch_to_space", "inverts-space-to-batch", lambda mb, x: mb.batch_to_space(
        x=x, block_shape=np.array([2, 3], np.int32), crops=np.array([[1, 1], [2, 0]], np.int32)),
           [_space_to_batch(rand(2, 3, 4, 4, seed=59), (2, 3), [[1, 1], [2, 0]]).astype(np.float32)],
           lambda x: rand(2, 3, 4, 4, seed=59)),
    OpCase("sliding_windows", "axis1-size3-stride2", lambda mb, x: mb.sliding_windows(x=x, axis=1, size=3, stride=2),
           [rand(2, 8, 3, seed=60)], lambda x: np.stack([x[:, s:s + 3] for s in range(0, 6, 2)], axis=1)),
    OpCase("sliding_windows", "last-axis-fp16", lambda mb, x: mb.sliding_windows(x=x, axis=-1, size=2),
           [half(3, 4, seed=61)], lambda x: np.stack([x[:, s:s + 2] for s in range(3)], axis=1), opset=17),
    OpCase("reverse_sequence", "seq1-batch0", lambda mb, x: mb.reverse_sequence(
        x=x, lengths=np.array([2, 0, 4], np.int32), seq_axis=1, batch_axis=0), [rand(3, 4, 2, seed=62)],
           lambda x: np.stack([np.concatenate([x[b, :n][::-1], x[b, n:]]) for b, n in enumerate([2, 0, 4])])),
    OpCase("reverse_sequence", "seq0-batch1-ios17", lambda mb, x: mb.reverse_sequence(
        x=x, lengths=np.array([3, 1], np.int32), seq_axis=0, batch_axis=1), [rand(4, 2, seed=63)],
           lambda x: np.stack([np.concatenate([x[:n, b][::-1], x[n:, b]]) for b, n in enumerate([3, 1])], axis=1),
           opset=17),
    OpCase("crop", "all-sides", lambda mb, x: mb.crop(x=x, crop_height=[1, 2], crop_width=[0, 3]),
           [rand(1, 2, 6, 7, seed=64)], lambda x: x[..., 1:4, 0:4]),
    OpCase("reshape_like", "two-refs", lambda mb, x: mb.reshape_like(
        x=x, ref_tensors=(mb.fill(shape=[2, 3, 4], value=0.0), mb.fill(shape=[1, 5, 2], value=0.0)),
        begins=(0, 1), ends=(2, 0), end_masks=(False, True)), [rand(60, seed=65)],
           lambda x: x.reshape(2, 3, 5, 2), also=("fill",)),
    OpCase("fill_like", "value", lambda mb, x: mb.add(x=x, y=mb.fill_like(ref_tensor=x, value=2.5)),
           [rand(2, 3, seed=66)], lambda x: x + 2.5, also=("add",)),
]

# -- batched gathers ---------------------------------------------------------------------------------

GX = rand(2, 3, 5, seed=67)
GI = np.array([[4, 0], [1, 1]], np.int32)
CASES += [
    OpCase("gather", "batch-dims-1-ios16", lambda mb, x: mb.gather(x=x, indices=GI, axis=2, batch_dims=1), [GX],
           lambda x: np.stack([x[b][:, GI[b]] for b in range(2)])),
    OpCase("gather", "batch-dims-1-axis1-ios17", lambda mb, x: mb.gather(x=x, indices=np.array([[2], [0]], np.int32), axis=1,
                                                                       batch_dims=1), [GX],
           lambda x: np.stack([x[0][[2]], x[1][[0]]]), opset=17),
    OpCase("gather_nd", "batch-dims-1-ios16", lambda mb, x: mb.gather_nd(
        x=x, indices=np.array([[[0, 4], [2, 1]], [[1, 1], [0, 0]]], np.int32), batch_dims=1), [GX],
           lambda x: np.array([[x[0, 0, 4], x[0, 2, 1]], [x[1, 1, 1], x[1, 0, 0]]])),
    OpCase("gather_nd", "batch-dims-1-slices-fp16-ios17", lambda mb, x: mb.gather_nd(
        x=x, indices=np.array([[[2]], [[0]]], np.int32), batch_dims=1), [GX.astype(np.float16)],
           lambda x: np.stack([x[0, 2][None], x[1, 0][None]]), opset=17),
]
