"""Op cases: convolution, pooling, normalization and tensor-shape ops (expectations in float64)."""

from __future__ import annotations

import numpy as np
from coreml_reference_cases import OpCase, half, rand, torch_fn

X4 = rand(1, 4, 9, 10)
W3 = rand(6, 4, 3, 3, seed=1)
B6 = rand(6, seed=2)
DW = rand(4, 1, 3, 3, seed=3)
NEG_INF = -np.inf


def _conv(weight, bias=None, **kwargs):
    return lambda mb, x: mb.conv(x=x, weight=weight, bias=bias, **kwargs)


def _padded(x, pads, value=0.0):
    """``pads`` as MIL orders them (before/after per spatial dim) applied with torch's F.pad order."""
    order = []
    for i in reversed(range(len(pads) // 2)):
        order += [pads[2 * i], pads[2 * i + 1]]
    return torch_fn("pad", x, tuple(order), value=value)


CASES = [
    OpCase("conv", "valid-stride2-bias", _conv(W3, B6, pad_type="valid", strides=[2, 2]), [X4],
           lambda x: torch_fn("conv2d", x, W3, B6, stride=2)),
    OpCase("conv", "same-stride2-odd", _conv(W3, pad_type="same", strides=[2, 2]), [X4],
           lambda x: torch_fn("conv2d", _padded(x, [1, 1, 0, 1]), W3, stride=2)),
    OpCase("conv", "same_lower-stride2", _conv(W3, pad_type="same_lower", strides=[2, 2]), [X4],
           lambda x: torch_fn("conv2d", _padded(x, [1, 1, 1, 0]), W3, stride=2)),
    OpCase("conv", "custom-dilation", _conv(W3, pad_type="custom", pad=[2, 1, 0, 2], dilations=[2, 1]), [X4],
           lambda x: torch_fn("conv2d", _padded(x, [2, 1, 0, 2]), W3, dilation=(2, 1))),
    OpCase("conv", "groups-2", _conv(rand(6, 2, 3, 3, seed=4), pad_type="custom", pad=[1, 1, 1, 1], groups=2), [X4],
           lambda x: torch_fn("conv2d", x, rand(6, 2, 3, 3, seed=4), padding=1, groups=2)),
    OpCase("conv", "depthwise-same", _conv(DW, pad_type="same", groups=4), [X4],
           lambda x: torch_fn("conv2d", x, DW, padding=1, groups=4)),
    OpCase("conv", "depthwise-stride-dilation", _conv(DW, pad_type="custom", pad=[2, 2, 2, 2], strides=[2, 2],
                                                      dilations=[2, 2], groups=4), [X4],
           lambda x: torch_fn("conv2d", x, DW, padding=2, stride=2, dilation=2, groups=4)),
    OpCase("conv", "depthwise-multiplier", _conv(rand(8, 1, 3, 3, seed=5), pad_type="valid", groups=4), [X4],
           lambda x: torch_fn("conv2d", x, rand(8, 1, 3, 3, seed=5), groups=4)),
    OpCase("conv", "pointwise", _conv(rand(6, 4, 1, 1, seed=6), B6), [X4],
           lambda x: torch_fn("conv2d", x, rand(6, 4, 1, 1, seed=6), B6)),
    OpCase("conv", "patchify", _conv(rand(8, 3, 4, 4, seed=7), strides=[4, 4]), [rand(1, 3, 16, 16)],
           lambda x: torch_fn("conv2d", x, rand(8, 3, 4, 4, seed=7), stride=4)),
    OpCase("conv", "1d-same", _conv(rand(5, 4, 3, seed=8), pad_type="same"), [rand(2, 4, 12)],
           lambda x: torch_fn("conv1d", x, rand(5, 4, 3, seed=8), padding=1)),
    OpCase("conv", "fp16", _conv(W3.astype(np.float16), B6.astype(np.float16), pad_type="same"),
           [X4.astype(np.float16)],
           lambda x: torch_fn("conv2d", x, W3.astype(np.float16), B6.astype(np.float16), padding=1),
           rtol=3e-3, atol=1e-2),
]

# -- pooling --------------------------------------------------------------------------------------

P = rand(2, 3, 9, 9, seed=9)


def _pool(name, **kwargs):
    return lambda mb, x: getattr(mb, name)(x=x, **kwargs)


CASES += [
    OpCase("avg_pool", "custom-include-pad", _pool("avg_pool", kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom",
                                                   pad=[1, 1, 1, 1], exclude_padding_from_average=False), [P],
           lambda x: torch_fn("avg_pool2d", x, 3, 2, 1, count_include_pad=True)),
    OpCase("avg_pool", "custom-exclude-pad", _pool("avg_pool", kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom",
                                                   pad=[1, 1, 1, 1], exclude_padding_from_average=True), [P],
           lambda x: torch_fn("avg_pool2d", x, 3, 2, 1, count_include_pad=False)),
    OpCase("avg_pool", "same-exclude-pad", _pool("avg_pool", kernel_sizes=[3, 3], strides=[1, 1], pad_type="same",
                                                 exclude_padding_from_average=True), [P],
           lambda x: torch_fn("avg_pool2d", x, 3, 1, 1, count_include_pad=False)),
    OpCase("avg_pool", "ceil-mode", _pool("avg_pool", kernel_sizes=[3, 3], strides=[2, 2], pad_type="valid",
                                          ceil_mode=True), [rand(1, 2, 8, 8)],
           lambda x: torch_fn("avg_pool2d", x, 3, 2, ceil_mode=True)),
    OpCase("avg_pool", "global-fp16", _pool("avg_pool", kernel_sizes=[7, 7], strides=[1, 1], pad_type="valid"),
           [half(1, 8, 7, 7)], lambda x: torch_fn("avg_pool2d", x, 7), rtol=2e-3, atol=1e-3),
    OpCase("max_pool", "custom-pad", _pool("max_pool", kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom",
                                           pad=[1, 1, 1, 1]), [P],
           lambda x: torch_fn("max_pool2d", x, 3, 2, 1)),
    OpCase("max_pool", "ceil-mode", _pool("max_pool", kernel_sizes=[3, 3], strides=[2, 2], pad_type="valid",
                                          ceil_mode=True), [rand(1, 2, 8, 8)],
           lambda x: torch_fn("max_pool2d", x, 3, 2, ceil_mode=True)),
    OpCase("max_pool", "same-odd", _pool("max_pool", kernel_sizes=[2, 2], strides=[2, 2], pad_type="same"),
           [rand(1, 2, 7, 7)], lambda x: torch_fn("max_pool2d", _padded(x, [0, 1, 0, 1], NEG_INF), 2, 2)),
    OpCase("l2_pool", "valid", _pool("l2_pool", kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid"), [P],
           lambda x: torch_fn("lp_pool2d", x, 2, 2, 2)),
]

# -- normalization --------------------------------------------------------------------------------

N = rand(2, 3, 4, 5, seed=10)
MEAN, VAR = rand(3, seed=11), rand(3, low=0.5, high=2, seed=12)
GAMMA, BETA = rand(3, seed=13), rand(3, seed=14)
G45, B45 = rand(4, 5, seed=15), rand(4, 5, seed=16)
G64, B64 = rand(64, seed=17), rand(64, seed=18)


def _channel(v):
    return np.asarray(v, np.float64).reshape(1, -1, 1, 1)


def _layer_norm(x, axes, gamma=None, beta=None, eps=1e-5):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    return y * (1 if gamma is None else gamma) + (0 if beta is None else beta)


CASES += [
    OpCase("batch_norm", "all-params", lambda mb, x: mb.batch_norm(x=x, mean=MEAN, variance=VAR, gamma=GAMMA, beta=BETA,
                                                                 epsilon=1e-3), [N],
           lambda x: (x - _channel(MEAN)) / np.sqrt(_channel(VAR) + 1e-3) * _channel(GAMMA) + _channel(BETA)),
    OpCase("batch_norm", "fp16", lambda mb, x: mb.batch_norm(x=x, mean=MEAN.astype(np.float16),
                                                           variance=VAR.astype(np.float16)), [N.astype(np.float16)],
           lambda x: (x - _channel(MEAN.astype(np.float16))) / np.sqrt(_channel(VAR.astype(np.float16)) + 1e-5),
           rtol=3e-3, atol=3e-3),
    OpCase("layer_norm", "last-axis", lambda mb, x: mb.layer_norm(x=x, axes=[-1], gamma=G45[0], beta=B45[0]), [N],
           lambda x: _layer_norm(x, (3,), G45[0], B45[0])),
    OpCase("layer_norm", "two-axes", lambda mb, x: mb.layer_norm(x=x, axes=[2, 3], gamma=G45, beta=B45, epsilon=1e-3),
           [N], lambda x: _layer_norm(x, (2, 3), G45, B45, 1e-3)),
    OpCase("layer_norm", "no-affine", lambda mb, x: mb.layer_norm(x=x, axes=[1, 2, 3]), [N],
           lambda x: _layer_norm(x, (1, 2, 3))),
    OpCase("layer_norm", "fp16-tokens", lambda mb, x: mb.layer_norm(x=x, axes=[-1], gamma=G64.astype(np.float16),
                                                                  beta=B64.astype(np.float16)),
           [half(1, 17, 64, low=-4, high=4)],
           lambda x: _layer_norm(x, (2,), G64.astype(np.float16), B64.astype(np.float16)), rtol=5e-3, atol=5e-3),
    OpCase("instance_norm", "affine", lambda mb, x: mb.instance_norm(x=x, gamma=GAMMA, beta=BETA, epsilon=1e-4), [N],
           lambda x: _layer_norm(x, (2, 3), eps=1e-4) * _channel(GAMMA) + _channel(BETA)),
    OpCase("l2_norm", "batched", lambda mb, x: mb.l2_norm(x=x, epsilon=1e-6), [N],
           lambda x: x / np.sqrt((x * x).sum(axis=(1, 2, 3), keepdims=True) + 1e-6)),
]

# -- tensor shape and movement --------------------------------------------------------------------

T = rand(2, 3, 4, seed=19)
CASES += [
    OpCase("identity", "copy", lambda mb, x: mb.identity(x=x), [T], lambda x: x),
    OpCase("shape", "int32", lambda mb, x: mb.shape(x=x), [T], lambda x: np.array(x.shape, np.int32)),
    OpCase("fill", "folded", lambda mb, x: mb.add(x=x, y=mb.fill(shape=[3, 4], value=1.5)), [T],
           lambda x: x + 1.5, also=("add",)),
    OpCase("range_1d", "folded", lambda mb, x: mb.add(x=x, y=mb.range_1d(start=0.5, end=2.5, step=0.5)),
           [rand(4)], lambda x: x + np.arange(0.5, 2.5, 0.5), also=("add",)),
    OpCase("reshape", "minus-one", lambda mb, x: mb.reshape(x=x, shape=[4, -1]), [T], lambda x: x.reshape(4, -1)),
    OpCase("reshape", "zero-ios16", lambda mb, x: mb.reshape(x=x, shape=[0, 4, 3]), [T], lambda x: x.reshape(2, 4, 3)),
    OpCase("reshape", "zero-ios17-from-right", lambda mb, x: mb.reshape(x=x, shape=[1, 0, -1, 0]), [T],
           lambda x: x.reshape(1, 2, 3, 4), opset=17),
    OpCase("flatten2d", "axis-2", lambda mb, x: mb.flatten2d(x=x, axis=2), [T], lambda x: x.reshape(6, 4)),
    OpCase("transpose", "perm", lambda mb, x: mb.transpose(x=x, perm=[2, 0, 1]), [T], lambda x: x.transpose(2, 0, 1)),
    OpCase("expand_dims", "negative-axes", lambda mb, x: mb.expand_dims(x=x, axes=[0, -1]), [rand(2, 3)],
           lambda x: x.reshape(1, 2, 3, 1)),
    OpCase("squeeze", "axes", lambda mb, x: mb.squeeze(x=x, axes=[0, -2]), [rand(1, 3, 1, 4)],
           lambda x: x.reshape(3, 4)),
    OpCase("squeeze", "all", lambda mb, x: mb.squeeze(x=x), [rand(1, 3, 1, 4)], lambda x: x.reshape(3, 4)),
    OpCase("concat", "three-inputs", lambda mb, x, y, z: mb.concat(values=[x, y, z], axis=-1),
           [T, rand(2, 3, 2, seed=20), rand(2, 3, 1, seed=21)], lambda *v: np.concatenate(v, axis=-1)),
    OpCase("concat", "interleave", lambda mb, x, y: mb.concat(values=[x, y], axis=1, interleave=True),
           [T, rand(2, 3, 4, seed=22)], lambda x, y: np.stack([x, y], axis=2).reshape(2, 6, 4)),
    OpCase("concat", "scalars", lambda mb, x: mb.reshape(x=x, shape=mb.concat(values=[mb.gather(
        x=mb.shape(x=x), indices=np.int32(1), axis=0), np.int32(-1)], axis=0)), [T], lambda x: x.reshape(3, -1),
           also=("reshape", "shape", "gather")),
    OpCase("stack", "axis-1", lambda mb, x, y: mb.stack(values=[x, y], axis=1), [T, rand(2, 3, 4, seed=23)],
           lambda x, y: np.stack([x, y], axis=1)),
    OpCase("split", "sizes", lambda mb, x: mb.split(x=x, split_sizes=[1, 3], axis=-1), [T],
           lambda x: (x[..., :1], x[..., 1:])),
    OpCase("split", "num-splits", lambda mb, x: mb.split(x=x, num_splits=2, axis=0), [T], lambda x: (x[:1], x[1:])),
    OpCase("slice_by_index", "masks-negative-stride",
           lambda mb, x: mb.slice_by_index(x=x, begin=[1, 1, -3], end=[2, 3, -1], stride=[1, 1, 2],
                                           begin_mask=[True, False, False], end_mask=[False, False, True],
                                           squeeze_mask=[False, True, False]), [rand(2, 4, 6)],
           lambda x: x[:2, 1, -3::2]),
    OpCase("slice_by_index", "reverse", lambda mb, x: mb.slice_by_index(x=x, begin=[0, 0, 0], end=[0, 0, 0],
                                                                     stride=[1, -1, 1], begin_mask=[True] * 3,
                                                                     end_mask=[True] * 3), [T],
           lambda x: x[:, ::-1, :]),
    OpCase("slice_by_size", "minus-one", lambda mb, x: mb.slice_by_size(x=x, begin=[0, 1, 1], size=[2, -1, 2]), [T],
           lambda x: x[:, 1:, 1:3]),
    OpCase("tile", "reps", lambda mb, x: mb.tile(x=x, reps=[1, 2, 3]), [T], lambda x: np.tile(x, (1, 2, 3))),
    OpCase("reverse", "axes", lambda mb, x: mb.reverse(x=x, axes=[0, 2]), [T], lambda x: x[::-1, :, ::-1]),
    OpCase("pad", "constant", lambda mb, x: mb.pad(x=x, pad=[1, 2, 0, 1], mode="constant", constant_val=0.5), [T],
           lambda x: np.pad(x, [(0, 0), (1, 2), (0, 1)], constant_values=0.5)),
    OpCase("pad", "reflect", lambda mb, x: mb.pad(x=x, pad=[2, 1], mode="reflect"), [T],
           lambda x: np.pad(x, [(0, 0), (0, 0), (2, 1)], mode="reflect")),
    OpCase("pad", "replicate", lambda mb, x: mb.pad(x=x, pad=[0, 0, 1, 1, 2, 0], mode="replicate"), [T],
           lambda x: np.pad(x, [(0, 0), (1, 1), (2, 0)], mode="edge")),
    OpCase("gather", "negative-indices-ios16", lambda mb, x: mb.gather(x=x, indices=np.array([0, -1, 2], np.int32),
                                                                     axis=0), [rand(5, 4)], lambda x: x[[0, 4, 2]]),
    OpCase("gather", "axis-last-2d-indices-ios17",
           lambda mb, x: mb.gather(x=x, indices=np.array([[3, 0], [1, 1]], np.int32), axis=-1), [T],
           lambda x: x[..., np.array([[3, 0], [1, 1]])], opset=17),
    OpCase("gather_along_axis", "axis-1", lambda mb, x: mb.gather_along_axis(
        x=x, indices=np.array([[0, 3], [2, 2], [1, 0]], np.int32), axis=1), [rand(3, 4)],
           lambda x: np.take_along_axis(x, np.array([[0, 3], [2, 2], [1, 0]]), axis=1)),
    OpCase("gather_nd", "pairs", lambda mb, x: mb.gather_nd(x=x, indices=np.array([[0, 2], [1, 0]], np.int32)), [T],
           lambda x: np.stack([x[0, 2], x[1, 0]])),
    OpCase("pixel_shuffle", "r2", lambda mb, x: mb.pixel_shuffle(x=x, upscale_factor=2), [rand(1, 8, 3, 3)],
           lambda x: torch_fn("pixel_shuffle", x, 2)),
    OpCase("pixel_unshuffle", "r2", lambda mb, x: mb.pixel_unshuffle(x=x, downscale_factor=np.uint32(2)),
           [rand(1, 2, 4, 6)], lambda x: torch_fn("pixel_unshuffle", x, 2)),
]
