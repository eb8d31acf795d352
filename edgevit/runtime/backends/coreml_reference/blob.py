"""Apple's MIL blob storage file (``weights/weight.bin``), parsed with numpy.

Layout (little-endian; facts from coremltools' ``MILBlob/Blob/StorageFormat.hpp``)::

    storage_header (64 bytes)   uint32 count, uint32 version (= 2), 7 x uint64 reserved
    then, for each blob, 64-byte aligned:
    blob_metadata  (64 bytes)   uint32 sentinel (0xDEADBEEF), uint32 data type,
                                uint64 size in bytes, uint64 data offset,
                                uint64 padding size in bits (sub-byte types), 4 x uint64 reserved
    data                        at the offset the metadata names

A ``const`` in the program points at a blob by the offset of its *metadata*. Sub-byte
types (int4, uint1..uint6) are packed one after another starting at the least significant
bit of each byte; ``padding_size_in_bits`` counts the unused bits at the end.

Example:
    >>> weights = WeightFile("model.mlpackage/Data/com.apple.CoreML/weights/weight.bin")
    >>> w = weights.read(offset=64, dtype="FLOAT32", shape=(64, 3, 16, 16))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevit.errors import ArtifactError

HEADER = np.dtype([("count", "<u4"), ("version", "<u4"), ("reserved", "<u8", (7,))])
METADATA = np.dtype(
    [("sentinel", "<u4"), ("dtype", "<u4"), ("size", "<u8"), ("offset", "<u8"), ("padding_bits", "<u8"),
     ("reserved", "<u8", (4,))]
)
SENTINEL = 0xDEADBEEF
VERSION = 2

#: blob data type code -> (MIL data type name, numpy storage dtype, bits per element)
BLOB_TYPES: dict[int, tuple[str, str, int]] = {
    1: ("FLOAT16", "<f2", 16),
    2: ("FLOAT32", "<f4", 32),
    3: ("UINT8", "u1", 8),
    4: ("INT8", "i1", 8),
    5: ("BFLOAT16", "<u2", 16),
    6: ("INT16", "<i2", 16),
    7: ("UINT16", "<u2", 16),
    8: ("INT4", "i1", 4),
    9: ("UINT1", "u1", 1),
    10: ("UINT2", "u1", 2),
    11: ("UINT4", "u1", 4),
    12: ("UINT3", "u1", 3),
    13: ("UINT6", "u1", 6),
    14: ("INT32", "<i4", 32),
    15: ("UINT32", "<u4", 32),
}


class WeightFile:
    """One blob storage file, memory-mapped and checked blob by blob."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"the weight file {str(self.path)!r} is missing; the .mlpackage is incomplete")
        self.size = self.path.stat().st_size
        if self.size < HEADER.itemsize:
            raise ArtifactError(
                f"the weight file {str(self.path)!r} is truncated: {self.size} bytes, shorter than its "
                f"{HEADER.itemsize}-byte header"
            )
        self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
        header = self._data[: HEADER.itemsize].view(HEADER)[0]
        if int(header["version"]) != VERSION:
            raise ArtifactError(
                f"the weight file {str(self.path)!r} has storage version {int(header['version'])}; "
                f"only version {VERSION} (Core ML iOS15 and later) is understood, or the file is corrupt"
            )
        self.count = int(header["count"])

    def read(self, offset: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        """The blob whose metadata sits at ``offset``, as an array of MIL type ``dtype``.

        Sub-byte types come back unpacked, one element per byte (int8 / uint8).
        """
        meta = self._metadata(offset)
        code = int(meta["dtype"])
        if code not in BLOB_TYPES:
            raise ArtifactError(f"{self._where(offset)} has unknown data type code {code}; the file is corrupt "
                                "or newer than this reader")
        stored, storage, bits = BLOB_TYPES[code]
        if stored != dtype:
            raise ArtifactError(f"{self._where(offset)} holds {stored} data but the program declares {dtype}")
        start, size = int(meta["offset"]), int(meta["size"])
        if start % 64 or start < offset + METADATA.itemsize or start + size > self.size:
            raise ArtifactError(
                f"{self._where(offset)} points at bytes {start}..{start + size} but the file has {self.size} "
                "bytes; the weight file is truncated or corrupt"
            )
        count = int(np.prod(shape, dtype=np.int64))
        expected_bits = count * bits
        if size != -(-expected_bits // 8):
            raise ArtifactError(
                f"{self._where(offset)} has {size} bytes but {dtype}{list(shape)} needs {expected_bits} bits; "
                "the program and the weight file do not match"
            )
        raw = self._data[start : start + size]
        if bits < 8:
            return unpack_bits(raw, bits, count, signed=dtype == "INT4").reshape(shape)
        array = np.array(raw.view(storage).reshape(shape))  # a copy: the file may change after loading
        if dtype == "BFLOAT16":
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array

    def _metadata(self, offset: int) -> np.void:
        if offset < HEADER.itemsize or offset + METADATA.itemsize > self.size:
            raise ArtifactError(
                f"a weight points at byte {offset} of {str(self.path)!r}, which has {self.size} bytes; "
                "the weight file is truncated or does not belong to this model"
            )
        meta = self._data[offset : offset + METADATA.itemsize].view(METADATA)[0]
        if int(meta["sentinel"]) != SENTINEL:
            raise ArtifactError(f"{self._where(offset)} has no valid blob header (bad sentinel); the file is corrupt")
        return meta

    def _where(self, offset: int) -> str:
        return f"the blob at byte {offset} of {str(self.path)!r}"

    def close(self) -> None:
        self._data = None


def unpack_bits(packed: np.ndarray, bits: int, count: int, signed: bool = False) -> np.ndarray:
    """Unpack ``count`` ``bits``-wide integers stored LSB-first in the bytes ``packed``."""
    flat = np.unpackbits(np.ascontiguousarray(packed, dtype=np.uint8), bitorder="little")
    if flat.size < count * bits:
        raise ArtifactError(f"packed data holds {flat.size} bits, fewer than {count} x {bits}-bit values")
    fields = flat[: count * bits].reshape(count, bits).astype(np.uint8)
    values = (fields << np.arange(bits, dtype=np.uint8)).sum(axis=1, dtype=np.uint8)
    if signed:
        values = values.astype(np.int8)
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values).astype(np.int8)
    return values
