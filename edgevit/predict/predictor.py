"""``predict(artifact, profile) -> Prediction``: an artifact's latency from a device's profile.

The artifact's ops are read with :mod:`edgevit.formats` (the reader the export report uses),
ops computed from constants alone are set aside (the backend folds them when it loads the
model), the rest are grouped by the profile backend's fusion rules
(:mod:`edgevit.predict.fusion`), each group sized as one kernel (:mod:`edgevit.predict.mapping`)
and costed with the models fitted to the profile (:mod:`edgevit.predict.fit`). The total is
the profile's ``run`` time plus every kernel's time; a profile with reference models scales the
kernels by its factors for the model's precision (int8 when any kernel is): one for the token
kinds, one for the rest (:attr:`~edgevit.predict.fit.CostModel.group_scales`), and the rows carry
the scaled times, so that they add up to the total.

Nothing is dropped silently: every op of the main graph lands in exactly one row of
:attr:`Prediction.kernels`, with a status. Ops of a type no table knows, or whose shapes the
file leaves unknown, cost nothing and are counted in :attr:`Prediction.unknown`; kernels whose
kind the profile never timed cost nothing and are counted in :attr:`Prediction.uncalibrated`,
except an int8 kernel whose kind the profile timed in float: it is costed as the float kernel
(an estimate: the int8 recipes quantize an element-wise op or an attention product only inside
a model, never alone, so no calibration model times them in int8) and counted in
:attr:`Prediction.approximated`. :attr:`Prediction.complete` is False when any of the three is
non-empty.

A profile whose models were also timed one request at a time after an idle gap adds a second
figure, :attr:`Prediction.idle_ms`: the same model asked once in a while rather than back to back
(:mod:`edgevit.predict.fit`), what a split plan's piece runs as.

Example:
    >>> p = predict("test_vit-onnx-fp32", load_profile("here-onnxruntime.json"))  # doctest: +SKIP
    >>> print(p.table(top=3))  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgevit.artifact import MANIFEST_NAME, read_manifest
from edgevit.errors import ArtifactError, InvalidArgumentError
from edgevit.formats import OpGraph
from edgevit.predict.fit import PREDICTOR_VERSION, CostModel, fit, idle_time
from edgevit.predict.fusion import RULES, group_ops
from edgevit.predict.kernels import Kernel
from edgevit.predict.layout import LAYOUTS
from edgevit.predict.mapping import OPS, io_bytes, kernel_from_tensor, kernel_of, op_dtype
from edgevit.predict.profile import DeviceProfile, load_profile

__all__ = ["KernelPrediction", "Prediction", "kernel_counts", "map_kernels", "predict", "read_graph"]

#: statuses of a row: costed, costing nothing by nature, folded at load, or not costed (and why)
STATUSES = ("ok", "free", "folded", "approximated", "uncalibrated", "unknown", "unsized")
#: the statuses of rows that carry a time
COSTED = ("ok", "approximated")
_FOLDABLE_OUTPUTS = ("Shape", "Size")  # static-shape queries: their outputs are constants once shapes are known


@dataclass(frozen=True)
class KernelPrediction:
    """One row of a prediction: the ops that run as one kernel, and its predicted time.

    Attributes:
        ops: indices into the graph's main ops (the first is the anchor); empty for a kernel
            the backend adds and the file does not hold (a layout reorder, placed beside the op
            it serves).
        op_types: their types, in the same order (a reorder: ``ReorderInput`` / ``ReorderOutput``).
        kernel: the kernel they run as (None for unknown and unsized ops).
        ms: its predicted time (0 unless ``status`` is ``"ok"`` or ``"approximated"``).
        status: one of :data:`STATUSES`.
        fused: the fusion rules that grouped the ops (a reorder: the backend's layout, ``nchwc``).
    """

    ops: tuple[int, ...]
    op_types: tuple[str, ...]
    kernel: Kernel | None
    ms: float
    status: str
    fused: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prediction:
    """A predicted latency with its breakdown (plain data).

    Attributes:
        total_ms: ``run_ms`` + ``io_ms`` + the sum of every row's ``ms``.
        run_ms: the fixed cost of one inference call, from the profile.
        io_ms: what the call pays to copy the model's inputs in and its outputs out (0: the
            profile did not measure it).
        kernels: one row per kernel, in graph order.
        unknown: ``{op type: count}`` of ops not costed because no table knows them or a shape is unknown.
        uncalibrated: ``{"kind dtype": count}`` of kernels the profile has no timings for.
        approximated: ``{"kind dtype": count}`` of int8 kernels costed as their float kind.
        backend / format / profile: what was predicted for, and the profile's summary line.
        predictor_version: :data:`edgevit.predict.fit.PREDICTOR_VERSION`.
        scale / scale_references: the factor the kernels were multiplied by, as a whole (their
            scaled sum over their sum as fitted), from the profile's reference models
            (:mod:`edgevit.predict.fit`), and how many reference models gave it (0: none, 1.0).
        group_scale: ``(token kinds' factor, the rest's factor)``, what each row was multiplied by
            (:data:`~edgevit.predict.fit.TOKEN_KINDS`; None: no references).
        scale_range: the lowest and highest of those references' own single factors (None: no
            references); :attr:`range_ms` is the prediction at each.
        idle_curve / idle_points / idle_gap_ms: one request after ``idle_gap_ms`` of idle takes
            ``total_ms`` times the curve's ratio at ``total_ms`` (:attr:`idle_ms`,
            :func:`edgevit.predict.fit.idle_ratio`), from ``idle_points`` models timed both ways;
            an empty curve: the profile did not time models that way.
        notes: what the fitted profile could not vouch for (:attr:`CostModel.notes`), shown by :meth:`table`.
    """

    total_ms: float
    run_ms: float
    kernels: tuple[KernelPrediction, ...]
    unknown: Mapping[str, int] = field(hash=False)
    uncalibrated: Mapping[str, int] = field(hash=False)
    approximated: Mapping[str, int] = field(default_factory=dict, hash=False)
    backend: str = ""
    format: str = ""
    profile: str = ""
    predictor_version: int = PREDICTOR_VERSION
    scale: float = 1.0
    scale_references: int = 0
    scale_range: tuple[float, float] | None = None
    group_scale: tuple[float, float] | None = None
    idle_curve: tuple[tuple[float, float], ...] = ()
    idle_points: int = 0
    idle_gap_ms: float = 0.0
    io_ms: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def idle_ms(self) -> float | None:
        """One request after an idle gap (None: the profile does not say)."""
        return idle_time(self.idle_curve, self.total_ms)

    @property
    def range_ms(self) -> tuple[float, float] | None:
        """The prediction with the kernels scaled by the lowest and by the highest reference's own
        single factor instead of the fitted ones, widened to hold the prediction itself: where the
        references say this model's time may land (on this project's benchmark the measured time
        fell inside it in 23 of 32 cells on each device, ``docs/predict.md``); None without references."""
        if self.scale_range is None or not self.scale:
            return None
        fixed, kernels = self.run_ms + self.io_ms, self.total_ms - self.run_ms - self.io_ms
        low, high = (fixed + kernels * factor / self.scale for factor in self.scale_range)
        return min(low, self.total_ms), max(high, self.total_ms)

    @property
    def complete(self) -> bool:
        """Every op was costed from a timing of its own kind and precision (nothing unknown, unsized, uncalibrated or approximated)."""
        return not self.unknown and not self.uncalibrated and not self.approximated

    def by_kind(self) -> dict[str, float]:
        """``{kernel kind: ms}``, largest first."""
        totals: dict[str, float] = defaultdict(float)
        for row in self.kernels:
            if row.kernel is not None:
                totals[row.kernel.kind] += row.ms
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_ms": self.total_ms, "run_ms": self.run_ms, "io_ms": self.io_ms, "backend": self.backend, "format": self.format,
            "profile": self.profile, "predictor_version": self.predictor_version, "complete": self.complete,
            "scale": self.scale, "scale_references": self.scale_references,
            "scale_range": list(self.scale_range) if self.scale_range else None,
            "group_scale": list(self.group_scale) if self.group_scale else None,
            "range_ms": list(self.range_ms) if self.range_ms else None,
            "idle_ms": self.idle_ms, "idle_gap_ms": self.idle_gap_ms, "idle_points": self.idle_points,
            "idle_curve": [list(knot) for knot in self.idle_curve],
            "unknown": dict(self.unknown), "uncalibrated": dict(self.uncalibrated),
            "approximated": dict(self.approximated), "notes": list(self.notes),
            "kernels": [{"ops": list(r.ops), "op_types": list(r.op_types), "status": r.status, "ms": r.ms,
                         "fused": list(r.fused), "kernel": r.kernel.describe() if r.kernel else None}
                        for r in self.kernels],
        }

    def table(self, top: int | None = None) -> str:
        """A plain-text breakdown, the slowest kernels first (``top`` of them)."""
        rows = sorted((r for r in self.kernels if r.status in COSTED), key=lambda r: -r.ms)[:top]
        lines = [f"predicted {self.total_ms:.3f} ms ({self.backend}, {self.profile}); run overhead {self.run_ms:.3f} ms"
                 + (f", inputs and outputs {self.io_ms:.3f} ms" if self.io_ms else "")]
        if self.scale_references:
            groups = (f": token kinds x{self.group_scale[0]:.3f}, the rest x{self.group_scale[1]:.3f}"
                      if self.group_scale else "")
            lines.append(f"kernels scaled by {self.scale:.3f}{groups} (fitted to {self.scale_references} reference models)")
            if self.range_ms is not None and self.scale_references > 1:
                low, high = self.range_ms
                lines.append(f"the references ranged x{self.scale_range[0]:.3f} to x{self.scale_range[1]:.3f}: "
                             f"{low:.3f} to {high:.3f} ms")
        if self.idle_ms is not None:
            lines.append(f"one request after {self.idle_gap_ms:g} ms idle: {self.idle_ms:.3f} ms (x"
                         f"{self.idle_ms / self.total_ms:.2f}, from {self.idle_points} models timed both ways)")
        lines += [f"{r.ms:9.4f} ms  {r.kernel.describe():<48} {'+'.join(r.op_types)}" for r in rows if r.kernel]
        if not self.complete:
            lines.append(f"not costed: unknown {dict(self.unknown)}, uncalibrated {dict(self.uncalibrated)}; "
                         f"int8 costed as float: {dict(self.approximated)}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def read_graph(source: str | Path | OpGraph) -> OpGraph:
    """The :class:`OpGraph` of an artifact folder, an ``.onnx`` / ``.tflite`` file, or ``source`` itself.

    Raises:
        ArtifactError: the path does not exist or is not a model file the predictor reads.
    """
    if isinstance(source, OpGraph):
        return source
    path = Path(source)
    if path.is_dir() and (path / MANIFEST_NAME).exists():
        path = path / read_manifest(path).model_file
    if not path.is_file():
        raise ArtifactError(f"{str(source)!r} is not an artifact folder or a model file")
    if path.suffix == ".onnx":
        from edgevit.formats.onnx import read_ops
    elif path.suffix == ".tflite":
        from edgevit.formats.tflite import read_ops
    else:
        raise ArtifactError(f"{str(path)!r}: the predictor reads .onnx and .tflite files, got {path.suffix or 'no suffix'!r}")
    return read_ops(path)


def predict(source: str | Path | OpGraph, profile: str | Path | DeviceProfile | CostModel) -> Prediction:
    """Predict the latency of one inference of ``source`` on the device ``profile`` was measured on.

    Args:
        source: an artifact folder, an ``.onnx`` or ``.tflite`` file, or an :class:`OpGraph`.
        profile: a profile file (read with :func:`~edgevit.predict.profile.load_profile`), a
            :class:`DeviceProfile` (fitted here) or an already fitted :class:`CostModel`.

    Raises:
        InvalidArgumentError: the profile's backend cannot run the artifact's format, or
            ``profile`` is none of the above.
        ProfileError: the profile file is missing, corrupt or from another edgevit version.
        ArtifactError: ``source`` is not a model the predictor reads.

    Example:
        >>> predict("test_vit-tflite-fp32", load_profile("here-litert.json")).total_ms  # doctest: +SKIP
        0.35
    """
    if isinstance(profile, (str, Path)):
        profile = load_profile(profile)
    if not isinstance(profile, (DeviceProfile, CostModel)):
        raise InvalidArgumentError(f"predict() takes a profile file, a DeviceProfile or a fitted CostModel as its profile, "
                                   f"got {type(profile).__name__}; read one with edgevit.predict.load_profile(path)")
    model = profile if isinstance(profile, CostModel) else fit(profile)
    graph = read_graph(source)
    rows = _rows(graph, model, _rules(model.backend, graph), model.cpu_flags)
    precision = "int8" if any(r.kernel is not None and r.kernel.dtype == "int8" for r in rows) else "fp32"
    references = model.scales.get(precision, (1.0, 0))[1]
    spread = model.scale_ranges.get(precision) if references else None
    fitted = sum(r.ms for r in rows)
    rows = [replace(r, ms=r.ms * model.factor(r.kernel.kind, precision)) if r.kernel is not None else r for r in rows]
    factor = sum(r.ms for r in rows) / fitted if fitted else model.factor("", precision)
    unknown = Counter(r.op_types[0] for r in rows if r.status in ("unknown", "unsized"))
    uncalibrated = _count(rows, "uncalibrated")
    io = model.io_ms(io_bytes(graph))
    return Prediction(model.run_ms + io + sum(r.ms for r in rows), model.run_ms, tuple(rows), dict(unknown),
                      uncalibrated, _count(rows, "approximated"), model.backend, graph.format, model.profile,
                      scale=factor, scale_references=references, scale_range=spread,
                      group_scale=model.group_scales.get(precision) if references else None, idle_curve=model.idle_curve,
                      idle_points=model.idle_points, idle_gap_ms=model.idle_gap_ms, io_ms=io, notes=model.notes)


def _count(rows: list[KernelPrediction], status: str) -> dict[str, int]:
    """``{"kind dtype": count}`` of the rows with ``status``."""
    return dict(Counter(f"{r.kernel.kind} {r.kernel.dtype}" for r in rows if r.status == status and r.kernel))


def map_kernels(source: str | Path | OpGraph, backend: str,
                cpu_flags: tuple[str, ...] | None = None) -> tuple[KernelPrediction, ...]:
    """The kernels ``backend`` runs for ``source``, not costed (every ``ms`` is 0; ``"ok"`` rows are
    the ones a profile would price). The probe checks its calibration models with it.

    ``cpu_flags`` are the device's (they decide the layout conversions a backend adds,
    :mod:`edgevit.predict.layout`); default: this machine's.

    Example:
        >>> [r.kernel.kind for r in map_kernels("linear.onnx", "onnxruntime") if r.status == "ok"]  # doctest: +SKIP
        ['linear']
    """
    from edgevit.environment import cpu_flags as local_flags

    graph = read_graph(source)
    return tuple(_rows(graph, None, _rules(backend, graph), local_flags() if cpu_flags is None else cpu_flags))


def kernel_counts(source: str | Path | OpGraph, backend: str,
                  cpu_flags: tuple[str, ...] | None = None) -> tuple[tuple[Kernel, int], ...]:
    """``((kernel, count), ...)``: the kernels :func:`map_kernels` prices in ``source`` (its ``"ok"``
    rows), each with how often it runs, sorted by description; what a profile's
    :class:`~edgevit.predict.profile.ReferenceTiming` records of a reference model."""
    counts = Counter(row.kernel for row in map_kernels(source, backend, cpu_flags)
                     if row.status == "ok" and row.kernel is not None)
    return tuple(sorted(counts.items(), key=lambda kv: kv[0].describe()))


def _rules(backend: str, graph: OpGraph):
    rules = RULES.get(backend) if backend in RULES else None
    if rules is None or rules.format != graph.format:
        known = ", ".join(f"{name} ({RULES.get(name).format})" for name in RULES.names())
        raise InvalidArgumentError(f"a profile of backend {backend!r} cannot predict a {graph.format} model; "
                                   f"profiles per format: {known}")
    return rules


def _rows(graph: OpGraph, model: CostModel | None, rules, cpu_flags: tuple[str, ...]) -> list[KernelPrediction]:
    before, after = defaultdict(list), defaultdict(list)  # op index -> the layout conversions the backend adds around it
    for reorder in LAYOUTS[rules.layout](graph, cpu_flags) if rules.layout else ():
        (before if reorder.node == "ReorderInput" else after)[reorder.op].append(reorder)
    folded = _folded(graph)
    graph = _with_folded_constants(graph, folded)  # a weight behind a folded DequantizeLinear is still a weight
    ops = graph.main_ops
    groups = {g.anchor: g for g in group_ops(graph, rules, skip=folded)}
    grouped = {i for g in groups.values() for i in g.ops}
    rows = []
    for i, op in enumerate(ops):
        rows += [_reorder_row(r, model, rules.layout) for r in before.get(i, ())]
        if i in folded:
            rows.append(KernelPrediction((i,), (op.type,), None, 0.0, "folded"))
        elif i in groups:
            g = groups[i]
            members = (i, *sorted(g.ops - {i}))
            kernel = _group_kernel(g.kind, op, graph) if g.kind else kernel_of(op, graph)
            if kernel is not None and g.dtype is not None:
                kernel = replace(kernel, dtype=g.dtype)
            rows.append(_costed(members, tuple(ops[j].type for j in members), kernel, model, tuple(g.rules),
                                known=op.type in OPS[graph.format] or g.kind is not None))
        elif i not in grouped:
            rows.append(_costed((i,), (op.type,), kernel_of(op, graph), model, (), known=op.type in OPS[graph.format]))
        rows += [_reorder_row(r, model, rules.layout) for r in after.get(i, ())]
    return rows


def _reorder_row(reorder, model: CostModel | None, layout: str) -> KernelPrediction:
    """A layout conversion the backend adds at op ``reorder.op``, as a ``reorder`` kernel."""
    kernel = Kernel.of("reorder", E=reorder.elements) if reorder.elements else None
    return _costed((), (reorder.node,), kernel, model, (layout,), known=True)


def _costed(ops, types, kernel: Kernel | None, model: CostModel | None, fused, known: bool) -> KernelPrediction:
    if kernel is None:
        return KernelPrediction(ops, types, None, 0.0, "unsized" if known else "unknown", fused)
    ms, approximated = model.price(kernel) if model is not None else (0.0, False)
    if approximated:
        return KernelPrediction(ops, types, kernel, ms, "approximated", fused)
    if ms is None:
        return KernelPrediction(ops, types, kernel, 0.0, "uncalibrated", fused)
    return KernelPrediction(ops, types, kernel, ms, "free" if kernel.kind == "free" else "ok", fused)


def _group_kernel(kind: str, op, graph: OpGraph) -> Kernel | None:
    """A fused group's kernel of its rule's ``kind``, sized on the anchor's first input (None: shape unknown)."""
    tensor = graph.tensors.get(op.inputs[0]) if op.inputs else None
    if tensor is None or tensor.shape is None or any(d is None for d in tensor.shape):
        return None
    return kernel_from_tensor(kind, tuple(int(d) for d in tensor.shape), op_dtype(op, graph))


def _with_folded_constants(graph: OpGraph, folded: set[int]) -> OpGraph:
    """``graph`` with the outputs of folded ops marked constant (what the backend holds after loading)."""
    outputs = {key for i in folded for key in graph.main_ops[i].outputs}
    tensors = {key: replace(t, constant=True) if key in outputs else t for key, t in graph.tensors.items()}
    return replace(graph, tensors=tensors)


def _folded(graph: OpGraph) -> set[int]:
    """Indices of main ops computed from constants only (and static shape queries): folded when the model loads."""
    constant = set(graph.constants())
    folded = set()
    for i, op in enumerate(graph.main_ops):
        static_query = op.type in _FOLDABLE_OUTPUTS and all(
            graph.tensors.get(k) is not None and graph.tensors[k].shape is not None
            and None not in graph.tensors[k].shape for k in op.inputs)
        if static_query or all(k in constant for k in op.inputs):
            folded.add(i)
            constant.update(op.outputs)
    return folded
