"""ONNX int8: static QDQ with onnxruntime's quantizer, arranged so its integer kernels run.

Given the converted float ``model.onnx``:

1. **pre-process** with ``onnxruntime.quantization.quant_pre_process`` (shape inference and
   onnxruntime's basic graph optimisation: ``MatMul + Add`` become ``Gemm``...), then give
   every node its own copy of any initializer it shares with another node (the exporter
   de-duplicates equal tensors, so a LayerNorm bias of zeros can be the same initializer
   as a Linear bias, and quantizing one would put a ``DequantizeLinear`` in front of the
   other at run time);
2. **calibrate once** with onnxruntime's calibrator (MinMax, Percentile or Entropy), fed a
   few images at a time so memory stays bounded, and keep the ranges in a cache file;
3. **build** any number of candidate files from that one calibration, each quantizing an
   explicit list of nodes (``nodes_to_quantize``): QDQ format, weights symmetric per output
   channel, activations uint8 asymmetric, in one of the :data:`INT8_FORMATS`.

**Formats, and why the default gives up one bit of weight.** onnxruntime computes uint8 x
int8 (U8S8) products with ``VPMADDUBSW`` on x86 CPUs without VNNI (AVX2, or AVX-512 without
VNNI), and that instruction saturates its int16 pair sums (:mod:`edgevit.runtime.cpu`). A
file with full-range int8 weights is faithful on a VNNI CPU or a phone and wrong on such a
CPU: measured on an AVX2-only EPYC, the five ``test_*`` models gave 4-12 dB SQNR against
float instead of 28-36 dB. The default, ``u8s8-reduced``, stores weights in [-64, 64]
(onnxruntime's ``reduce_range``), which cannot saturate, runs the same kernels at the same
speed, and costs 0-2 dB on a VNNI CPU. ``u8u8`` keeps 8-bit weights and is exact everywhere
(x86 widens uint8 x uint8 to int16 first), at some speed on x86; ``u8s8`` keeps 8-bit weights
for devices known to have VNNI or ARM, and the runtime warns if such a file runs where it can
saturate. ``benchmarks/results/int8.md`` has the measured speeds.

What runs as integer arithmetic is decided by onnxruntime's QDQ fusions, so the layout of
Q/DQ pairs matters. ``MatMul``/``Gemm`` outputs are left in float
(``OpTypesToExcludeOutputQuantization``): onnxruntime then fuses them into ``QGemm`` /
``MatMulIntegerToFloat``, which take int8 inputs and give float outputs straight into
the float LayerNorm, GELU or residual add, with no requantize/dequantize pair in between.
Convolutions keep a quantized output because that is what ``QLinearConv`` needs.
:meth:`OnnxQuantizer.describe_file` reads onnxruntime's optimised graph back and counts
which compute nodes became integer kernels and which stayed float. That count is the truth,
not the recipe: onnxruntime's own QDQ fusions turn a float op whose neighbours are quantized
into an integer kernel anyway (``WeightBiasQuantization`` quantizes the float weights of a
``DequantizeLinear -> Conv -> QuantizeLinear`` sandwich; ``DQ -> Softmax -> Q`` becomes
``QLinearSoftmax``).
"""

from __future__ import annotations

import ast
import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import ConversionError, InvalidArgumentError, require
from edgevit.formats import Op, OpGraph, TensorKey
from edgevit.formats.onnx import ops_of, read_ops
from edgevit.quantize.base import TargetQuantizer, block_of, quiet, run_model_file
from edgevit.quantize.metrics import sqnr_db
from edgevit.quantize.recipe import KindRules, Recipe, Unit, mark_positions

#: onnxruntime ops that compute in integers (after its QDQ fusions), and float compute ops
INTEGER_OPS = ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "MatMulInteger", "ConvInteger",
               "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "QLinearSoftmax", "QLinearAveragePool",
               "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu")
FLOAT_COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "FusedMatMul", "FusedConv", "FusedGemm", "NchwcConv")
OTHER_OPS = ("AveragePool", "GlobalAveragePool", "MaxPool", "Concat", "Resize", "Sigmoid", "HardSigmoid",
             "Sub", "Div", "ReduceMean")
