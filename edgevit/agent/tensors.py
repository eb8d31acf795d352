"""Tensors on the wire: Open Inference Protocol datatypes and contents to numpy and back, checked.

A request's tensors are untrusted: every name, datatype, shape and byte count is checked against
the model's input specs (from its manifest and backend) before a byte is interpreted, and a
mismatch is an :class:`~edgevit.errors.AgentError` with code ``INVALID_ARGUMENT`` that says what
was sent and what the model takes. Nothing is cast: a float32 input given FP16 data is refused,
as ``edgevit.runtime`` refuses it.

Contents arrive either raw (``raw_input_contents``: one little-endian, row-major bytes blob per
input, in the order of ``inputs``; what tritonclient sends) or typed (``contents.fp32_contents``
and friends); FP16 has no typed field and must be raw (the OIP spec says so). Outputs are always
returned raw.

The messages are the generated ones of ``tritonclient.grpc.service_pb2``; this module only reads
and fills their fields, so it imports neither grpc nor the stubs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgevit.artifact import TensorSpec
from edgevit.errors import AgentError

#: OIP datatype -> numpy dtype name (BYTES and BF16 are not supported by any edgevit backend)
DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
             "FP32": "float32", "FP64": "float64"}
TO_DATATYPE = {dtype: datatype for datatype, dtype in DATATYPES.items()}
#: the typed ``InferTensorContents`` field of each datatype (FP16 has none: raw only)
TYPED_FIELDS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
                "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
                "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
                "FP64": "fp64_contents"}
MAX_RANK = 8


def datatype_of(dtype: str) -> str:
    """The OIP datatype of a numpy dtype name (``float32`` -> ``FP32``)."""
    if dtype not in TO_DATATYPE:
        raise AgentError("INVALID_ARGUMENT", f"dtype {dtype!r} has no Open Inference Protocol datatype")
    return TO_DATATYPE[dtype]


def metadata_shape(shape: tuple[int | None, ...]) -> list[int]:
    """A spec's shape as OIP metadata writes it: -1 for a dynamic dimension."""
    return [-1 if dim is None else int(dim) for dim in shape]


def decode_inputs(request: Any, specs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """The input arrays of a ``ModelInferRequest``, checked against the model's ``specs``.

    Raises:
        AgentError: ``INVALID_ARGUMENT`` naming the input and what was wrong, with what is allowed.
    """
    by_name = {spec.name: spec for spec in specs}
    sent = [tensor.name for tensor in request.inputs]
    expected = ", ".join(_describe(spec) for spec in specs)
    unknown = [name for name in sent if name not in by_name]
    missing = [name for name in by_name if name not in sent]
    if unknown or missing or len(set(sent)) != len(sent):
        parts = ([f"unknown input(s) {', '.join(map(repr, unknown[:4]))}"] if unknown else []) + (
            [f"missing input(s) {', '.join(map(repr, missing))}"] if missing else []) + (
            ["an input named twice"] if len(set(sent)) != len(sent) else [])
        raise AgentError("INVALID_ARGUMENT", f"{'; '.join(parts)}; the model takes {expected}")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise AgentError("INVALID_ARGUMENT", f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} "
                                             "inputs; send one bytes blob per input, in the order of inputs")
    arrays = {}
    for index, tensor in enumerate(request.inputs):
        spec = by_name[tensor.name]
        shape = _checked_shape(tensor, spec)
        dtype = _checked_dtype(tensor, spec)
        count = math.prod(shape)  # Python ints: a huge dynamic dimension cannot overflow
        if raw:
            if tensor.HasField("contents"):
                raise AgentError("INVALID_ARGUMENT", f"input {tensor.name!r} sets contents although the request "
                                                     "uses raw_input_contents; use one or the other")
            arrays[tensor.name] = _from_raw(raw[index], tensor.name, dtype, shape, count)
        else:
            arrays[tensor.name] = _from_typed(tensor, dtype, shape, count)
    return arrays


def encode_outputs(response: Any, outputs: dict[str, np.ndarray], requested: list[str]) -> None:
    """Fill ``response.outputs`` and ``raw_output_contents`` (little-endian, row-major) with
    ``outputs``, only those named in ``requested`` when it is not empty."""
    names = requested or list(outputs)
    unknown = [name for name in names if name not in outputs]
    if unknown:
        raise AgentError("INVALID_ARGUMENT", f"unknown output(s) {', '.join(map(repr, unknown[:4]))}; the model "
                                             f"gives {', '.join(map(repr, outputs))}")
    for name in names:
        array = np.asarray(outputs[name])
        entry = response.outputs.add()
        entry.name = name
        entry.datatype = datatype_of(array.dtype.name)
        entry.shape.extend(array.shape)
        response.raw_output_contents.append(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())


