"""Weight-compression and quantization MIL ops.

* ``constexpr_*`` (iOS16, redefined in iOS18): compressed constant weights, decompressed
  once when the model loads (their inputs are all constants), exactly as the MIL definitions
  state: affine ``scale * (q - zero_point)``, look-up tables (palettization), sparse masks,
  block-wise ``scale * (data - offset)``.
* ``quantize`` / ``dequantize`` (iOS17): activation quantization at run time;
  ``quantize`` rounds half to even and saturates to the int8 / uint8 range.

Packed sub-byte data (uint1..uint6, int4) arrives already unpacked, one value per byte.
"""

from __future__ import annotations

import numpy as np

from edgevit.runtime.backends.coreml_reference.ops._registry import OpArgs, op

QUANTIZED = {"int8": np.int8, "uint8": np.uint8}


def along_axis(param, rank: int, axis: int | None) -> np.ndarray:
    """A scalar or per-axis vector parameter shaped to broadcast over a rank-``rank`` tensor."""
    param = np.asarray(param)
    if param.ndim == 0 or axis is None:
        return param
    shape = [1] * rank
    shape[axis % rank] = -1
    return param.reshape(shape)


def blockwise(param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Repeat a block-wise parameter (same rank as the data) to the data's full shape."""
    param = np.asarray(param)
    for axis, (size, blocks) in enumerate(zip(shape, param.shape)):
        if blocks != size:
            param = np.repeat(param, size // blocks, axis=axis)
    return param


def lut_to_dense(args: OpArgs, indices: np.ndarray, lut: np.ndarray, vector_axis: int | None) -> np.ndarray:
    """iOS18 palettization: per-block tables ``lut[*blocks, palette, vector]``."""
    rank = indices.ndim
    palettes, vector = lut.shape[-2:]
    if lut.ndim != rank + 2:
        args.fail(f"has a rank-{lut.ndim} lut for rank-{rank} indices (needs rank {rank + 2})")
    if indices.size and int(indices.max()) >= palettes:
        args.fail(f"has an index {int(indices.max())} beyond its {palettes}-entry table")
    if vector > 1:
        if vector_axis is None:
            args.fail("has vector lut entries but no vector_axis")
        vector_axis %= rank
        indices = np.swapaxes(indices, -1, vector_axis)
        lut = np.swapaxes(lut, -3, vector_axis)
    blocks = lut.shape[:-2]
    if any(size % count for size, count in zip(indices.shape, blocks)):
        args.fail(f"has {list(blocks)} tables that do not tile indices {list(indices.shape)}")
    table = np.zeros(indices.shape, np.int64)  # which table each element uses
    for axis, (size, count) in enumerate(zip(indices.shape, blocks)):
        position = np.arange(size) // (size // count)
        table = table * count + position.reshape([-1 if a == axis else 1 for a in range(rank)])
    picked = lut.reshape(-1, palettes, vector)[table, indices.astype(np.int64)]  # [*indices.shape, vector]
    out = picked.reshape(*indices.shape[:-1], indices.shape[-1] * vector)
    return np.swapaxes(out, -1, vector_axis) if vector > 1 else out


def sparse_to_dense(nonzero: np.ndarray, mask: np.ndarray) -> np.ndarray:
    dense = np.zeros(mask.shape, dtype=np.asarray(nonzero).dtype)
    dense[mask != 0] = np.asarray(nonzero).reshape(-1)
    return dense


def shift_scale(data: np.ndarray, scale: np.ndarray, offset) -> np.ndarray:
    values = np.asarray(data, np.float32)
    if offset is not None:
        values = values - blockwise(np.asarray(offset, np.float32), values.shape)
    return values * blockwise(np.asarray(scale, np.float32), values.shape)


@op("constexpr_affine_dequantize", since=16)
def constexpr_affine_dequantize(args: OpArgs) -> np.ndarray:
    data = np.asarray(args["quantized_data"])
    axis = args.axis("axis", data.ndim, 0)
    zero_point = along_axis(np.asarray(args["zero_point"], np.float32), data.ndim, axis)
    scale = along_axis(np.asarray(args["scale"], np.float32), data.ndim, axis)
    return scale * (data.astype(np.float32) - zero_point)


@op("constexpr_cast", since=16)
def constexpr_cast(args: OpArgs) -> np.ndarray:
    args.choice("output_dtype", ("fp32",))
    return np.asarray(args["source_val"], np.float32)


@op("constexpr_lut_to_dense", since=16, until=17)
def constexpr_lut_to_dense_ios16(args: OpArgs) -> np.ndarray:
    from edgevit.runtime.backends.coreml_reference.blob import unpack_bits

    lut = np.asarray(args["lut"]).reshape(-1)
    bits = int(np.log2(lut.size))
    if lut.size not in (2, 4, 16, 64, 256):
        args.fail(f"has a {lut.size}-entry table; MIL allows 2, 4, 16, 64 or 256")
    shape = args.ints("shape")
    count = int(np.prod(shape))
    indices = unpack_bits(np.asarray(args["indices"], np.uint8), bits, count) if bits < 8 else \
        np.asarray(args["indices"], np.uint8)[:count]
    return lut[indices.astype(np.int64)].reshape(shape)


@op("constexpr_lut_to_dense", since=18)
def constexpr_lut_to_dense(args: OpArgs) -> np.ndarray:
    vector_axis = args.int("vector_axis") if args.get("vector_axis") is not None else None
    return lut_to_dense(args, np.asarray(args["indices"]), np.asarray(args["lut"]), vector_axis)


@op("constexpr_sparse_to_dense", since=16, until=17)
def constexpr_sparse_to_dense_ios16(args: OpArgs) -> np.ndarray:
    from edgevit.runtime.backends.coreml_reference.blob import unpack_bits

    shape = args.ints("shape")
    mask = unpack_bits(np.asarray(args["mask"], np.uint8), 1, int(np.prod(shape))).reshape(shape)
    return sparse_to_dense(args["nonzero_data"], mask)


@op("constexpr_sparse_to_dense", since=18)
def constexpr_sparse_to_dense(args: OpArgs) -> np.ndarray:
    return sparse_to_dense(args["nonzero_data"], np.asarray(args["mask"]))


@op("constexpr_blockwise_shift_scale", since=18)
def constexpr_blockwise_shift_scale(args: OpArgs) -> np.ndarray:
    data, scale = np.asarray(args["data"]), np.asarray(args["scale"])
    if scale.ndim != data.ndim or any(d % s for d, s in zip(data.shape, scale.shape)):
        args.fail(f"has scale {list(scale.shape)} that does not tile data {list(data.shape)}")
    return shift_scale(data, scale, args.get("offset"))


@op("constexpr_lut_to_sparse", since=18)
def constexpr_lut_to_sparse(args: OpArgs) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(args["indices_mask"])
    lut = np.asarray(args["lut"])
    vector_axis = args.int("vector_axis") if args.get("vector_axis") is not None else None
    dense = lut_to_dense(args, sparse_to_dense(args["indices_nonzero_data"], mask), lut, vector_axis)
    if vector_axis is not None and lut.shape[-1] > 1:
        mask = np.repeat(mask, lut.shape[-1], axis=vector_axis)
    return mask, dense[mask != 0].reshape(-1)


@op("constexpr_sparse_blockwise_shift_scale", since=18)
def constexpr_sparse_blockwise_shift_scale(args: OpArgs) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(args["data_mask"])
    dense = shift_scale(sparse_to_dense(args["nonzero_data"], mask), np.asarray(args["scale"]), args.get("offset"))
    return mask, dense[mask != 0].reshape(-1)


@op("quantize", since=17)
def quantize(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["input"], np.float32)
    name = args.choice("output_dtype", tuple(QUANTIZED))
    axis = args.int("axis") if args.get("axis") is not None else None
    scale = along_axis(np.asarray(args["scale"], np.float32), x.ndim, axis)
    values = np.round(x / scale)
    zero_point = args.get("zero_point")
    if zero_point is not None:
        values = values + along_axis(np.asarray(zero_point, np.float32), x.ndim, axis)
    info = np.iinfo(QUANTIZED[name])
    return np.clip(values, info.min, info.max).astype(QUANTIZED[name])


@op("dequantize", since=17)
def dequantize(args: OpArgs) -> np.ndarray:
    x = np.asarray(args["input"])
    axis = args.int("axis") if args.get("axis") is not None else None
    values = x.astype(np.float32)
    zero_point = args.get("zero_point")
    if zero_point is not None:
        values = values - along_axis(np.asarray(zero_point, np.float32), x.ndim, axis)
    return values * along_axis(np.asarray(args["scale"], np.float32), x.ndim, axis)