#: ONNX op -> kind. The exporter lowers a LayerNorm or GELU module to LayerNormalization / Gelu
#: or to elementwise arithmetic, recognised by the module class the node came from; a module's
#: other ops (a Concat in a norm) are left alone, as no int8 kernel would take them
KIND_RULES = KindRules(
    ops={"Conv": "conv", "ConvTranspose": "conv", "Gemm": "linear", "MatMul": "matmul", "Softmax": "softmax",
         "LayerNormalization": "layernorm", "Gelu": "gelu", "Add": "add", "Mul": "mul",
         **dict.fromkeys(OTHER_OPS, "other")},
    with_weight={"MatMul": "linear"},
    grouped={"Conv": "dwconv", "ConvTranspose": "dwconv"},
    modules=(("Norm", "layernorm", ("LayerNormalization", "Add", "Mul", "Sub", "Div", "ReduceMean")),
             ("GELU", "gelu", ("Gelu", "Add", "Mul", "Div", "Erf"))),
    modules_claim=True,
)
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
#: kinds of an op whose output only a Softmax reads, which go with the softmax (kind ``softmax``):
#: quantized alone, its output's Q/DQ pair and the Q of the matmul after the softmax make
#: onnxruntime fuse ``DQ -> Softmax -> Q`` into ``QLinearSoftmax`` anyway (TinyViT's attention-bias
#: Add: 0.35 ms per softmax against 0.06 ms in float, 18% of tiny_vit_5m_224's int8 time)
SOFTMAX_FEEDER_KINDS = frozenset({"add", "mul", "other"})


@dataclass(frozen=True)
class Int8Format:
    """How an int8 ONNX file stores its activations and weights, and where it computes exactly.

    Attributes:
        name: the option's value (``--onnx-int8-format``).
        activations / weights: onnxruntime ``QuantType`` names.
        reduce_range: weights limited to 7 bits ([-64, 64]), so U8S8 pair sums fit in int16.
        exact_on: the CPUs whose integer kernels compute it without saturation.
    """

    name: str
    activations: str
    weights: str
    reduce_range: bool
    exact_on: str

    @property
    def saturation_free(self) -> bool:
        """No CPU's kernel can saturate on it (by the format alone, before reading the file)."""
        return self.reduce_range or self.weights == "QUInt8"


#: the int8 QDQ formats an ONNX file can be written in (see the module docstring)
INT8_FORMATS: dict[str, Int8Format] = {f.name: f for f in (
    Int8Format("u8s8-reduced", "QUInt8", "QInt8", True, "every CPU (x86 with or without VNNI, ARM)"),
    Int8Format("u8u8", "QUInt8", "QUInt8", False, "every CPU (x86 with or without VNNI, ARM)"),
    Int8Format("u8s8", "QUInt8", "QInt8", False, "x86 with AVX512-VNNI or AVX-VNNI, and ARM; NOT x86 with only "
               "AVX2 or AVX-512 without VNNI, where uint8 x int8 sums saturate (VPMADDUBSW)"),
)}
DEFAULT_INT8_FORMAT = "u8s8-reduced"


def int8_format(name: str) -> Int8Format:
    """The format called ``name``; an unknown name lists the valid ones with what each means."""
    if name not in INT8_FORMATS:
        valid = "; ".join(f"{f.name} (exact on {f.exact_on})" for f in INT8_FORMATS.values())
        raise InvalidArgumentError(f"unknown ONNX int8 format {name!r}; valid: {valid}")
    return INT8_FORMATS[name]
#: images fed to the calibrator per call (it keeps one call's activations in memory)
CALIBRATION_CHUNK = 8