def _checked_shape(tensor: Any, spec: TensorSpec) -> tuple[int, ...]:
    shape = tuple(int(dim) for dim in tensor.shape[:MAX_RANK + 1])
    fits = len(shape) == len(spec.shape) and all(
        dim >= 1 and (want is None or dim == want) for dim, want in zip(shape, spec.shape))
    if not fits or len(shape) > MAX_RANK:
        raise AgentError("INVALID_ARGUMENT", f"input {tensor.name!r} has shape {list(shape)[:MAX_RANK + 1]}; the "
                                             f"model takes {_describe(spec)} (-1: any size >= 1)")
    return shape


def _checked_dtype(tensor: Any, spec: TensorSpec) -> np.dtype:
    want = datatype_of(spec.dtype)
    if tensor.datatype != want:
        got = tensor.datatype if tensor.datatype in DATATYPES else repr(tensor.datatype[:32])
        raise AgentError("INVALID_ARGUMENT", f"input {tensor.name!r} has datatype {got}; the model takes {want} "
                                             "(nothing is converted: send the model's datatype)")
    return np.dtype(spec.dtype).newbyteorder("<")


def _from_raw(blob: bytes, name: str, dtype: np.dtype, shape: tuple[int, ...], count: int) -> np.ndarray:
    expected = count * dtype.itemsize
    if len(blob) != expected:
        raise AgentError("INVALID_ARGUMENT", f"input {name!r} has {len(blob)} bytes of raw contents; shape "
                                             f"{list(shape)} of {TO_DATATYPE[dtype.name]} needs {expected}")
    array = np.frombuffer(blob, dtype=dtype, count=count).reshape(shape)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _from_typed(tensor: Any, dtype: np.dtype, shape: tuple[int, ...], count: int) -> np.ndarray:
    field = TYPED_FIELDS.get(tensor.datatype)
    if field is None:
        raise AgentError("INVALID_ARGUMENT", f"input {tensor.name!r}: {tensor.datatype} has no typed contents "
                                             "field; send it in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise AgentError("INVALID_ARGUMENT", f"input {tensor.name!r} has {len(values)} values in contents.{field}; "
                                             f"shape {list(shape)} needs {count}")
    native = dtype.newbyteorder("=")
    if native.kind in "iu":
        info = np.iinfo(native)
        wide = np.asarray(values, np.int64 if native.kind == "i" or native.itemsize < 8 else np.uint64)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise AgentError("INVALID_ARGUMENT", f"input {tensor.name!r} has values outside the {tensor.datatype} "
                                                 f"range [{info.min}, {info.max}]")
        return wide.astype(native).reshape(shape)
    return np.asarray(values, native).reshape(shape)


def _describe(spec: TensorSpec) -> str:
    return f"{spec.name!r} {datatype_of(spec.dtype)}{metadata_shape(spec.shape)}"


def fill_request(request: Any, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> Any:
    """Put ``feeds`` into a ``ModelInferRequest`` as raw little-endian contents (what a client sends);
    ``outputs`` names the outputs wanted (None: all)."""
    for name, array in feeds.items():
        array = np.asarray(array)
        entry = request.inputs.add(name=name, datatype=datatype_of(array.dtype.name))
        entry.shape.extend(array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
    for output in outputs or ():
        request.outputs.add(name=output)
    return request


def read_response(response: Any) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The outputs of a ``ModelInferResponse`` (raw contents) and its int64 parameters (an edgevit
    agent's timings: ``queue_ns``, ``compute_ns``...).

    Raises:
        AgentError: ``DATA_LOSS`` when an output's bytes do not match its shape and datatype.
    """
    outputs = {}
    for index, tensor in enumerate(response.outputs):
        if tensor.datatype not in DATATYPES or index >= len(response.raw_output_contents):
            raise AgentError("DATA_LOSS", f"output {tensor.name!r} came back as {tensor.datatype!r} without raw "
                                          "contents; edgevit reads raw outputs of numeric datatypes")
        dtype = np.dtype(DATATYPES[tensor.datatype]).newbyteorder("<")
        blob = response.raw_output_contents[index]
        shape = tuple(int(d) for d in tensor.shape)
        if len(blob) != math.prod(shape) * dtype.itemsize:
            raise AgentError("DATA_LOSS", f"output {tensor.name!r} has {len(blob)} bytes for shape {list(shape)} "
                                          f"of {tensor.datatype}")
        outputs[tensor.name] = np.frombuffer(blob, dtype).reshape(shape)
    timings = {key: int(value.int64_param) for key, value in response.parameters.items()
               if value.WhichOneof("parameter_choice") == "int64_param"}
    return outputs, timings
