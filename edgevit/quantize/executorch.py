"""ExecuTorch: lowering a PyTorch program to a ``.pte`` with the XNNPACK delegate, and int8 by PT2E.

**Lowering.** :func:`to_pte` runs ExecuTorch's flow (``to_edge_transform_and_lower`` with the
``XnnpackPartitioner``, then ``to_executorch``) on a graph edgevit first rewrites so that
XNNPACK takes it whole. ExecuTorch's partitioner only takes ops it has a config for; as
exported, a ViT leaves LayerNorm, the no-op ``expand`` of every 4-D matmul, the q/k/v
``split`` and the class-token ``select`` outside the delegate (measured on random-init
``vit_tiny_patch16_224``: 62 delegated subgraphs and 87 CPU kernel calls between them;
``tiny_vit_5m_224``: 52 and 72, the last one a token ``mean`` over a rank-3 tensor, which
XNNPACK's mean config refuses: it takes only 4-D means over the two innermost dimensions).
The rewrites (:data:`REWRITES`, each given and producing ops the partitioner takes):

* every ``nn.LayerNorm`` over the last dimension is replaced, before ``torch.export``, by the
  same arithmetic in ops XNNPACK takes: ``x - mean``, its square, a second mean, ``rsqrt`` and
  the affine ``mul``/``add``, each mean a fully-connected layer with one output and a constant
  ``1/C`` weight (:func:`with_averaging_layer_norms`);
* a ``layer_norm`` call that is no such module takes the same form, each mean a 4-D average
  pool over a ``[rows, 1, C, 1]`` view (no constant needed, but XNNPACK adds a layout copy
  around each pool: on a stack of eight LayerNorm + Linear blocks at ``[1, 197, 192]``, the
  fastest of 300 runs took 4.9 ms with the fully-connected means, 12.0 ms with the pools and
  9.7 ms with LayerNorm left outside the delegate; one thread, on a busy shared machine);
* ``split`` / ``split_with_sizes`` become one ``slice`` per piece (in an int8 program, a channel
  slice of a 4-D tensor is taken in NHWC between two permutes: :func:`_narrow_channels_last`);
* ``select`` becomes a ``slice`` of length one and a ``view`` without that dimension;
* an ``expand`` to the shape its input already has is dropped (the matmul decomposition
  emits one per operand of every 4-D matmul);
* a ``mean`` over one dimension of a tensor that is not a 4-D ``[.., .., H, W]`` pool is
  moved to the last dimension and taken as the 4-D average pool above; a 4-D global mean that
  drops H and W (the CAS-ViT and EfficientFormerV2 heads) keeps them and is viewed to ``[N, C]``.

The first is a module swap (:func:`export_program`), the next three are ATen decompositions
applied before ExecuTorch's own edge lowering (:func:`aten_rewrites`); the last two (three
entries of :data:`REWRITES`) rewrite edge-dialect ops the lowering produces
(:func:`edge_rewrites`). ``rewrite=False`` (in both :func:`export_program` and :func:`to_pte`)
lowers as ExecuTorch's documentation shows, for comparison.

**int8** (:class:`ExecuTorchQuantizer`): PT2E quantizes the PyTorch program *before* it is
lowered, so this quantizer works from the PyTorch model rather than from the converted float
file (which it runs only for the float reference): ExecuTorch's ``XNNPACKQuantizer`` with its
symmetric config (weights int8 per output channel, activations int8 per tensor), ``prepare_pt2e``
/ ``convert_pt2e`` from ``torchao``, activation ranges from edgevit's calibration
(:class:`~edgevit.quantize.calibration.RangeCollector`, as for the other targets). A second
quantizer runs after XNNPACK's: a pad of a quantized tensor shares its quantization
(:func:`edgevit.quantize.pt2e.pad_sharing_quantizer`; without it XNNPACK refused TinyViT's padded windows at load).
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from edgevit._files import write_bytes, write_json
from edgevit.errors import ConversionError, require
from edgevit.formats import Op
from edgevit.formats.pte import PROGRAM_IDENTIFIER, read_ops
from edgevit.quantize.base import TargetQuantizer, block_of, quiet
from edgevit.quantize.calibration import RangeCollector
from edgevit.quantize.metrics import sqnr_db
from edgevit.quantize.recipe import KindRules, Recipe, Unit, mark_positions

#: the graph rewrites that give XNNPACK the whole graph: (name, what it is given -> what it produces)
REWRITES: tuple[tuple[str, str], ...] = (
    ("layer_norm_module", "nn.LayerNorm over the last dim -> sub, mul, rsqrt, mul, add, each mean a linear layer "
                          "with a constant 1/C weight (module swap before torch.export)"),
    ("layer_norm", "any other aten.layer_norm over the last dim -> the same, each mean a 4-D average pool"),
    ("split", "aten.split / split_with_sizes -> one aten.slice per piece (int8: channel slices in NHWC)"),
    ("select", "aten.select -> aten.slice of length 1 and aten.view without that dim"),
    ("noop_expand", "edge expand_copy to its input's own shape -> the input"),
    ("mean_one_dim", "edge mean.dim over one dim, not a 4-D [2, 3] pool -> permute, view, 4-D mean, view"),
    ("mean_no_keepdim", "edge mean.dim over [2, 3] of a 4-D tensor, keepdim False -> the kept mean and a view"),
)


def export_program(module: Any, example: Any, rewrite: bool = True) -> Any:
    """``torch.export`` of ``module`` (in eval mode) on ``example``: what PT2E and :func:`to_pte` start
    from; with ``rewrite``, of a copy whose LayerNorms compute their means as linear layers."""
    import torch

    if rewrite:
        module = with_averaging_layer_norms(module)
    with torch.no_grad():
        return torch.export.export(module, (example,))


def with_averaging_layer_norms(module: Any) -> Any:
    """``module``, or a copy of it in which every ``nn.LayerNorm`` over the last dimension is an
    :class:`AveragingLayerNorm` with the same parameters (the same function, in ops XNNPACK takes)."""
    import torch

    def replaceable(child: Any) -> bool:
        return isinstance(child, torch.nn.LayerNorm) and len(child.normalized_shape) == 1

    if not any(replaceable(child) for child in module.modules()):
        return module
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if replaceable(child):
                setattr(parent, name, _averaging_layer_norm_class()(child))
    return module


@cache
def _averaging_layer_norm_class() -> type:
    import torch

    class AveragingLayerNorm(torch.nn.Module):
        """LayerNorm over the last dimension whose two means are linear layers with a ``1/C`` weight."""

        def __init__(self, norm: torch.nn.LayerNorm) -> None:
            super().__init__()
            width = norm.normalized_shape[0]
            self.register_buffer("average", torch.full((1, width), 1.0 / width))
            self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            centered = x - torch.nn.functional.linear(x, self.average)
            y = centered * torch.rsqrt(torch.nn.functional.linear(centered * centered, self.average) + self.eps)
            if self.weight is not None:
                y = y * self.weight
            return y + self.bias if self.bias is not None else y

    return AveragingLayerNorm


def to_pte(program: Any, rewrite: bool = True, quantized: bool = False) -> bytes:
    """The ``.pte`` bytes of an exported program, lowered to the XNNPACK delegate.

    Args:
        program: a ``torch.export.ExportedProgram`` (ATen dialect; a PT2E-quantized one too).
        rewrite: apply :data:`REWRITES` so that XNNPACK takes the whole graph (False: lower as
            ExecuTorch's documentation shows).
        quantized: ``program`` is PT2E-quantized (see :func:`aten_rewrites`).
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    passes = None
    if rewrite:
        program = program.run_decompositions(aten_rewrites(quantized))
        passes = [edge_rewrites()]
    edge = to_edge_transform_and_lower(program, transform_passes=passes, partitioner=[XnnpackPartitioner()])
    return bytes(edge.to_executorch().buffer)


# -- ATen decompositions ---------------------------------------------------------------------------


def aten_rewrites(quantized: bool = False) -> dict[Any, Callable[..., Any]]:
    """``{ATen op: decomposition}`` for ``ExportedProgram.run_decompositions`` (layer_norm, split, select).

    ``quantized``: a PT2E-quantized program, whose channel splits of a 4-D tensor are sliced in
    NHWC (:func:`_narrow_channels_last`)."""
    import torch

    aten = torch.ops.aten
    narrow = _narrow_channels_last if quantized else _narrow
    return {aten.layer_norm.default: _layer_norm, aten.split.Tensor: partial(_split, narrow=narrow),
            aten.split_with_sizes.default: partial(_split_sizes, narrow=narrow), aten.select.int: _select}


def _mean_last(x: Any) -> Any:
    """Mean over the last dimension, kept: a 4-D average pool over a ``[rows, 1, C, 1]`` view."""
    return x.reshape(-1, 1, x.shape[-1], 1).mean(dim=(2, 3), keepdim=True).reshape(*x.shape[:-1], 1)


def _layer_norm(x: Any, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5,
                cudnn_enable: bool = True) -> Any:
    """LayerNorm over the last dimension in ops XNNPACK takes (over more dimensions: left as it is)."""
    import torch

    if len(normalized_shape) != 1:
        return NotImplemented  # the tracer then keeps the op
    centered = x - _mean_last(x)
    y = centered * torch.rsqrt(_mean_last(centered * centered) + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def _narrow(x: Any, dim: int, start: int, size: int) -> Any:
    return x.narrow(dim, start, size)


def _split(x: Any, split_size: int, dim: int = 0, narrow: Callable[..., Any] = _narrow) -> list[Any]:
    size = x.shape[dim]
    return [narrow(x, dim, start, min(split_size, size - start)) for start in range(0, size, split_size)]


def _split_sizes(x: Any, split_sizes: list[int], dim: int = 0, narrow: Callable[..., Any] = _narrow) -> list[Any]:
    pieces, start = [], 0
    for size in split_sizes:
        pieces.append(narrow(x, dim, start, size))
        start += size
    return pieces


def _narrow_channels_last(x: Any, dim: int, start: int, size: int) -> Any:
    """A slice of the channels of a 4-D NCHW tensor taken in NHWC: permute, slice the last dimension,
    permute back (other slices: as they are).

    Why: in a PT2E-quantized program, XNNPACK's partitioner leaves a channel slice of an NCHW
    tensor outside the delegate, and ExecuTorch 1.5.1's runtime then fails at the first run: the
    delegate before the slices resizes its output to zero channels ("Attempted to resize a static
    tensor. Expected shape (1, 48, 16, 16), but received (1, 0, 16, 16)", then error 0x10). Every
    CAS-ViT splits its channels this way. Sliced in NHWC, the partitioner takes the slice (XNNPACK
    computes in NHWC and cancels the permutes against its own layout changes where it can), and
    int8 ``cas_vit_xs`` lowers to one subgraph."""
    if x.dim() == 4 and dim % 4 == 1:
        return x.permute(0, 2, 3, 1).narrow(3, start, size).permute(0, 3, 1, 2)
    return x.narrow(dim, start, size)


def _select(x: Any, dim: int, index: int) -> Any:
    dim %= x.dim()
    index %= x.shape[dim]
    return x.narrow(dim, index, 1).reshape([size for i, size in enumerate(x.shape) if i != dim])


# -- edge-dialect rewrites -----------------------------------------------------------------------------


def edge_rewrites() -> Any:
    """An ExecuTorch ``ExportPass`` dropping no-op expands and turning one-dim means into 4-D pools."""
    return _edge_pass_class()()


@cache
def _edge_pass_class() -> type:
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import ExportPass

    edge = exir_ops.edge.aten

    class XnnpackRewrites(ExportPass):
        """Given edge ops the XNNPACK partitioner refuses, produces ones it takes (see the module docstring)."""

        def call_operator(self, op, args, kwargs, meta):
            if op == edge.expand_copy.default and tuple(meta["val"].shape) == _shape(args[0]):
                return args[0]
            if op == edge.mean.dim:
                rewritten = self._mean(args, kwargs, meta)
                if rewritten is not None:
                    return rewritten
            return super().call_operator(op, args, kwargs, meta)

        def _mean(self, args, kwargs, meta):
            x, dims = args[0], args[1]
            keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
            shape = _shape(x)
            dims = sorted(d % len(shape) for d in dims or ())
            call = super().call_operator
            if kwargs.get("dtype") is not None or (len(shape) == 4 and dims == [2, 3] and keepdim):
                return None
            if len(shape) == 4 and dims == [2, 3]:  # a global pool that drops H and W: kept, then viewed
                pooled = call(edge.mean.dim, (x, [2, 3], True), {}, meta)
                return call(edge.view_copy.default, (pooled, list(shape[:2])), {}, meta)
            if len(dims) != 1:
                return None
            dim = dims[0]
            if dim != len(shape) - 1:
                order = [i for i in range(len(shape)) if i != dim] + [dim]
                x = call(edge.permute_copy.default, (x, order), {}, meta)
            pooled = call(edge.mean.dim, (call(edge.view_copy.default, (x, [-1, 1, shape[dim], 1]), {}, meta),
                                          [2, 3], True), {}, meta)
            out = [size for i, size in enumerate(shape) if i != dim or keepdim]
            if keepdim:
                out[dim] = 1
            return call(edge.view_copy.default, (pooled, out), {}, meta)

    return XnnpackRewrites


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.to_tensor().shape)


# -- int8 by PT2E ----------------------------------------------------------------------------------------

#: ATen op (as ``torch.export`` writes it) -> kind; the ops ExecuTorch's XNNPACKQuantizer annotates
KIND_RULES = KindRules(
    ops={"aten.linear.default": "linear", "aten.conv2d.default": "conv", "aten.add.Tensor": "add",
         "aten.mul.Tensor": "mul", "aten.cat.default": "other", "aten.adaptive_avg_pool2d.default": "other"},
    grouped={"aten.conv2d.default": "dwconv"},
)
WEIGHTED_OPS = ("aten.linear.default", "aten.conv2d.default")
#: the smallest scale XNNPACK's config lets an observer give (its ``eps``)
OBSERVER_EPS = 2**-12
#: quantized candidate programs kept in memory (the search runs each once, then asks for the chosen one)
KEPT_PROGRAMS = 2


class ExecuTorchQuantizer(TargetQuantizer):
    """int8 for ExecuTorch's XNNPACK delegate by PT2E, from the PyTorch model.

    A candidate is a recipe, not a model file: :meth:`build` writes the ids of the ops it
    quantizes (JSON), :meth:`run` materializes it as PT2E's reference graph (``quantize`` /
    ``dequantize`` around float ops) and runs that in PyTorch, so the sensitivity pass and
    ``--max-drop`` do not lower dozens of candidates (one lowering takes about a minute for a
    ``test_*`` model). The chosen candidate is lowered once (:meth:`describe_file`), checked
    against that reference in ExecuTorch's runtime (:meth:`kernel_check`) and written as the
    ``.pte`` (:meth:`finish`); the export pipeline then verifies it against PyTorch like any
    artifact.
    """

    target = "executorch"
    backend = "executorch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.model is None:
            raise ConversionError("ExecuTorch int8 quantizes the PyTorch model before lowering it (PT2E); pass the "
                                  "model the file was converted from: quantize(..., model=torch_model)")
        if self.layout != "NCHW":
            raise ConversionError(f"the ExecuTorch target takes NCHW input, not {self.layout}")
        require("torchao.quantization.pt2e", "executorch", "ExecuTorch int8 (PT2E)")
        import torch

        shape = read_ops(self.float_path)
        self.example = torch.zeros(shape.tensors[shape.inputs[0]].shape)
        self.program = export_program(self.model, self.example)
        self._annotatable: set[str] = set()  # every op XNNPACKQuantizer could annotate, units or not
        self._units = mark_positions(self._classify())
        self._ranges: dict[str, tuple[float, float]] = {}
        self._programs: dict[tuple[str, ...], Any] = {}
        self._lowered: dict[tuple[str, ...], bytes] = {}

    # -- units ------------------------------------------------------------------------------------

    def _classify(self) -> list[Unit]:
        """The ops XNNPACKQuantizer could annotate, with their kinds; those inside a LayerNorm (its means,
        as :func:`export_program` rewrites them, and its arithmetic) are no units and stay float."""
        units = []
        for node in self.program.graph.nodes:
            if node.op != "call_function":
                continue
            op = str(node.target)
            groups = node.args[6] if op == "aten.conv2d.default" and len(node.args) > 6 else 1
            kind = KIND_RULES.kind(Op(op, node.name, groups=int(groups)))
            if kind is None:
                continue
            self._annotatable.add(node.name)
            scope = _module_path(node)
            if "LayerNorm" in _module_class(node):
                continue
            units.append(Unit(node.name, op, kind, scope, block_of(scope, self.blocks), weighted=op in WEIGHTED_OPS))
        return units

    def units(self) -> list[Unit]:
        return list(self._units)

    def kinds(self) -> tuple[str, ...]:
        return ("conv", "dwconv", "linear", "add", "mul", "other")

    def default_kinds(self) -> tuple[str, ...]:
        return ("conv", "dwconv", "linear", "add", "mul")

    def kind_note(self, kind: str) -> str:
        return "concat and pooling int8 ops save little here; kept in float"

    # -- calibration and candidates ------------------------------------------------------------------

    def calibrate(self, images: np.ndarray, method: str) -> None:
        """Ranges of every node output of the float program on ``images``, by ``method``."""
        import torch

        collector = RangeCollector(method)
        recorder = _recorder(self.program.module())
        with torch.no_grad():
            for batch in self._batches(images):
                collector.collect(recorder(batch))
        self._ranges = collector.ranges()

    def build(self, selected: list[Unit], recipe: Recipe, out: Path) -> None:
        if self.scheme.needs_calibration and selected and not self._ranges:
            raise ConversionError("calibrate before building an int8 ExecuTorch model")
        write_json(out, {"format": CANDIDATE_FORMAT, "units": sorted(u.id for u in selected)})

    def run(self, path: Path, images: np.ndarray) -> np.ndarray:
        """Logits of a ``.pte`` (through edgevit.runtime) or of a candidate (its reference graph in PyTorch)."""
        import torch

        selection = _candidate(path)
        if selection is None:
            return super().run(path, images)
        module = self._quantized(selection).module()
        with torch.no_grad():
            return np.concatenate([module(batch).float().numpy() for batch in self._batches(images)])[:len(images)]

    def describe_file(self, path: Path) -> dict[str, Any]:
        """Lower the chosen candidate (once) and say what XNNPACK was given: subgraphs, int8 values, ops outside."""
        from edgevit.formats.pte import delegated_subgraphs, outside_delegates

        selection = _candidate(path)
        if selection is None:
            return {}
        with self._lowered_file(selection) as lowered:
            graph = read_ops(lowered)
        nodes = Counter()
        for delegate in graph.raw.delegates:
            nodes.update(delegate.nodes)
        outside = outside_delegates(graph)
        return {"delegated_subgraphs": delegated_subgraphs(graph),
                "quantized_xnnpack_values": sum(d.quantized_values for d in graph.raw.delegates),
                "xnnpack_nodes": dict(nodes.most_common()), "outside_delegate": dict(outside.most_common())}

    def kernel_check(self, path: Path, images: np.ndarray) -> dict[str, Any]:
        """The lowered file in ExecuTorch's runtime (XNNPACK's int8 kernels) against PT2E's reference graph."""
        selection = _candidate(path)
        if selection is None:
            return {}
        with self._lowered_file(selection) as lowered:
            kernels = super().run(lowered, images)
        return {"kernels_vs_pt2e_reference": {"sqnr_db": round(sqnr_db(self.run(path, images), kernels), 1),
                                              "images": len(images)}}

    def finish(self, path: Path) -> dict[str, Any]:
        """Replace the chosen candidate at ``path`` by its lowered ``.pte``."""
        selection = _candidate(path)
        if selection is None:
            return {}
        write_bytes(path, self._lower(selection))
        return {"lowered": "XNNPACK delegate, edgevit's rewrites (edgevit.quantize.executorch.REWRITES)"}

    def recipe_options(self) -> dict[str, Any]:
        return {"tool": "PT2E (torchao prepare_pt2e / convert_pt2e) with ExecuTorch's XNNPACKQuantizer",
                "weights": "int8 symmetric, per channel", "activations": "int8 per tensor, ranges from edgevit "
                "calibration", "io": "float32",
                "candidates": "measured on PT2E's reference graph in PyTorch; the chosen one lowered and verified in "
                              "ExecuTorch"}

    # -- helpers ---------------------------------------------------------------------------------------------

    def _batches(self, images: np.ndarray) -> list[Any]:
        """NCHW ``images`` as torch batches of the program's fixed batch size (the last one padded)."""
        import torch

        size = self.example.shape[0]
        batches = []
        for start in range(0, len(images), size):
            chunk = images[start:start + size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
            batches.append(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)))
        return batches

    def _quantized(self, selection: tuple[str, ...]) -> Any:
        """The program with exactly ``selection`` quantized (the last few kept: the search asks again for
        the chosen one)."""
        if selection not in self._programs:
            self._programs[selection] = self._quantize(selection)
            while len(self._programs) > KEPT_PROGRAMS:
                self._programs.pop(next(iter(self._programs)))
        return self._programs[selection]

    def _quantize(self, selection: tuple[str, ...]) -> Any:
        """PT2E prepare with only ``selection`` annotated, edgevit's ranges, convert, export."""
        import torch
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import ComposableQuantizer

        from edgevit.quantize.pt2e import pad_sharing_quantizer

        chosen, annotatable = set(selection), self._annotatable
        quantizer = XNNPACKQuantizer().set_global(_config())
        quantizer.set_filter_function(lambda node: node.name in chosen or node.name not in annotatable)
        with quiet(), torch.no_grad():
            prepared = prepare_pt2e(copy.deepcopy(self.program.module()),
                                    ComposableQuantizer([quantizer, pad_sharing_quantizer()]))
            prepared(self.example)  # sizes the weight observers; activation ranges come from calibration
            _set_ranges(prepared, self._ranges)
            return export_program(convert_pt2e(prepared), self.example)

    @contextlib.contextmanager
    def _lowered_file(self, selection: tuple[str, ...]) -> Iterator[Path]:
        """The lowered candidate as a temporary ``.pte`` file."""
        with tempfile.TemporaryDirectory(prefix="pte.", dir=self.work) as folder:
            path = Path(folder) / "model.pte"
            path.write_bytes(self._lower(selection))
            yield path

    def _lower(self, selection: tuple[str, ...]) -> bytes:
        if selection not in self._lowered:
            with quiet():
                self._lowered[selection] = to_pte(self._quantized(selection), quantized=True)
        return self._lowered[selection]