class OnnxQuantizer(TargetQuantizer):
    target = "onnx"
    backend = "onnxruntime"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.onnx = require("onnx", "export", "ONNX quantization")
        scopes, classes = _scopes(read_ops(self.float_path))
        self.prepared = self.work / "prepared.onnx"
        self.cache = self.work / "calibration.json"
        _pre_process(self.float_path, self.prepared)
        model = self.onnx.load(str(self.prepared))
        _untie_initializers(model)
        self.onnx.save(model, str(self.prepared))
        self.input_name = model.graph.input[0].name
        self.method: str | None = None
        self.format = int8_format(self.options.get("onnx_int8_format", DEFAULT_INT8_FORMAT))
        graph = ops_of(model)
        self._units = mark_positions(self._classify(graph, scopes, classes))
        self._followers = _activation_followers(graph, {u.id for u in self._units if u.op == "Conv"})

    # -- units ------------------------------------------------------------------------------------

    def _classify(self, graph: OpGraph, scopes: dict[str, str], classes: dict[str, str]) -> list[Unit]:
        constants = graph.constants()
        consumers = graph.consumers(graph.main_ops)
        units = []
        for op in graph.main_ops:
            origin = op.name.split("/")[0]
            scope = scopes.get(origin) or next((scopes[o] for o in op.outputs if o in scopes), "")
            klass = classes.get(origin) or next((classes[o] for o in op.outputs if o in classes), "")
            with_weight = any(i in constants for i in op.inputs)
            kind = KIND_RULES.kind(op, module=klass.rsplit(".", 1)[-1], weighted=with_weight)
            if kind is None:
                continue
            if kind in SOFTMAX_FEEDER_KINDS and _only_read_by(op, consumers, "Softmax"):
                kind = "softmax"  # see SOFTMAX_FEEDER_KINDS
            weighted = op.type in ("Conv", "ConvTranspose", "Gemm") or (op.type == "MatMul" and with_weight)
            units.append(Unit(op.name, op.type, kind, scope.removeprefix("model."),
                              block_of(scope, self.blocks), weighted=weighted))
        return units

    def units(self) -> list[Unit]:
        return list(self._units)

    def kinds(self) -> tuple[str, ...]:
        return ("conv", "dwconv", "linear", "matmul", "softmax", "layernorm", "gelu", "add", "mul", "other")

    def default_kinds(self) -> tuple[str, ...]:
        return ("conv", "dwconv", "linear", "matmul", "add", "mul", "other")

    def kind_note(self, kind: str) -> str:
        return {
            "softmax": "onnxruntime's QLinearSoftmax is slower than its float Softmax on this CPU (table lookups "
                       "per element), so an int8 softmax would add error and time; an Add or Mul that only a "
                       "softmax reads (an attention bias) goes with it, as its int8 output would make onnxruntime "
                       "fuse a QLinearSoftmax anyway",
            "layernorm": "onnxruntime has no int8 LayerNormalization kernel: quantizing it only adds Q/DQ pairs",
            "gelu": "onnxruntime has no int8 GELU kernel: quantizing it only adds Q/DQ pairs",
        }.get(kind, super().kind_note(kind))

    # -- calibration -------------------------------------------------------------------------------

    def calibrate(self, images: np.ndarray, method: str) -> None:
        calibrate = require("onnxruntime.quantization.calibrate", "export", "ONNX calibration")
        quantization = require("onnxruntime.quantization.quantize", "export", "ONNX calibration")
        op_types = sorted({u.op for u in self._units} | {"Reshape", "Transpose", "Split", "Flatten", "Squeeze",
                                                          "Unsqueeze", "Slice", "Gather", "Concat"})
        calibration_method = getattr(calibrate.CalibrationMethod, CALIBRATION_METHODS[method])
        with quiet():
            calibrator = calibrate.create_calibrator(
                self.prepared, op_types, augmented_model_path=str(self.work / "augmented.onnx"),
                calibrate_method=calibration_method, providers=["CPUExecutionProvider"],
                extra_options=_calibrator_options(method),
            )
            for start in range(0, len(images), CALIBRATION_CHUNK):
                calibrator.collect_data(_Reader(self.input_name, images[start:start + CALIBRATION_CHUNK]))
            ranges = calibrator.compute_data()
            quantization.save_tensors_data(ranges, self.cache)
        self.method = method

    # -- building ----------------------------------------------------------------------------------

    def build(self, selected: list[Unit], recipe: Recipe, out: Path) -> None:
        quantization = require("onnxruntime.quantization", "export", "ONNX quantization")
        if self.method != recipe.calib_method:
            raise ConversionError(f"calibrate with {recipe.calib_method!r} before building")
        if not selected:  # nothing to quantize: the float model, as it is
            out.write_bytes(self.prepared.read_bytes())
            return
        names = [u.id for u in selected]
        names += [f for u in selected for f in self._followers.get(u.id, ())]
        op_types = sorted({u.op for u in selected} | ({"Relu", "Clip"} if len(names) > len(selected) else set()))
        method = getattr(quantization.CalibrationMethod, CALIBRATION_METHODS[recipe.calib_method])
        with quiet():
            quantization.quantize_static(
                str(self.prepared), str(out), calibration_data_reader=None, calibration_cache_path=self.cache,
                calibrate_method=method, quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=getattr(quantization.QuantType, self.format.activations),
                weight_type=getattr(quantization.QuantType, self.format.weights),
                reduce_range=self.format.reduce_range, nodes_to_quantize=names, op_types_to_quantize=op_types,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                               "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]},
            )
        _compress_constants(out)
        _strip(out)

    def recipe_options(self) -> dict[str, Any]:
        weights = {"QInt8": "int8", "QUInt8": "uint8"}[self.format.weights]
        return {"format": "QDQ", "int8_format": self.format.name, "exact_on": self.format.exact_on,
                "weights": f"{weights} symmetric, per output channel"
                           + (", 7-bit range [-64, 64] (reduce_range)" if self.format.reduce_range else ""),
                "activations": "uint8 asymmetric, per tensor", "pre_processed": True,
                "matmul_outputs": "float (QGemm / MatMulIntegerToFloat)",
                "large_constants": f"float constants of >= {CONSTANT_MIN_ELEMENTS} elements read only by Add "
                                   "(attention-bias tables): int8 per first-axis slice + DequantizeLinear"}

    def kernel_check(self, path: Path, images: np.ndarray) -> dict[str, Any]:
        """The file run by this CPU's integer kernels against the same QDQ graph computed in float.

        With graph optimisations off, onnxruntime runs every ``QuantizeLinear`` /
        ``DequantizeLinear`` as written and the convolutions and matrix products in float32 on the
        dequantized values: the quantized model's arithmetic without any CPU's integer kernel.
        A CPU whose kernels saturate shows it here as a low SQNR (measured: 5-12 dB on the
        ``test_*`` models with full-range weights on AVX2, against 43-70 dB without saturation)."""
        from edgevit.runtime.cpu import int8_path

        kernels = run_model_file(path, self.backend, images, self.layout)
        reference = qdq_reference(path, images.transpose(0, 2, 3, 1) if self.layout == "NHWC" else images)
        return {"kernels_vs_qdq_reference": {"sqnr_db": round(sqnr_db(reference, kernels), 1),
                                             "images": len(images), "cpu": int8_path().to_dict()}}

    def describe_file(self, path: Path) -> dict[str, Any]:
        """Which compute nodes onnxruntime runs as integer kernels after its graph optimisations."""
        graph = ops_of(optimized_model(path))
        counts = dict(graph.counts(graph.main_ops).most_common())
        integer = {op: n for op, n in counts.items() if op in INTEGER_OPS}
        floating = {op: n for op, n in counts.items() if op in FLOAT_COMPUTE_OPS}
        return {"runtime_graph": "onnxruntime CPU, ORT_ENABLE_ALL", "integer_kernels": integer,
                "float_compute_kernels": floating,
                "quantize_linear": counts.get("QuantizeLinear", 0),
                "dequantize_linear": counts.get("DequantizeLinear", 0),
                "u8s8_saturation": u8s8_saturation(graph)}


