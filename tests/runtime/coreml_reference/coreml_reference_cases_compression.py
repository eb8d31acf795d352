"""Op cases: compressed weights (constexpr_*) and activation quantize / dequantize.

Each compressed constant is added to a runtime input, so the case checks the decompressed
values end to end. Sizes are large enough that coremltools stores the data in the weight
file (sub-byte types packed there), not inline in the spec. Expectations decompress with
plain numpy from the unpacked values.
"""

from __future__ import annotations

import numpy as np
from coreml_reference_cases import OpCase, rand


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(100 + seed)


def _sub_byte(values: np.ndarray, kind: str) -> np.ndarray:
    from coremltools.converters.mil.mil import types

    return values.astype(getattr(types, f"np_{kind}_dtype"))


def _pack_lsb_first(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ``bits``-wide values into bytes, least significant bit first (the test's own packer)."""
    bit_array = ((values.reshape(-1, 1).astype(np.uint16) >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bit_array, bitorder="little")


def _plus(make):
    """A builder adding the decompressed constant ``make(mb)`` to the input."""
    return lambda mb, x: mb.add(x=x, y=make(mb))


# affine int8 per output channel (iOS16)
Q8 = _rng(0).integers(-128, 128, (64, 16)).astype(np.int8)
ZP8 = _rng(1).integers(-5, 5, 64).astype(np.int8)
SCALE64 = rand(64, low=0.01, high=0.1, seed=2)
QU8 = _rng(3).integers(0, 256, (64, 16)).astype(np.uint8)
# palettes
LUT4 = np.array([-1.5, -0.25, 0.5, 2.0], np.float32)
IDX2 = _rng(4).integers(0, 4, (48, 40)).astype(np.uint8)
MASK = _rng(5).integers(0, 2, (48, 40)).astype(np.uint8)
NONZERO = rand(int(MASK.sum()), seed=6)
LUT_GROUPS = rand(2, 1, 4, 1, seed=7)  # two tables along axis 0
DATA4 = _rng(8).integers(-8, 8, (48, 40)).astype(np.int8)
SCALE_BLOCKS = rand(3, 5, low=0.1, high=1.0, seed=9)  # blocks of 16 x 8
OFFSET_BLOCKS = _rng(10).integers(-8, 8, (3, 5)).astype(np.int8)
XW = rand(48, 40, seed=11)


def _blocks(param: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(np.asarray(param, np.float64), 16, axis=0), 8, axis=1)


def _grouped_lut(indices: np.ndarray) -> np.ndarray:
    table = np.where(np.arange(48)[:, None] < 24, 0, 1)  # first 24 rows use table 0
    return LUT_GROUPS.reshape(2, 4)[table, indices].astype(np.float64)


def _vector_lut():
    """MIL's documented vector-palettization example (vector_axis=1)."""
    indices = np.array([[[0, 0], [1, 0]], [[1, 1], [0, 0]]], np.uint8)
    a, b = [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]
    lut = np.array([a, b], np.float32).reshape(1, 1, 1, 2, 3)
    out = np.zeros((2, 6, 2))
    for i in range(2):
        for j in range(2):
            for k in range(2):
                out[i, 3 * j:3 * j + 3, k] = [a, b][indices[i, j, k]]
    return indices, lut, out


V_IDX, V_LUT, V_OUT = _vector_lut()

CASES = [
    OpCase("constexpr_affine_dequantize", "int8-per-channel", _plus(lambda mb: mb.constexpr_affine_dequantize(
        quantized_data=Q8, zero_point=ZP8, scale=SCALE64, axis=0)), [rand(64, 16)],
           lambda x: x + SCALE64[:, None].astype(np.float64) * (Q8.astype(np.float64) - ZP8[:, None])),
    OpCase("constexpr_affine_dequantize", "uint8-scalar-zero-point", _plus(lambda mb: mb.constexpr_affine_dequantize(
        quantized_data=QU8, zero_point=np.uint8(128), scale=np.float32(0.05), axis=1)), [rand(64, 16)],
           lambda x: x + np.float32(0.05) * (QU8.astype(np.float64) - 128)),
    OpCase("constexpr_cast", "fp16-to-fp32", _plus(lambda mb: mb.constexpr_cast(
        source_val=rand(32, 16, seed=12).astype(np.float16), output_dtype="fp32")), [rand(32, 16)],
           lambda x: x + rand(32, 16, seed=12).astype(np.float16)),
    OpCase("constexpr_lut_to_dense", "2bit-ios16", _plus(lambda mb: mb.constexpr_lut_to_dense(
        indices=_pack_lsb_first(IDX2, 2), lut=LUT4, shape=np.array([48, 40], np.uint32))), [XW],
           lambda x: x + LUT4[IDX2]),
    OpCase("constexpr_lut_to_dense", "grouped-uint2-ios18", _plus(lambda mb: mb.constexpr_lut_to_dense(
        indices=_sub_byte(IDX2, "uint2"), lut=LUT_GROUPS)), [XW], lambda x: x + _grouped_lut(IDX2), opset=18),
    OpCase("constexpr_lut_to_dense", "documented-vector-ios18", _plus(lambda mb: mb.constexpr_lut_to_dense(
        indices=_sub_byte(V_IDX, "uint1"), lut=V_LUT, vector_axis=1)), [rand(2, 6, 2)], lambda x: x + V_OUT,
           opset=18),
    OpCase("constexpr_sparse_to_dense", "bitmask-ios16", _plus(lambda mb: mb.constexpr_sparse_to_dense(
        nonzero_data=NONZERO, mask=_pack_lsb_first(MASK, 1), shape=np.array([48, 40], np.uint32))), [XW],
           lambda x: x + _dense(NONZERO, MASK)),
    OpCase("constexpr_sparse_to_dense", "uint1-mask-ios18", _plus(lambda mb: mb.constexpr_sparse_to_dense(
        nonzero_data=NONZERO, mask=_sub_byte(MASK, "uint1"))), [XW], lambda x: x + _dense(NONZERO, MASK), opset=18),
    OpCase("constexpr_blockwise_shift_scale", "int4-blocks-offset", _plus(lambda mb: mb.constexpr_blockwise_shift_scale(
        data=_sub_byte(DATA4, "int4"), scale=SCALE_BLOCKS, offset=_sub_byte(OFFSET_BLOCKS, "int4"))), [XW],
           lambda x: x + _blocks(SCALE_BLOCKS) * (DATA4 - _blocks(OFFSET_BLOCKS)), opset=18),
    OpCase("constexpr_blockwise_shift_scale", "int8-per-row-no-offset", _plus(
        lambda mb: mb.constexpr_blockwise_shift_scale(data=Q8, scale=SCALE64.reshape(64, 1))), [rand(64, 16)],
           lambda x: x + SCALE64[:, None].astype(np.float64) * Q8, opset=18),
    OpCase("constexpr_lut_to_sparse", "then-sparse-to-dense", _plus(lambda mb: _densify(mb, mb.constexpr_lut_to_sparse(
        indices_mask=_sub_byte(MASK, "uint1"), indices_nonzero_data=_sub_byte(IDX2[MASK == 1], "uint2"),
        lut=LUT4.reshape(1, 1, 4, 1)))), [XW],
           lambda x: x + np.where(MASK == 1, LUT4[np.where(MASK == 1, IDX2, 0)], 0), opset=18,
           also=("constexpr_sparse_to_dense",)),
    OpCase("constexpr_sparse_blockwise_shift_scale", "then-sparse-to-dense", _plus(
        lambda mb: _densify(mb, mb.constexpr_sparse_blockwise_shift_scale(
            data_mask=_sub_byte(MASK, "uint1"), nonzero_data=DATA4[MASK == 1], scale=SCALE_BLOCKS,
            offset=OFFSET_BLOCKS))), [XW],
           lambda x: x + np.where(MASK == 1, _blocks(SCALE_BLOCKS) * (DATA4 - _blocks(OFFSET_BLOCKS)), 0), opset=18,
           also=("constexpr_sparse_to_dense",)),
    OpCase("quantize", "int8-per-channel-then-dequantize", lambda mb, x: mb.dequantize(
        input=mb.quantize(input=x, scale=SCALE64[:3] * 10, zero_point=ZP8[:3], axis=1, output_dtype="int8"),
        scale=SCALE64[:3] * 10, zero_point=ZP8[:3], axis=1), [rand(2, 3, 4, low=-20, high=20)],
           lambda x: _fake_quant(x, (SCALE64[:3] * 10).reshape(1, 3, 1), ZP8[:3].reshape(1, 3, 1), -128, 127),
           opset=17, also=("dequantize",)),
    OpCase("dequantize", "uint8-scalar", _plus(lambda mb: mb.dequantize(
        input=QU8[:4, :5], scale=np.float32(0.5), zero_point=np.uint8(100))), [rand(4, 5)],
           lambda x: x + 0.5 * (QU8[:4, :5].astype(np.float64) - 100), opset=17),
]


def _densify(mb, outputs):
    """Expand the (mask, nonzero_data) outputs of a sparse constexpr op to a dense constant."""
    mask, nonzero = outputs
    return mb.constexpr_sparse_to_dense(nonzero_data=nonzero, mask=mask)


def _dense(nonzero: np.ndarray, mask: np.ndarray) -> np.ndarray:
    dense = np.zeros(mask.shape)
    dense[mask == 1] = nonzero
    return dense


def _fake_quant(x, scale, zero_point, low, high):
    q = np.clip(np.round(x / scale.astype(np.float64)) + zero_point, low, high)
    return (q - zero_point) * scale.astype(np.float64)