CANDIDATE_FORMAT = "edgevit-executorch-candidate"


def _candidate(path: Path) -> tuple[str, ...] | None:
    """The unit ids a candidate file selects, or None for a model file (a ``.pte``)."""
    data = Path(path).read_bytes()
    if data[4:8] == PROGRAM_IDENTIFIER or not data.startswith(b"{"):
        return None
    content = json.loads(data)
    return tuple(content["units"]) if content.get("format") == CANDIDATE_FORMAT else None


def _config() -> Any:
    """XNNPACK's symmetric per-channel config, with min/max activation observers (edgevit sets their ranges)."""
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)
    activation = dataclasses.replace(config.input_activation,
                                     observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=OBSERVER_EPS))
    return dataclasses.replace(config, input_activation=activation, output_activation=activation)


def _set_ranges(prepared: Any, ranges: dict[str, tuple[float, float]]) -> None:
    """Give each per-tensor activation observer the calibrated range of the node it observes."""
    import torch
    from torchao.quantization.pt2e import MinMaxObserver

    modules = dict(prepared.named_modules())
    for node in prepared.graph.nodes:
        observer = modules.get(node.target) if node.op == "call_module" else None
        if type(observer) is not MinMaxObserver:
            continue
        source = node.args[0]
        while source.op == "call_module" and isinstance(modules.get(source.target), MinMaxObserver):
            source = source.args[0]
        if source.name in ranges:
            low, high = ranges[source.name]
            observer.min_val, observer.max_val = torch.tensor(low), torch.tensor(high)


def _recorder(module: Any) -> Callable[[Any], dict[str, np.ndarray]]:
    """``record(batch) -> {node name: output}`` for every float tensor a graph module computes."""
    import torch

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if isinstance(result, torch.Tensor) and result.is_floating_point():
                self.values[node.name] = result.detach().numpy()
            return result

    def record(batch: Any) -> dict[str, np.ndarray]:
        interpreter = Recorder(module)
        interpreter.values = {}
        interpreter.run(batch)
        return interpreter.values

    return record


def _module_path(node: Any) -> str:
    """The innermost module a node of an exported program came from (``blocks.0.attn.qkv``), or ``""``."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _module_class(node: Any) -> str:
    """The class of the innermost module a node came from (``torch.nn.modules.linear.Linear``), or ``""``."""
    stack = node.meta.get("nn_module_stack") or {}
    kind = list(stack.values())[-1][1] if stack else ""
    return kind if isinstance(kind, str) else getattr(kind, "__qualname__", str(kind))