def qdq_reference(path: Path, images: np.ndarray) -> np.ndarray:
    """Outputs of the QDQ file at ``path`` on NCHW ``images`` with onnxruntime's graph optimisations
    off: Q/DQ as written, float32 compute, no integer kernel (the same on every CPU)."""
    ort = require("onnxruntime", "onnxruntime", "running the QDQ reference")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    step = spec.shape[0] if isinstance(spec.shape[0], int) else len(images)
    outputs = []
    for start in range(0, len(images), step):
        chunk = np.ascontiguousarray(images[start:start + step], dtype=np.float32)
        count = len(chunk)
        if count < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - count, axis=0)])
        outputs.append(np.asarray(session.run(None, {spec.name: chunk})[0], np.float32).reshape(len(chunk), -1)[:count])
    return np.concatenate(outputs)


def optimized_op_counts(path: Path) -> dict[str, int]:
    """Op histogram of the graph onnxruntime actually runs (CPU provider, all optimisations)."""
    graph = ops_of(optimized_model(path))
    return dict(graph.counts(graph.main_ops).most_common())


def optimized_graph(path: Path) -> Any:
    """The ONNX graph onnxruntime runs for the file at ``path`` (CPU provider, all optimisations)."""
    return optimized_model(path).graph


def optimized_model(path: Path) -> Any:
    """The ONNX model onnxruntime runs for the file at ``path`` (CPU provider, all optimisations)."""
    import tempfile

    ort = require("onnxruntime", "onnxruntime", "reading the optimised graph")
    onnx = require("onnx", "export", "reading the optimised graph")
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def u8s8_saturation(graph: OpGraph) -> dict[str, Any]:
    """Whether any uint8 x int8 product of an optimised graph can saturate a VPMADDUBSW int16 sum.

    ``graph`` is the graph onnxruntime runs (``ops_of(optimized_model(path))``), not the file's: its QDQ
    fusions may quantize the weights of a float convolution that sits between quantized ops
    themselves. Every int8 weight (an initializer of two or more dimensions) read by an integer
    kernel is checked: two adjacent products fit in int16 when both weights are within
    [-64, 64] (:data:`edgevit.runtime.cpu.U8S8_SAFE_WEIGHT`); uint8 weights go through widening
    kernels and cannot saturate.

    Returns:
        ``{"free": bool, "max_abs_int8_weight": int | None, "int8_weights": int, "over_limit": int}``
        (``over_limit``: weight tensors with a value beyond the limit).
    """
    from onnx import numpy_helper

    from edgevit.runtime.cpu import U8S8_SAFE_WEIGHT

    initializers = {init.name: init for init in graph.raw.graph.initializer}
    weights = {key for op in graph.main_ops if op.type in INTEGER_OPS for key in op.inputs
               if key in initializers and len(initializers[key].dims) >= 2}
    largest, over = None, 0
    for name in sorted(weights):
        array = numpy_helper.to_array(initializers[name])
        if array.dtype != np.int8 or not array.size:
            continue
        peak = int(np.abs(array.astype(np.int16)).max())
        largest = peak if largest is None else max(largest, peak)
        over += peak > U8S8_SAFE_WEIGHT
    count = sum(numpy_helper.to_array(initializers[n]).dtype == np.int8 for n in weights)
    return {"free": over == 0, "max_abs_int8_weight": largest, "int8_weights": int(count), "over_limit": over}


