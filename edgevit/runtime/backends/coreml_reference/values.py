"""MIL value types and values (``MIL.proto``) as numpy dtypes, shapes and arrays.

Computation dtypes: every float tensor is computed in float32 (fp16 values are exactly
representable in float32); the program's declared type decides how a result is *stored*
(see :mod:`.program`). Sub-byte integer types are held unpacked, one per byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevit.errors import ArtifactError
from edgevit.runtime.backends.coreml_reference.blob import WeightFile, unpack_bits

#: MIL data type name -> numpy dtype the executor holds it in
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "FLOAT16": np.dtype(np.float16),
    "FLOAT32": np.dtype(np.float32),
    "FLOAT64": np.dtype(np.float64),
    "BFLOAT16": np.dtype(np.float32),
    "INT4": np.dtype(np.int8),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT1": np.dtype(np.uint8),
    "UINT2": np.dtype(np.uint8),
    "UINT3": np.dtype(np.uint8),
    "UINT4": np.dtype(np.uint8),
    "UINT6": np.dtype(np.uint8),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "STRING": np.dtype(object),
}
SUB_BYTE_BITS = {"INT4": 4, "UINT1": 1, "UINT2": 2, "UINT3": 3, "UINT4": 4, "UINT6": 6}
#: MIL dtype strings used by ``cast`` / ``quantize`` attributes -> numpy
DTYPE_NAMES = {
    "fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
    "bool": bool,
}


@dataclass(frozen=True)
class TensorType:
    """A MIL tensor type: element type name (``"FLOAT16"``) and shape (None: unknown dim)."""

    dtype: str
    shape: tuple[int | None, ...] | None  # None: unknown rank

    @property
    def numpy_dtype(self) -> np.dtype:
        return NUMPY_DTYPES[self.dtype]

    def describe(self) -> str:
        dims = "*" if self.shape is None else ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype.lower()}[{dims}]"


def dtype_name(proto_enum: Any, code: int) -> str:
    try:
        return proto_enum.Name(code)
    except ValueError as exc:
        raise ArtifactError(f"unknown MIL data type code {code}; the model is corrupt or too new") from exc


def tensor_type(value_type: Any, data_type_enum: Any) -> TensorType | None:
    """The :class:`TensorType` of a ``ValueType``; None for lists, tuples, dicts and states."""
    if value_type.WhichOneof("type") != "tensorType":
        return None
    tensor = value_type.tensorType
    name = dtype_name(data_type_enum, tensor.dataType)
    if tensor.rank < 0 or any(_variadic(d) for d in tensor.dimensions):
        return TensorType(name, None)  # a variadic dim stands for any number of dims: the rank is unknown
    shape = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in tensor.dimensions)
    if not shape and tensor.rank > 0:
        shape = (None,) * tensor.rank
    elif len(shape) != tensor.rank:
        raise ArtifactError(f"a tensor type of rank {tensor.rank} lists {len(shape)} dimensions; the model is corrupt")
    return TensorType(name, shape)


def _variadic(dimension: Any) -> bool:
    return dimension.WhichOneof("dimension") == "unknown" and dimension.unknown.variadic


def decode_value(value: Any, data_type_enum: Any, weights: Callable[[str], WeightFile], where: str) -> Any:
    """A MIL ``Value`` (immediate, or in the weight file ``weights(file_name)`` opens) as numpy."""
    kind = value.WhichOneof("value")
    if kind == "blobFileValue":
        ttype = tensor_type(value.type, data_type_enum)
        if ttype is None or ttype.shape is None or None in ttype.shape:
            raise ArtifactError(f"{where}: a weight-file value must have a fixed tensor type")
        blob = value.blobFileValue
        return weights(blob.fileName).read(int(blob.offset), ttype.dtype, ttype.shape)
    if kind != "immediateValue":
        raise ArtifactError(f"{where}: a value with neither an immediate value nor a weight-file reference")
    immediate = value.immediateValue
    which = immediate.WhichOneof("value")
    if which == "tensor":
        return _decode_tensor(immediate.tensor, tensor_type(value.type, data_type_enum), where)
    if which in ("list", "tuple"):
        items = immediate.list.values if which == "list" else immediate.tuple.values
        return [decode_value(item, data_type_enum, weights, where) for item in items]
    raise ArtifactError(f"{where}: {which or 'empty'} values are not supported by the reference executor")


def _decode_tensor(tensor: Any, ttype: TensorType | None, where: str) -> Any:
    if ttype is None or ttype.shape is None or None in ttype.shape:
        raise ArtifactError(f"{where}: an immediate tensor value must have a fixed tensor type")
    shape = ttype.shape
    count = int(np.prod(shape, dtype=np.int64))
    field = tensor.WhichOneof("value")
    if ttype.dtype == "STRING":
        strings = [s if isinstance(s, str) else s.decode() for s in tensor.strings.values]
        return strings[0] if shape == () and strings else np.array(strings, dtype=object).reshape(shape)
    dtype = ttype.numpy_dtype
    if count == 0:
        return np.zeros(shape, dtype)
    if field == "bytes":
        raw = np.frombuffer(tensor.bytes.values, dtype=np.uint8)
        if ttype.dtype in SUB_BYTE_BITS:
            array = unpack_bits(raw, SUB_BYTE_BITS[ttype.dtype], count, signed=ttype.dtype == "INT4")
        else:
            array = raw.view(dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype)
    elif field in ("floats", "doubles", "ints", "longInts", "bools"):
        array = np.asarray(getattr(tensor, field).values)
    else:
        raise ArtifactError(f"{where}: an immediate {ttype.describe()} value without data")
    if array.size != count:
        raise ArtifactError(f"{where}: an immediate value has {array.size} elements, its type {ttype.describe()} "
                            f"needs {count}")
    return np.array(array, dtype=dtype).reshape(shape)
