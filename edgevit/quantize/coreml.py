"""Core ML int8, w8, w6 and w4 with ``coremltools.optimize.coreml``, on the converted ``.mlpackage``.

* ``w8``: ``linear_quantize_weights`` (int8, symmetric, per output channel): weights are
  stored as int8 with ``constexpr_affine_dequantize`` (iOS16) / ``constexpr_blockwise_shift_scale``
  (iOS18); activations stay float.
* ``w6`` / ``w4``: ``palettize_weights`` (k-means, a 64- or 16-entry look-up table per weight
  tensor; per group of 16 output channels on iOS18, whose ``constexpr_lut_to_dense`` takes
  grouped tables); activations stay float.
* ``int8``: activations quantized as well, the way ``coremltools.optimize.coreml.experimental
  .linear_quantize_activations`` does it: ``quantize``/``dequantize`` pairs in front of the
  convolutions, linear layers, adds and pools, whose scales come from activation ranges on
  calibration images; then int8 weights. coremltools measures those ranges by running the
  model with Core ML, which exists only on macOS; here they are measured with edgevit's
  numpy reference executor (``coreml-reference``), which runs the same ML Program op by op,
  so int8 Core ML can be produced and checked on Linux. Activation quantize/dequantize ops
  need iOS17 or newer (:func:`check_deployment`, which the export target's check calls too).

coremltools quantizes activations only around ``conv``, ``linear``, ``add`` and the pooling
ops; attention matmuls, softmax, LayerNorm and GELU stay in fp16/fp32 on Core ML whatever
the recipe says (the report lists them as such).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import ConversionError, InvalidArgumentError, require
from edgevit.formats.mlprogram import SPEC_VERSIONS, read_ops
from edgevit.precision import precision
from edgevit.quantize.base import TargetQuantizer, block_of, quiet
from edgevit.quantize.calibration import RangeCollector
from edgevit.quantize.recipe import KindRules, Recipe, Unit, mark_positions

#: MIL op -> kind (coremltools keeps LayerNorm and GELU as ops of their own, so no module rules);
#: a ``matmul`` with a weight is a linear layer, a grouped ``conv`` a depthwise one
KIND_RULES = KindRules(
    ops={"conv": "conv", "conv_transpose": "conv", "linear": "linear", "matmul": "matmul", "softmax": "softmax",
         "layer_norm": "layernorm", "gelu": "gelu", "add": "add", "mul": "mul", "avg_pool": "other",
         "max_pool": "other", "concat": "other", "reduce_mean": "other", "sigmoid": "other"},
    with_weight={"matmul": "linear"},
    grouped={"conv": "dwconv", "conv_transpose": "dwconv"},
)
WEIGHTED = ("conv", "conv_transpose", "linear")
#: Core ML specification versions of iOS17 (first with activation quantize/dequantize) and iOS18
SPEC_IOS17, SPEC_IOS18 = SPEC_VERSIONS["iOS17"], SPEC_VERSIONS["iOS18"]
#: iOS18 palettization groups output channels in groups of this size, each with its own table
PALETTE_GROUP = 16
#: passes run when a quantized program is written back (the float program was already optimised)
CLEANUP_PASSES = ["common::dead_code_elimination", "common::const_deduplication"]


class CoreMLQuantizer(TargetQuantizer):
    target = "coreml"
    backend = "coreml-reference"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ct = require("coremltools", "export", "Core ML quantization")
        self.graph = read_ops(self.float_path)
        self.spec_version = int(self.graph.version)
        check_deployment(self.scheme.name, self.spec_version)
        self._units = mark_positions(self._classify())
        self._stats: dict[str, dict[str, float]] | None = None

    # -- units ------------------------------------------------------------------------------------

    def _classify(self) -> list[Unit]:
        names = {path.replace(".", "_"): path for path in self.blocks}
        units, scope = [], ""
        self._weight_of: dict[str, str] = {}
        for op in self.graph.main_ops:
            weight = next((key for param in ("weight", "gamma") for key in op.params.get(param, ())), "")
            if weight:
                scope = _module_of(weight, names) or scope
            kind = KIND_RULES.kind(op, weighted=bool(weight))
            if kind is None or not op.name:
                continue
            if op.type in WEIGHTED and weight:
                self._weight_of[op.name] = weight
            units.append(Unit(op.name, op.type, kind, scope, block_of(scope, self.blocks),
                              weighted=op.type in WEIGHTED))
        return units

    def units(self) -> list[Unit]:
        return list(self._units)

    def kinds(self) -> tuple[str, ...]:
        if self.scheme.needs_calibration:
            return ("conv", "dwconv", "linear", "add", "other")
        return ("conv", "dwconv", "linear")

    def default_kinds(self) -> tuple[str, ...]:
        if self.scheme.needs_calibration:
            return ("conv", "dwconv", "linear", "add")
        return ("conv", "dwconv", "linear")

    def kind_note(self, kind: str) -> str:
        if kind == "other":
            return "int8 pooling saves little; kept in float"
        return f"coremltools does not quantize the activations of {kind} ops"

    # -- calibration -------------------------------------------------------------------------------

    def calibrate(self, images: np.ndarray, method: str) -> None:
        from edgevit.runtime.backends.coreml_reference import ReferenceModel

        collector = RangeCollector(method)
        with quiet():
            model = ReferenceModel(self.float_path)
        program = model.program
        input_name = program.inputs[0][0]
        batch = program.inputs[0][1].shape[0] if program.inputs[0][1].shape else 1
        batch = batch if isinstance(batch, int) else 1
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
            collector.collect(_trace(program, {input_name: chunk.astype(np.float32)}))
        self._stats = {name: {"rmin": low, "rmax": high} for name, (low, high) in collector.ranges().items()}

    # -- building ----------------------------------------------------------------------------------

    def build(self, selected: list[Unit], recipe: Recipe, out: Path) -> None:
        """One pass over the program: activation quantize/dequantize pairs (int8), then weight
        compression, then back to an ML Program with only clean-up passes (coremltools' own
        ``linear_quantize_weights`` & co. re-run its whole 90-pass pipeline every call)."""
        if not selected:
            shutil.copytree(self.float_path, out)
            return
        if self.scheme.needs_calibration and self._stats is None:
            raise ConversionError("calibrate before building an int8 Core ML model")
        from coremltools.converters.mil.converter import mil_convert
        from coremltools.converters.mil.frontend.milproto import load as milproto_load
        from coremltools.converters.mil.mil.passes.pass_pipeline import PassPipeline
        from coremltools.models import utils as model_utils

        passes = self._activation_passes([u.id for u in selected]) if self.scheme.needs_calibration else []
        weights = [self._weight_of[u.id] for u in selected if u.id in self._weight_of]
        if weights:
            passes.append(self._weight_pass(weights))
        spec_version = max(self.spec_version, SPEC_IOS17) if self.scheme.needs_calibration else self.spec_version
        with quiet():
            model = self.ct.models.MLModel(str(self.float_path), skip_model_load=True)
            program = model_utils._apply_graph_pass(model, passes, spec_version=spec_version,
                                                    pymil_load_func=milproto_load.load, skip_model_load=True,
                                                    return_pymil_prog=True)
            cleanup = PassPipeline(pass_names=CLEANUP_PASSES, pipeline_name="edgevit-quantize-cleanup")
            quantized = mil_convert(program, convert_to="mlprogram", convert_from="milinternal",
                                    specification_version=spec_version, compute_units=model.compute_unit,
                                    model_description=model.get_spec().description, skip_model_load=True,
                                    pass_pipeline=cleanup)
            save_mlpackage(quantized, out)

    def _weight_pass(self, names: list[str]) -> Any:
        """Compress the weight constants called ``names`` (configured by constant, not by op, so a
        constant that two ops share is never both compressed and not)."""
        from coremltools.converters.mil.mil.passes.graph_pass import PassOption
        from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY

        cto = require("coremltools.optimize.coreml", "export", "Core ML quantization")
        if self.scheme.weights == "palettized":
            grouped = self.spec_version >= SPEC_IOS18
            op_config = cto.OpPalettizerConfig(
                mode="kmeans", nbits=self.scheme.weight_bits, weight_threshold=0,
                granularity="per_grouped_channel" if grouped else "per_tensor",
                group_size=PALETTE_GROUP if grouped else 0)
            graph_pass = PASS_REGISTRY["compression::palettize_weights"]
        else:
            op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                                    weight_threshold=0)
            graph_pass = PASS_REGISTRY["compression::linear_quantize_weights"]
        config = cto.OptimizationConfig(op_name_configs=dict.fromkeys(names, op_config))
        graph_pass.set_options([PassOption("config", config), PassOption("joint_compression", False)])
        return graph_pass

    def _activation_passes(self, names: list[str]) -> list[Any]:
        """coremltools' activation quantization passes, fed the ranges measured by :meth:`calibrate`."""
        from coremltools.converters.mil.mil.passes.graph_pass import PassOption
        from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
        from coremltools.optimize.coreml import OptimizationConfig
        from coremltools.optimize.coreml.experimental import OpActivationLinearQuantizerConfig

        config = OptimizationConfig(op_name_configs=dict.fromkeys(
            names, OpActivationLinearQuantizerConfig(mode="linear_symmetric")))
        passes = []
        for pass_name in ("compression::insert_prefix_quantize_dequantize_pair",
                          "compression::insert_suffix_quantize_dequantize_pair"):
            graph_pass = PASS_REGISTRY[pass_name]
            graph_pass.set_options([PassOption("config", config)])
            graph_pass.set_options([PassOption("activation_stats", self._stats)])
            passes.append(graph_pass)
        passes.append(PASS_REGISTRY["common::dequantize_quantize_pair_elimination"])
        return passes

    def recipe_options(self) -> dict[str, Any]:
        if self.scheme.weights == "palettized":
            grouped = self.spec_version >= SPEC_IOS18
            return {"tool": "coremltools palettize_weights", "mode": "kmeans", "nbits": self.scheme.weight_bits,
                    "granularity": f"per group of {PALETTE_GROUP} output channels" if grouped else "per tensor"}
        options = {"tool": "coremltools linear_quantize_weights", "weights": "int8 symmetric, per output channel"}
        if self.scheme.needs_calibration:
            options.update({"activations": "int8 symmetric, per tensor (quantize/dequantize around conv, linear, "
                                           "add, pool)", "calibrated_with": "edgevit coreml-reference executor"})
        return options

    def describe_file(self, path: Path) -> dict[str, Any]:
        graph = read_ops(path)
        counts: dict[str, int] = {}
        for op in graph.main_ops:
            if op.type.startswith("constexpr") or op.type in ("quantize", "dequantize"):
                counts[op.type] = counts.get(op.type, 0) + 1
        return {"compression_ops": counts, "spec_version": graph.version}