def _calibrator_options(method: str) -> dict[str, Any]:
    """The same histogram settings as edgevit's own collector (see edgevit.quantize.calibration)."""
    from edgevit.quantize.calibration import HISTOGRAM_BINS, PERCENTILE, QUANTIZED_BINS

    if method == "entropy":
        return {"symmetric": False, "num_bins": HISTOGRAM_BINS, "num_quantized_bins": QUANTIZED_BINS}
    if method == "percentile":
        return {"symmetric": True, "num_bins": HISTOGRAM_BINS, "percentile": PERCENTILE}
    return {"symmetric": False}


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a batch of NCHW images, one at a time."""

    def __init__(self, name: str, images: np.ndarray) -> None:
        self._items = iter([{name: images[i:i + 1].astype(np.float32)} for i in range(len(images))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)

    def __len__(self) -> int:  # pragma: no cover - protocol
        return 0


def _pre_process(source: Path, destination: Path) -> None:
    shape_inference = require("onnxruntime.quantization.shape_inference", "export", "ONNX quantization")
    with quiet():
        try:
            shape_inference.quant_pre_process(str(source), str(destination))
        except Exception:  # noqa: BLE001 - symbolic shape inference fails on some graphs; ONNX's suffices
            shape_inference.quant_pre_process(str(source), str(destination), skip_symbolic_shape=True)


def _only_read_by(op: Op, consumers: dict[TensorKey, list[Op]], op_type: str) -> bool:
    """Whether ``op``'s outputs are read, and only by ops of ``op_type``."""
    readers = [r for key in op.outputs for r in consumers.get(key, [])]
    return bool(readers) and all(r.type == op_type for r in readers)


