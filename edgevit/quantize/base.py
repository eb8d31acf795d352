"""The interface of a target's quantizer, and the registry that finds one by target name.

A quantizer works on a converted float model file (``model.onnx``, ``model.tflite``,
``model.mlpackage``) and knows four things about it::

    class OnnxQuantizer(TargetQuantizer):
        target = "onnx"
        backend = "onnxruntime"

        def units(self) -> list[Unit]: ...            # the quantizable ops, with kind, scope, block
        def calibrate(self, images, method): ...      # activation ranges, once
        def build(self, selected, recipe, out): ...   # write a file quantizing exactly `selected`
        def kinds(self) / default_kinds(self): ...    # what it can quantize / what pays off

The search (:mod:`edgevit.quantize.search`) is written once against this interface: the
sensitivity pass, the default recipe and ``--max-drop`` build many candidate files from one
calibration and run them with the torch-free runtime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgevit._quiet import quiet
from edgevit.errors import InvalidArgumentError
from edgevit.precision import Precision, check_quantized
from edgevit.quantize.recipe import Recipe, Unit
from edgevit.registry import Registry

#: threads the quantizers run candidate models with
RUN_THREADS = 2


class TargetQuantizer(ABC):
    """Quantizes one converted float model file of one target.

    Args:
        float_path: the converted float32 model file.
        scheme: the precision to produce.
        work: a scratch folder for candidate files (removed by the caller).
        blocks: module path -> model segment (see :func:`module_blocks`).
        layout: the model input's layout (``NCHW`` or ``NHWC``); calibration images are NCHW.
        options: target settings (e.g. the Core ML deployment target).
        model: the (reparameterized) PyTorch model the file was converted from, or None; a quantizer
            that quantizes before conversion (ExecuTorch's PT2E) needs it.
    """

    target: ClassVar[str]
    backend: ClassVar[str]

    def __init__(self, float_path: Path, scheme: Precision, work: Path, blocks: dict[str, str] | None = None,
                 layout: str = "NCHW", options: dict[str, Any] | None = None, model: Any = None) -> None:
        if scheme.name not in self.precisions():
            raise InvalidArgumentError(
                f"the {self.target} quantizer cannot produce {scheme.name!r}; it produces {', '.join(self.precisions())}"
            )
        self.float_path = Path(float_path)
        self.scheme = scheme
        self.work = Path(work)
        self.blocks = blocks or {}
        self.layout = layout
        self.options = dict(options or {})
        self.model = model

    @classmethod
    def precisions(cls) -> tuple[str, ...]:
        """The quantized precisions this quantizer makes (its registration in :data:`QUANTIZERS`)."""
        return supported_precisions(cls.target)

    # -- what the model offers -------------------------------------------------------------------

    @abstractmethod
    def units(self) -> list[Unit]:
        """Every op this quantizer could quantize, in graph order."""

    @abstractmethod
    def kinds(self) -> tuple[str, ...]:
        """Op kinds this quantizer can put in low precision for ``self.scheme``."""

    def default_kinds(self) -> tuple[str, ...]:
        """Kinds quantized unless measured to hurt: those with faster low-precision kernels."""
        return self.kinds()

    def kind_note(self, kind: str) -> str:
        """Why ``kind`` is not among :meth:`default_kinds` (for the recipe's reasons)."""
        return f"{self.target} has no faster low-precision kernel for {kind}"

    # -- the work ----------------------------------------------------------------------------------

    def calibrate(self, images: np.ndarray, method: str) -> None:  # noqa: B027 - weight-only needs none
        """Record activation ranges on ``images`` (NCHW float32) with ``method``."""

    @abstractmethod
    def build(self, selected: list[Unit], recipe: Recipe, out: Path) -> None:
        """Write a model file at ``out`` that quantizes exactly ``selected`` (weights, and
        activations when the scheme has them)."""

    def recipe_options(self) -> dict[str, Any]:
        """Target settings recorded in the recipe (per channel, symmetric, palettization...)."""
        return {}

    def run(self, path: Path, images: np.ndarray) -> np.ndarray:
        """Logits of the model file at ``path`` on NCHW ``images``, through edgevit.runtime."""
        return run_model_file(path, self.backend, images, self.layout)

    def describe_file(self, path: Path) -> dict[str, Any]:
        """Facts about a built file for the report (op counts, integer kernels...)."""
        return {}

    def kernel_check(self, path: Path, images: np.ndarray) -> dict[str, Any]:
        """How closely this CPU's integer kernels compute the built file at ``path`` against a
        CPU-independent reference of the same quantized graph, on ``images`` (for the report)."""
        return {}

    def finish(self, path: Path) -> dict[str, Any]:
        """Last changes to the chosen file at ``path`` (in place); what was done, for the report."""
        return {}


#: one quantizer per target, registered lazily with the quantized precisions it makes (the one
#: place that says which target makes which quantized precision; targets read it from here)
QUANTIZERS: Registry[type[TargetQuantizer]] = Registry("quantizer")
QUANTIZERS.register("onnx", "edgevit.quantize.onnx:OnnxQuantizer", meta=("int8",))
QUANTIZERS.register("tflite", "edgevit.quantize.tflite:TfliteQuantizer", meta=("int8", "w8"))
QUANTIZERS.register("coreml", "edgevit.quantize.coreml:CoreMLQuantizer", meta=("int8", "w8", "w6", "w4"))
QUANTIZERS.register("executorch", "edgevit.quantize.executorch:ExecuTorchQuantizer", meta=("int8",))


def supported_precisions(target: str) -> tuple[str, ...]:
    """Quantized precisions ``target`` supports (without importing its quantizer)."""
    return tuple(QUANTIZERS.meta(target) or ()) if target in QUANTIZERS else ()


def get_quantizer(target: str, precision: str) -> type[TargetQuantizer]:
    """The quantizer class of ``target``; an unsupported precision lists the ones it has."""
    check_quantized(precision)
    if precision not in supported_precisions(target):
        have = supported_precisions(target)
        raise InvalidArgumentError(
            f"the {target} target does not support precision {precision!r}; it supports "
            f"{', '.join(have) if have else 'no quantized precision'}"
        )
    return QUANTIZERS.get(target)


# -- helpers shared by the quantizers ----------------------------------------------------------------


def module_blocks(model: Any) -> dict[str, str]:
    """``{module path: segment name}`` for every submodule of an edge-contract model.

    Segments are the pieces ``model.segments()`` returns (``patch_embed``, ``blocks.3``,
    ``head``); a module belongs to the segment that holds it. Models without segments give ``{}``.
    """
    try:
        segments = model.segments()
    except (AttributeError, NotImplementedError):
        return {}
    owner: dict[int, str] = {}
    for name, segment in segments:
        for module in segment.modules():
            owner.setdefault(id(module), name)
    return {path: owner[id(module)] for path, module in model.named_modules() if path and id(module) in owner}


def float_params(model: Any, example: Any, recipe: Any = None) -> int:
    """Parameters of ``model`` that a quantized file keeps at 4 bytes: everything but the weights
    of its convolutions and linear layers (biases, norms, embeddings, layer scales), plus the
    layers ``recipe`` (a :class:`~edgevit.quantize.recipe.Recipe`) keeps in float.

    What :meth:`edgevit.precision.Precision.weight_bytes` needs as ``float_params`` to predict a
    quantized file's size. When the recipe keeps layers float, the model runs on ``example`` (batch
    1) to find their order: ``first`` and ``last`` are the first and last layers to run, as the
    quantizers mark them in the graph.
    """
    import torch
    from torch import nn

    layers = {path: m for path, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))}
    weights = sum(layer.weight.numel() for layer in layers.values())
    groups = set(recipe.float_groups) if recipe is not None else set()
    if not groups:  # nothing kept whole: no need to run the model for its order
        return sum(p.numel() for p in model.parameters()) - weights
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda module, args, out, path=path: order.append(path))
             for path, m in layers.items()]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    ran = list(dict.fromkeys(order))
    blocks = module_blocks(model) if any(g.startswith("block:") for g in groups) else {}
    kept = 0
    for i, path in enumerate(ran):
        layer = layers[path]
        kind = "linear" if isinstance(layer, nn.Linear) else "dwconv" if layer.groups > 1 else "conv"
        mine = {f"kind:{kind}", *(("first",) if i == 0 else ()), *(("last",) if i == len(ran) - 1 else ())}
        if path in blocks:
            mine.add(f"block:{blocks[path]}")
        if mine & groups:
            kept += layer.weight.numel()
    return sum(p.numel() for p in model.parameters()) - weights + kept


def block_of(scope: str, blocks: dict[str, str]) -> str:
    """The segment of module path ``scope`` (the longest known prefix), or ``""``."""
    scope = scope.removeprefix("model.")
    parts = scope.split(".")
    for end in range(len(parts), 0, -1):
        block = blocks.get(".".join(parts[:end]))
        if block is not None:
            return block
    return ""


def run_model_file(path: Path, backend: str, images: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """Run NCHW ``images`` through a bare model file with one runtime backend, batch by batch."""
    from edgevit.runtime import load

    outs = []
    with quiet(), load(path, backend=backend, threads=RUN_THREADS) as session:
        spec = session.input_specs[0]
        fixed = spec.shape[0] if spec.shape else None
        step = fixed if isinstance(fixed, int) else 16
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            if layout == "NHWC":
                chunk = chunk.transpose(0, 2, 3, 1)
            count = len(chunk)
            if isinstance(fixed, int) and count < fixed:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - count, axis=0)])
            result = session.run({spec.name: np.ascontiguousarray(chunk, dtype=np.float32)})
            outs.append(np.asarray(next(iter(result.values())), np.float32).reshape(len(chunk), -1)[:count])
    return np.concatenate(outs)