#: what coremltools writes beside an ML Program converted from a torch.export program: a map
#: from ExecuTorch debug handles to MIL ops, for ExecuTorch's Core ML delegate; no runtime
#: reads it and the package's own Manifest.json does not list it (222 KB for CAS-ViT XS)
EXECUTORCH_DEBUG_MAP = "executorch_debug_handle_mapping.json"


def save_mlpackage(mlmodel: Any, path: Path) -> None:
    """Save ``mlmodel`` as an ``.mlpackage`` at ``path`` without coremltools' ExecuTorch debug map,
    and delete the temporary package coremltools converted it into (``mlmodel`` is not usable after).

    coremltools writes every ML Program it converts to a package in the temp folder and deletes it
    only when the process exits (``atexit``): a process that exports or quantizes many models kept
    a copy of each, and one that was killed left them for good (437 in /tmp from one crashed
    pytest worker).
    """
    mlmodel.save(str(path))
    (Path(path) / EXECUTORCH_DEBUG_MAP).unlink(missing_ok=True)
    temporary = getattr(mlmodel, "package_path", None) if getattr(mlmodel, "is_temp_package", False) else None
    if temporary and Path(temporary).resolve() != Path(path).resolve():
        shutil.rmtree(temporary, ignore_errors=True)


def check_deployment(precision_name: str, spec_version: int) -> None:
    """Refuse a precision with integer activations below iOS17, the first Core ML with activation
    quantize/dequantize ops (the export target checks the options, the quantizer the float file).

    Raises:
        InvalidArgumentError: naming the deployment target and what to pass instead.
    """
    if not precision(precision_name).needs_calibration or spec_version >= SPEC_IOS17:
        return
    target = {version: name for name, version in SPEC_VERSIONS.items()}.get(spec_version, f"spec version {spec_version}")
    raise InvalidArgumentError(
        f"Core ML {precision_name} quantizes activations with quantize/dequantize ops, which need iOS17 or newer, "
        f"but the deployment target is {target}; pass --deployment-target iOS17 (or iOS18), or --precision w8 for "
        "int8 weights only"
    )


def _module_of(const_name: str, names: dict[str, str]) -> str:
    """``p_model_blocks_0_attn_qkv_weight`` -> ``blocks.0.attn.qkv`` (the longest known module path)."""
    stem = const_name.removeprefix("p_").removeprefix("model_")
    best = ""
    for flat, path in names.items():
        if stem.startswith(flat + "_") and len(flat) > len(best.replace(".", "_")):
            best = path
    return best


def _trace(program: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every float value a reference-executor program computes on ``feeds``, by variable name."""
    env = dict(program.constants)
    values = {}
    for name, _ in program.inputs:
        env[name] = values[name] = np.asarray(feeds[name], np.float32)
    for node, frees in zip(program.nodes, program._frees):
        for (name, _), value in zip(node.outputs, program._call(node, env)):
            env[name] = value
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                values[name] = value
        for name in frees:
            del env[name]
    return values