def _activation_followers(graph: OpGraph, producers: set[str]) -> dict[str, list[str]]:
    """``{conv node: [Relu/Clip node]}`` for activations that alone consume a conv's output.

    Quantized with their conv, onnxruntime's quantizer folds them into the conv's output
    range; left out, they leave a dequantize/requantize pair at run time."""
    consumers = graph.consumers(graph.main_ops)
    followers: dict[str, list[str]] = {}
    for op in graph.main_ops:
        readers = consumers.get(op.outputs[0], []) if op.outputs else []
        if op.name in producers and len(readers) == 1 and readers[0].type in ("Relu", "Clip"):
            followers[op.name] = [readers[0].name]
    return followers


#: float constants at least this large that feed only float Adds are stored as int8 (per row)
CONSTANT_MIN_ELEMENTS = 16384


def _compress_constants(path: Path) -> None:
    """Store large float constants that only float ``Add`` ops read (the attention-bias tables
    that reparameterization expands per head: 5 MB of TinyViT-5M's 10 MB int8 file) as int8,
    symmetric per slice of the first axis, behind a ``DequantizeLinear``."""
    from onnx import helper, numpy_helper

    onnx = require("onnx", "export", "ONNX quantization")
    model = onnx.load(str(path))
    graph = model.graph
    readers = collections.defaultdict(set)
    for node in graph.node:
        for name in node.input:
            readers[name].add(node.op_type)
    keep, added = [], []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if (array.dtype != np.float32 or array.size < CONSTANT_MIN_ELEMENTS or array.ndim < 2
                or readers[init.name] != {"Add"}):
            keep.append(init)
            continue
        scale = np.abs(array.reshape(len(array), -1)).max(axis=1) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        shaped = scale.reshape((-1,) + (1,) * (array.ndim - 1))
        quantized = np.clip(np.round(array / shaped), -127, 127).astype(np.int8)
        keep += [numpy_helper.from_array(quantized, init.name + "_int8"),
                 numpy_helper.from_array(scale, init.name + "_scale"),
                 numpy_helper.from_array(np.zeros(len(scale), np.int8), init.name + "_zero_point")]
        added.append(helper.make_node("DequantizeLinear", [init.name + "_int8", init.name + "_scale",
                                                           init.name + "_zero_point"], [init.name], axis=0,
                                      name=init.name + "_DequantizeLinear"))
    if not added:
        return
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = added + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))


def _strip(path: Path) -> None:
    """Drop what only debugging needs from a quantized file: the exporter's per-node metadata
    (stack traces, module scopes) and the intermediate shapes that shape inference recorded."""
    onnx = require("onnx", "export", "ONNX quantization")
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def _untie_initializers(model: Any) -> None:
    """Give every node input its own initializer (the exporter shares equal tensors between nodes)."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    users = collections.Counter(name for node in model.graph.node for name in node.input if name in initializers)
    seen: collections.Counter[str] = collections.Counter()
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if users.get(name, 0) > 1:
                seen[name] += 1
                if seen[name] > 1:
                    copy = numpy_helper.from_array(numpy_helper.to_array(initializers[name]),
                                                   f"{name}__{node.name or i}_{seen[name]}")
                    model.graph.initializer.append(copy)
                    node.input[i] = copy.name


def _scopes(graph: OpGraph) -> tuple[dict[str, str], dict[str, str]]:
    """Module path and innermost module class of each exported node, by node name and output name.

    The torch.onnx dynamo exporter records ``pkg.torch.onnx.name_scopes`` (module paths, then
    the FX node) and ``pkg.torch.onnx.class_hierarchy`` on every node (``Op.raw.metadata_props``).
    """
    scopes, classes = {}, {}
    for op in graph.main_ops:
        node = op.raw
        meta = {p.key: p.value for p in node.metadata_props}
        try:
            names = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
            hierarchy = ast.literal_eval(meta.get("pkg.torch.onnx.class_hierarchy", "[]"))
        except (ValueError, SyntaxError):
            continue
        scope = names[-2] if len(names) >= 2 else ""
        klass = hierarchy[-2] if len(hierarchy) >= 2 else ""
        for key in (node.name, *node.output):
            scopes[key] = scope
            classes[key] = klass
    return scopes, classes
