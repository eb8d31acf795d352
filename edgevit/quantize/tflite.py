"""TFLite int8 and w8 with ai-edge-quantizer, on the converted float ``model.tflite``.

* ``int8``: static range quantization (``add_static_config``): weights int8 symmetric per
  output channel, activations int8 with ranges from our calibration (min/max, percentile or
  entropy over the float model's tensors, read with the interpreter's
  ``experimental_preserve_all_tensors``), so XNNPACK's QS8 kernels run the convolutions,
  fully-connected layers, adds and multiplies. The model keeps float32 input and output
  (ai-edge-quantizer inserts the QUANTIZE / DEQUANTIZE ops), so it is fed like the fp32
  artifact.
* ``w8``: weight-only (``add_weight_only_config``): int8 weights with a DEQUANTIZE op in
  front of each float convolution or fully-connected layer; smaller, not faster.

Ops are selected one by one: each op's ai-edge-quantizer *scope* (its output tensor names
joined by ``;``) goes into an anchored regular expression, so a candidate file quantizes
exactly the ops the search chose. litert-torch names tensors after the module path
(``.../edgevit.models.vit.Block_3/edgevit.models.vit.Attention_attn/...``), which gives
each op its module and model block.

Which int8 ops XNNPACK actually takes was measured with the interpreter's delegation
report (:meth:`TfliteQuantizer.describe_file`): with ai-edge-litert 2.x, int8
FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, ADD and MUL are delegated; int8 BATCH_MATMUL
(attention), SOFTMAX, GELU and the LayerNorm arithmetic (SQUARED_DIFFERENCE, RSQRT, SUB)
are not, and would run on the reference kernels, so those kinds stay float.

XNNPACK also refuses single int8 ops whose quantization it cannot represent: an ADD whose
input scale is below 2**-10 of its output scale (measured on random-init EfficientFormerV2 and
TinyViT, where zero-initialised BatchNorm or 1e-5 layer scales make a residual branch's range
tiny: 18 and 2 ADDs fell to the reference kernels and split the delegated graph). Every int8
file is checked with the delegation report as it is built; refused ops are kept in float (the
float op with its QUANTIZE / DEQUANTIZE is delegated) and listed in the report.

The finished int8 file drops the tensor names litert-torch writes (module paths: 10% of an
int8 CAS-ViT XS file); the model's input and output tensors keep theirs.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgevit._files import write_bytes
from edgevit.errors import ConversionError, require
from edgevit.formats.tflite import read_ops
from edgevit.quantize.base import RUN_THREADS, TargetQuantizer, block_of, quiet
from edgevit.quantize.calibration import RangeCollector
from edgevit.quantize.recipe import KindRules, Recipe, Unit, mark_positions

WEIGHTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
LAYERNORM_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SUB", "ADD", "MUL", "DIV")
GELU_OPS = ("MUL", "ADD", "TANH", "DIV", "LOGISTIC")
#: TFLite op -> kind; the arithmetic litert-torch lowers a LayerNorm or GELU module into is
#: recognised by the module class its output tensor is named after (other ops keep their kind)
KIND_RULES = KindRules(
    ops={"FULLY_CONNECTED": "linear", "CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dwconv", "BATCH_MATMUL": "matmul",
         "SOFTMAX": "softmax", "GELU": "gelu", "ADD": "add", "MUL": "mul", "SUB": "other", "MEAN": "other",
         "AVERAGE_POOL_2D": "other", "MAX_POOL_2D": "other", "CONCATENATION": "other", "LOGISTIC": "other",
         "HARD_SWISH": "other", "SQUARED_DIFFERENCE": "other", "RSQRT": "other", "DIV": "other", "TANH": "other",
         "RESIZE_BILINEAR": "other"},
    modules=(("Norm", "layernorm", LAYERNORM_OPS), ("GELU", "gelu", GELU_OPS)),
)


class TfliteQuantizer(TargetQuantizer):
    target = "tflite"
    backend = "litert"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.graph = read_ops(self.float_path)
        self._units = mark_positions(self._classify())
        self._qsvs: dict[str, dict[str, np.ndarray]] | None = None
        #: built file -> {unit id: op type} of the int8 ops XNNPACK refused and the file keeps in float
        self._refused_in: dict[Path, dict[str, str]] = {}

    # -- units ------------------------------------------------------------------------------------

    def _classify(self) -> list[Unit]:
        known = set(self.blocks)
        units = []
        for op in self.graph.main_ops:
            names = self.graph.names(op.outputs)
            inputs = self.graph.names(op.inputs)
            # the model's output tensor is named after the signature: fall back to the op's inputs
            described = max(names, key=len) if names and "/" in max(names, key=len) else max(inputs, key=len, default="")
            scope = module_path(described, known)
            kind = KIND_RULES.kind(op, module=module_class(described))
            if kind is None:
                continue
            units.append(Unit(_scope(names), op.type, kind, scope, block_of(scope, self.blocks),
                              weighted=op.type in WEIGHTED_OPS))
        return units

    def units(self) -> list[Unit]:
        return list(self._units)

    def kinds(self) -> tuple[str, ...]:
        if self.scheme.activation_bits is None:
            return ("conv", "dwconv", "linear")
        return ("conv", "dwconv", "linear", "matmul", "softmax", "layernorm", "gelu", "add", "mul", "other")

    def default_kinds(self) -> tuple[str, ...]:
        if self.scheme.activation_bits is None:
            return ("conv", "dwconv", "linear")
        return ("conv", "dwconv", "linear", "add", "mul")

    def kind_note(self, kind: str) -> str:
        if kind in ("matmul", "softmax", "gelu", "layernorm"):
            return (f"XNNPACK does not take int8 {kind} ops in this LiteRT (measured: they fall back to the "
                    "reference kernels), so int8 would add error and time")
        return "pooling/concat/other int8 ops save little here; kept in float"

    # -- calibration -------------------------------------------------------------------------------

    def calibrate(self, images: np.ndarray, method: str) -> None:
        interpreter_module = require("ai_edge_litert.interpreter", "litert", "TFLite calibration")
        collector = RangeCollector(method)
        tensors = self.graph.tensors
        activations = sorted({i for op in self.graph.main_ops for i in op.outputs} | set(self.graph.inputs))
        with quiet():
            interpreter = interpreter_module.Interpreter(model_path=str(self.float_path), num_threads=RUN_THREADS,
                                                         experimental_preserve_all_tensors=True)
            interpreter.allocate_tensors()
        input_detail = interpreter.get_input_details()[0]
        batch = int(input_detail["shape"][0])
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            if self.layout == "NHWC":
                chunk = chunk.transpose(0, 2, 3, 1)
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
            interpreter.set_tensor(input_detail["index"], np.ascontiguousarray(chunk, np.float32))
            interpreter.invoke()
            collector.collect({tensors[i].name: interpreter.get_tensor(i) for i in activations})
        ranges = collector.ranges()
        self._qsvs = {}
        for i in activations:
            name = tensors[i].name
            if name in ranges:
                rank = max(tensors[i].rank or 0, 1)
                low, high = ranges[name]
                self._qsvs[name] = {"min": np.full([1] * rank, low, np.float32),
                                    "max": np.full([1] * rank, high, np.float32)}

    # -- building ----------------------------------------------------------------------------------

    def build(self, selected: list[Unit], recipe: Recipe, out: Path) -> None:
        require("ai_edge_quantizer", "export", "TFLite quantization")
        if self.scheme.needs_calibration and self._qsvs is None and selected:
            raise ConversionError("calibrate before building an int8 TFLite model")
        # only the kinds quantized for speed are checked: int8 kinds XNNPACK never takes (softmax,
        # GELU...) are built as asked, so that the sensitivity pass measures their int8 error
        checked = set(self.default_kinds()) if self.scheme.needs_calibration else set()
        known = {unit: op for found in self._refused_in.values() for unit, op in found.items()}  # kept float before
        refused = {u.id: known[u.id] for u in selected if u.id in known}
        chosen = [u for u in selected if u.id not in refused]
        for _ in range(3):  # a refused op is dropped and the file rebuilt; one round has always sufficed
            self._write(chosen, out)
            new = self._refused_ops(out, {u.id for u in chosen if u.kind in checked}) if checked else {}
            if not new:
                break
            refused.update(new)
            chosen = [u for u in chosen if u.id not in new]
        self._refused_in[out.resolve()] = refused

    def _write(self, selected: list[Unit], out: Path) -> None:
        from ai_edge_quantizer import qtyping, quantizer

        if not selected:
            out.write_bytes(self.float_path.read_bytes())
            return
        by_op: dict[str, list[str]] = {}
        for unit in selected:
            by_op.setdefault(unit.op, []).append(unit.id)
        with quiet():
            qt = quantizer.Quantizer(str(self.float_path))
            for op, scopes in by_op.items():
                regex = "^(?:" + "|".join(re.escape(s) for s in scopes) + ")$"
                operation = getattr(qtyping.TFLOperationName, op)
                if self.scheme.needs_calibration:
                    qt.add_static_config(regex=regex, operation_name=operation, activation_num_bits=8,
                                         weight_num_bits=8, weight_granularity=qtyping.QuantGranularity.CHANNELWISE)
                else:
                    qt.add_weight_only_config(regex=regex, operation_name=operation, num_bits=8,
                                              granularity=qtyping.QuantGranularity.CHANNELWISE)
            result = qt.quantize(self._qsvs if self.scheme.needs_calibration else None,
                                 enable_progress_bar=False, enable_progress_report=False)
        out.write_bytes(bytes(result.quantized_model))

    @staticmethod
    def _refused_ops(path: Path, chosen: set[str]) -> dict[str, str]:
        """{unit id: op type} of the chosen int8 ops that XNNPACK leaves to the reference kernels."""
        from edgevit.runtime.backends.litert import xnnpack_partition

        with quiet():
            partition = xnnpack_partition(path)
        if partition is None:
            return {}
        refused = {}
        for op in partition[1]:
            scope = _scope(op["output_names"])
            if scope in chosen:
                refused[scope] = op["op_name"]
        return refused

    def finish(self, path: Path) -> dict[str, Any]:
        """Drop the internal tensor names of a finished int8 / w8 file (see the module docstring)."""
        saved = strip_tensor_names(path)
        return {"tensor_names_dropped_bytes": saved} if saved else {}

    def recipe_options(self) -> dict[str, Any]:
        if self.scheme.needs_calibration:
            return {"tool": "ai-edge-quantizer static range quantization", "weights": "int8 symmetric, per channel",
                    "activations": "int8, per tensor, ranges from edgevit calibration", "io": "float32"}
        return {"tool": "ai-edge-quantizer weight-only", "weights": "int8 symmetric, per channel",
                "activations": "float32"}

    def describe_file(self, path: Path) -> dict[str, Any]:
        """Int8 op counts and which ops XNNPACK takes (the export op report's delegation check)."""
        from edgevit.runtime.backends.litert import xnnpack_delegation

        graph = read_ops(path)
        int8 = Counter(op.type for op in graph.main_ops if any(graph.tensors[i].dtype == "int8" for i in op.outputs))
        with quiet():
            delegation = xnnpack_delegation(path)
        info: dict[str, Any] = {"int8_ops": dict(int8.most_common())}
        if delegation is not None:
            delegated, total, missing = delegation
            info["xnnpack_delegated"] = f"{delegated}/{total}"
            info["not_delegated"] = dict(Counter(missing).most_common())
        refused = self._refused_in.get(Path(path).resolve())
        if refused:
            info["kept_float_refused_by_xnnpack"] = dict(Counter(refused.values()).most_common())
        return info


def strip_tensor_names(path: Path) -> int:
    """Empty the names of every tensor but the subgraphs' inputs and outputs; the bytes saved.

    The file is rewritten atomically. Ops, buffers and signatures are untouched (signatures
    refer to tensors by index). Buffers stored after the flatbuffer (ai-edge-quantizer writes
    weights that way: ``offset``/``size`` into the file) stay there, 16-byte aligned.
    """
    import flatbuffers

    schema = require("ai_edge_litert.schema_py_generated", "litert", "rewriting TFLite files")
    data = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for subgraph in model.subgraphs or []:
        keep = {int(i) for i in list(subgraph.inputs if subgraph.inputs is not None else [])
                + list(subgraph.outputs if subgraph.outputs is not None else [])}
        for index, tensor in enumerate(subgraph.tensors or []):
            if index not in keep:
                tensor.name = ""
    external = [(buffer, data[buffer.offset:buffer.offset + buffer.size])
                for buffer in model.buffers or [] if buffer.offset > 1]
    for buffer, _ in external:  # placeholders: non-default values keep the fields' bytes in the table
        buffer.offset, buffer.size = 1, 1
    head = _pack(model, flatbuffers, len(data))
    offset, blobs = _align16(len(head)), []
    for buffer, blob in external:
        buffer.offset, buffer.size = offset, len(blob)
        blobs.append((offset, blob))
        offset = _align16(offset + len(blob))
    packed = bytearray(_pack(model, flatbuffers, len(data)) if external else head)
    if len(packed) != len(head):
        raise ConversionError("rewriting the TFLite file changed its table size; tensor names were kept")
    if external:
        packed.extend(bytes(offset - len(packed)))
        for start, blob in blobs:
            packed[start:start + len(blob)] = blob
    if len(packed) >= len(data):
        return 0
    write_bytes(path, bytes(packed))
    return len(data) - len(packed)


def _pack(model: Any, flatbuffers: Any, size_hint: int) -> bytes:
    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _align16(offset: int) -> int:
    return (offset + 15) & ~15


def _scope(names: list[str]) -> str:
    """ai-edge-quantizer's scope of an op: its output tensor names joined by ';', then ';'."""
    return ";".join(names) + ";" if names else ""


def _longest_piece(tensor_name: str) -> str:
    """litert-torch joins the names of fused tensors with ';' (and appends ';N'): the most specific one."""
    return max(tensor_name.split(";"), key=len)


def module_class(tensor_name: str) -> str:
    """The class name of the innermost module a litert-torch tensor name encodes
    (``.../torch.nn.modules.normalization.LayerNorm_norm1;2`` -> ``LayerNorm``)."""
    innermost = _longest_piece(tensor_name).rsplit("/", 1)[-1]
    return innermost.split("_")[0].rsplit(".", 1)[-1]


def module_path(tensor_name: str, known: set[str]) -> str:
    """The module path a litert-torch tensor name encodes.

    Names look like ``root.Class/pkg.Block_3/pkg.Attention_attn/torch...Linear_qkv;1``: after
    the root, each ``/`` segment is ``<qualified class>_<attribute>``. Attributes may hold
    underscores, so the split is checked against the model's ``known`` module paths.
    """
    path = ""
    for segment in _longest_piece(tensor_name).split("/")[1:]:
        tail = segment.rsplit(".", 1)[-1]
        choices = [tail[i + 1:] for i, ch in enumerate(tail) if ch == "_" and i + 1 < len(tail)]
        pick = None
        for attr in choices:
            candidate = f"{path}.{attr}" if path else attr
            if candidate.removeprefix("model.") in known or candidate == "model":
                pick = candidate
                break
        if pick is None:
            if not choices:
                break
            pick = f"{path}.{choices[0]}" if path else choices[0]
        path = pick
    return path.removeprefix("model.")
