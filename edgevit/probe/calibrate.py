"""Probe a device: export the calibration set, time each model, write a profile.

For each kernel of the calibration set (:func:`edgevit.predict.calibration.calibration_kernels`)
the probe builds its module (:mod:`edgevit.probe.modules`), exports it with edgevit's exporter
to the backend's format (not verified: the numbers do not matter, the shapes do), reads the
file back with the predictor's own mapping (:func:`edgevit.predict.map_kernels`), checks that
it holds a kernel of the intended kind, and times it with a timer (:mod:`edgevit.probe.timers`):
``warmup`` untimed calls, then ``rounds`` timed ones, whose median is the pass's figure. The
probe makes ``passes`` sweeps over the whole set in shuffled orders and keeps each model's
median over them. The kinds that chain are also built as a chain of ``chain`` copies, so that
the fit can tell a kernel's cost inside a model from its cost alone. The other kernels the file
holds (layout transposes, a slice, the chain's other copies) are recorded as the timing's ``extra``.
A model whose file holds no kernel of the intended kind, or of a kind the backend never runs
as one kernel (:attr:`edgevit.predict.fusion.RuleSet.absent`), is left out and named in
``skipped``.

Reference models (whole models, optional) are timed in the same passes, back to back. With
``idle_gap_ms`` > 0, a ladder of calibration models (:data:`IDLE_LADDER` of them, spread over the
sizes the passes measured) and the references are then also timed one request at a time, each
after that long idle (their ``idle_ms``), in ``passes`` sweeps of their own: a split plan's
pieces run in that second regime, which the predictor then prices too (:mod:`edgevit.predict.fit`).

:func:`probe_local` times in this process; :func:`probe_remote` on a device agent
(``edgevit serve``), with the agent's device-side timings.

Example:
    >>> result = probe_local("onnxruntime", preset="quick", rounds=5, threads=1)  # doctest: +SKIP
    >>> save_profile(result.profile, "here-onnxruntime.json")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgevit._progress import Progress
from edgevit.errors import InvalidArgumentError
from edgevit.predict import (
    DeviceProfile,
    Kernel,
    KernelTiming,
    Measurement,
    ReferenceTiming,
    kernel_counts,
    map_kernels,
)
from edgevit.predict.calibration import calibration_kernels
from edgevit.predict.fusion import RULES
from edgevit.predict.kernels import MAPPING_VERSION
from edgevit.predict.mapping import io_bytes
from edgevit.predict.predictor import read_graph
from edgevit.probe.timers import AgentTimer, LocalTimer

__all__ = ["CHAIN", "TARGETS", "ProbeResult", "calibration_models", "export_calibration_model", "probe", "probe_local", "probe_remote"]

#: backend -> the export target whose files it runs
TARGETS = {"onnxruntime": "onnx", "litert": "tflite"}
#: the most sweeps a probe makes over the calibration set
MAX_PASSES = 20
#: copies of a kernel in a chained calibration model (the default), and the most a probe builds
CHAIN, MAX_CHAIN = 4, 16
#: how long a pass times each model, at least (ms): ten periods of a 10 ms CPU quota
WINDOW_MS, MAX_WINDOW_MS = 100.0, 10_000.0
#: the idle gap before each request when models are also timed one at a time (ms), and the longest
IDLE_GAP_MS, MAX_IDLE_GAP_MS = 20.0, 10_000.0
#: how many calibration models, spread over the sizes measured, are also timed after an idle gap
IDLE_LADDER = 24


@dataclass(frozen=True)
class ProbeResult:
    """A probe's profile, the calibration models it could not use (``(kernel, why)``), and how long it took."""

    profile: DeviceProfile
    skipped: tuple[tuple[Kernel, str], ...]
    seconds: float


def probe_local(backend: str = "onnxruntime", *, threads: int | None = None, device: str | None = None,
                **options: Any) -> ProbeResult:
    """Time the calibration set in this process with ``backend`` (see :func:`probe` for ``options``).

    Example:
        >>> probe_local("litert", preset="quick", rounds=5, threads=2).profile.summary()  # doctest: +SKIP
    """
    _check(backend, options)
    return probe(backend, LocalTimer(backend, threads, device), **options)


def probe_remote(url: str, backend: str = "onnxruntime", *, token_file: str | Path | None = None,
                 tls_ca: str | Path | None = None, tls_cert: str | Path | None = None, tls_key: str | Path | None = None,
                 **options: Any) -> ProbeResult:
    """Time the calibration set on the device agent at ``url`` (``host:port``), device-side.

    The agent needs an admin token if it asks for one (models are uploaded); each model is
    unloaded after it is timed.

    Raises:
        AgentError: the agent refused, or does not offer ``backend``.
    """
    _check(backend, options)
    connection = {key: value for key, value in (("token_file", token_file), ("tls_ca", tls_ca), ("tls_cert", tls_cert),
                                                ("tls_key", tls_key)) if value is not None}
    with AgentTimer(backend, url, **connection) as timer:
        return probe(backend, timer, **options)


def probe(backend: str, timer: Any, *, preset: str = "standard", precisions: tuple[str, ...] = ("fp32",),
          kernels: tuple[Kernel, ...] | None = None, rounds: int = 20, warmup: int = 3, passes: int = 3,
          chain: int = CHAIN, window_ms: float = WINDOW_MS, workdir: str | Path | None = None,
          seed: int | None = None, references: tuple[str | Path, ...] = (), idle_gap_ms: float = IDLE_GAP_MS,
          progress: bool | None = None) -> ProbeResult:
    """Time the calibration set with ``timer`` and return the profile.

    Args:
        backend: ``"onnxruntime"`` or ``"litert"``.
        timer: a :class:`~edgevit.probe.timers.LocalTimer` or :class:`~edgevit.probe.timers.AgentTimer`.
        preset / kernels: the calibration preset, or the kernels themselves.
        precisions: ``("fp32",)`` or ``("fp32", "int8")``: int8 adds the preset's quantizable
            kernels (:data:`~edgevit.predict.calibration.INT8_KINDS`), exported with edgevit's int8 recipe.
        rounds / warmup: timed and untimed calls per model and pass.
        window_ms: a pass times a model over at least this long, back to back, and keeps the
            mean run (a device that rations its CPU runs a short burst at full speed; a model
            of hundreds of kernels never gets that; see :mod:`edgevit.probe.timers`).
        passes: sweeps over the whole set, each in its own shuffled order; a kernel's timing is the
            median of its passes. A shared or throttling device drifts by 10-30% over seconds, and
            one sweep times a kind's kernels one after another, in the same phase; spreading each
            kernel over the probe's whole length averages the drift out.
        chain: also time, for the kinds that chain (:data:`~edgevit.probe.modules.CHAINS`), a
            model running ``chain`` copies of the kernel one after another (1: none). A kernel
            alone in a model costs more than inside one (its threads, caches and the first call
            of its code are its own); the fit tells that isolation apart from the kernel's own cost
            by the two models, and predictions leave it out.
        seed: shuffle the first pass too, with this seed (default: the first pass in the set's
            order, the later ones shuffled). Probes of one pass each, taken between other work and
            merged with :func:`~edgevit.predict.merge_profiles`, then each visit the set in their own order.
        workdir: where the calibration artifacts are written (default: a temporary folder, removed);
            given again (another device, the same backend), the files already there are reused.
        references: exported artifact folders of whole models (the backend's target, any
            precision), timed in the same passes as the calibration models and kept in the profile
            with the kernels the predictor maps them to: the fit scales predictions by them
            (:mod:`edgevit.predict.fit`). A model of each family you will predict, in each
            precision, is a good set; their exports need no real weights.
        idle_gap_ms: after the passes, also time :data:`IDLE_LADDER` calibration models spread over
            the sizes measured, and each reference, ``rounds`` times one request at a time, each
            after this long idle, in ``passes`` sweeps (0: not), so that predictions give a model's
            time when it is asked once in a while, as a split plan's pieces are
            (:attr:`~edgevit.predict.Prediction.idle_ms`).
        progress: show a progress bar on stderr (default: on a terminal).

    Raises:
        InvalidArgumentError: an unknown backend, rounds / warmup / passes / chain / window / idle gap out of
            range, or a reference that is not an artifact of the backend's target (checked before anything is timed).
    """
    _check(backend, {"rounds": rounds, "warmup": warmup, "passes": passes, "chain": chain, "window_ms": window_ms,
                     "idle_gap_ms": idle_gap_ms})
    if kernels is None:
        kernels = tuple(k for dtype in precisions for k in calibration_kernels(preset, dtype))
    stamp = timer.stamp()
    start = time.perf_counter()
    whole = [_reference(Path(folder), backend, stamp.cpu_flags) for folder in references]
    skipped: list[tuple[Kernel, str]] = []
    ready: list[tuple[KernelTiming | ReferenceTiming, Path, tuple[int, ...]]] = []
    models = calibration_models(kernels, chain)
    with tempfile.TemporaryDirectory(prefix="edgevit-probe-") as scratch, \
            Progress(len(models) * (1 + passes) + len(whole) * passes, f"probe {backend} ({stamp.where})",
                     enabled=progress) as bar:
        root = Path(workdir) if workdir is not None else Path(scratch)
        for index, kernel, copies in models:  # the first pass exports (or reuses) each model as it goes
            bar.note(kernel.describe() + (f" x{copies}" if copies > 1 else ""))
            outcome = _prepare(kernel, index, backend, root, copies, stamp.cpu_flags)
            if isinstance(outcome, str):
                if copies == 1 or all(k != kernel for k, _ in skipped):  # a kernel skipped alone is named once
                    skipped.append((kernel, outcome if copies == 1 else f"a chain of {copies}: {outcome}"))
                bar.update(1 + passes)
                continue
            ready.append(outcome)
            bar.update(1)
        ready += whole
        samples: list[list[float]] = [[] for _ in ready]
        idle: dict[int, list[float]] = {}
        order = list(range(len(ready)))
        shuffle = np.random.default_rng(0 if seed is None else seed)
        if seed is not None:
            shuffle.shuffle(order)
        for done in range(passes):
            for i in order:
                timing, path, shape = ready[i]
                what = timing.model if isinstance(timing, ReferenceTiming) else timing.kernel.describe()
                bar.note(f"pass {done + 1}/{passes}: {what}")
                samples[i].append(timer.time(path, {"x": _input(shape, 0)}, rounds, warmup, window_ms=window_ms))
                bar.update(1)
            shuffle.shuffle(order)
        if idle_gap_ms > 0:
            ladder = _ladder([(i, float(np.median(s))) for i, s in enumerate(samples)
                              if isinstance(ready[i][0], KernelTiming) and ready[i][0].kernel.kind != "run"])
            chosen = ladder + [i for i, (t, _, _) in enumerate(ready) if isinstance(t, ReferenceTiming)]
            bar.total = (bar.total or 0) + passes * len(chosen)
            for done in range(passes):
                shuffle.shuffle(chosen)
                for i in chosen:
                    timing, path, shape = ready[i]
                    what = timing.model if isinstance(timing, ReferenceTiming) else timing.kernel.describe()
                    bar.note(f"idle pass {done + 1}/{passes}: {what}, one request after {idle_gap_ms:g} ms idle")
                    idle.setdefault(i, []).append(timer.time_idle(path, {"x": _input(shape, 0)}, rounds, warmup,
                                                                  idle_gap_ms))
                    bar.update(1)
    measured = [replace(timing, ms=float(np.median(s)), **({"idle_ms": float(np.median(idle[i]))} if i in idle else {}))
                for i, ((timing, _, _), s) in enumerate(zip(ready, samples, strict=True))]
    timings = tuple(t for t in measured if isinstance(t, KernelTiming))
    profile = DeviceProfile(
        device=stamp.device, backend=backend, backend_version=stamp.backend_version, threads=stamp.threads,
        measurement=Measurement(rounds, warmup, "mean", stamp.where, passes, chain, window_ms,
                                idle_gap_ms if idle else 0.0),
        environment=stamp.environment,
        cpu_flags=stamp.cpu_flags, created_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        edgevit=_edgevit_version(), timings=timings,
        references=tuple(t for t in measured if isinstance(t, ReferenceTiming)), mapping_version=MAPPING_VERSION,
    )
    return ProbeResult(profile, tuple(skipped), time.perf_counter() - start)


def _ladder(sized: list[tuple[int, float]], count: int = IDLE_LADDER) -> list[int]:
    """Up to ``count`` of the ``(index, ms)`` models, evenly spread over their sizes (by rank)."""
    ranked = [i for i, _ in sorted(sized, key=lambda pair: pair[1])]
    if len(ranked) <= count:
        return ranked
    return [ranked[round(k * (len(ranked) - 1) / (count - 1))] for k in range(count)]


def calibration_models(kernels: tuple[Kernel, ...], chain: int = CHAIN) -> tuple[tuple[int, Kernel, int], ...]:
    """The models a probe of ``kernels`` times, as ``(index, kernel, copies)``: each kernel alone,
    and a chain of ``chain`` copies of it where its kind chains."""
    from edgevit.probe.modules import CHAINS

    alone = tuple((i, k, 1) for i, k in enumerate(kernels))
    chained = tuple((i, k, chain) for i, k in enumerate(kernels) if chain > 1 and k.kind in CHAINS)
    return alone + chained


def export_calibration_model(kernel: Kernel, index: int, backend: str, root: Path,
                             copies: int = 1) -> tuple[Path, tuple[int, ...]]:
    """Export the calibration model of ``kernel`` (``copies`` > 1: a chain of that many) for
    ``backend`` under ``root``: (artifact folder, input shape)."""
    from edgevit.export import Piece, export
    from edgevit.probe.modules import module_for

    module, shape = module_for(kernel, copies)
    times = f"x{copies}" if copies > 1 else ""
    name = f"calib{index:03d}{times}-{kernel.kind}-{kernel.dtype}-{_digest(kernel)}"
    done = root / f"{name}-{TARGETS[backend]}-{kernel.dtype}"
    if (done / "manifest.json").is_file():  # a workdir given again: the same kernel was exported before
        return done, shape
    suffix = f"{times}-{kernel.kind}-{kernel.dtype}-{_digest(kernel)}-{TARGETS[backend]}-{kernel.dtype}"
    moved = sorted(p for p in root.glob(f"calib[0-9][0-9][0-9]{suffix}") if (p / "manifest.json").is_file())
    if moved:  # the same kernel at another place in a grown calibration set (only the input seeds differ)
        return moved[0], shape
    calibration = np.stack([_input(shape[1:], index + 1 + i) for i in range(8)])  # int8: what the recipe calibrates on
    piece = Piece(module, _input(shape, index), calibration=calibration, name=name,
                  classifies=False, note="an edgevit calibration kernel")
    artifact = export(piece, target=TARGETS[backend], precision=kernel.dtype, out=root, verify=False, quiet=True,
                      progress=False)
    return Path(artifact.path), shape


def _prepare(kernel: Kernel, index: int, backend: str, root: Path, copies: int = 1,
             cpu_flags: tuple[str, ...] | None = None) -> tuple[KernelTiming, Path, tuple[int, ...]] | str:
    """The calibration model of one kernel (or a chain of ``copies``), ready to time (its timing
    with ``ms`` still 0, the artifact, the input shape), or why it cannot be used. The other
    kernels the file holds, the chain's other copies and the layout conversions the backend adds
    on a device with ``cpu_flags`` (default: this machine's) among them, are the timing's ``extra``."""
    if kernel.kind in RULES.get(backend).absent:
        return f"{backend} runs no {kernel.kind} kernel (the predictor never maps its files to one)"
    path, shape = export_calibration_model(kernel, index, backend, root, copies)
    graph = read_graph(path)
    extra: tuple[Kernel, ...] = ()
    if kernel.kind != "run":
        rows = [r for r in map_kernels(graph, backend, cpu_flags) if r.status == "ok"]
        main = [r for r in rows if (r.kernel.kind, r.kernel.dtype) == (kernel.kind, kernel.dtype)]
        if not main:
            return f"the exported file holds {', '.join(r.kernel.describe() for r in rows) or 'no kernel'}"
        chosen = max(main, key=lambda r: r.kernel == kernel)  # the intended one where the file has it exactly
        kernel, extra = chosen.kernel, tuple(r.kernel for r in rows if r is not chosen)
    return KernelTiming(kernel, 0.0, extra, io_bytes=io_bytes(graph)), path, shape


def _reference(folder: Path, backend: str, cpu_flags: tuple[str, ...]) -> tuple[ReferenceTiming, Path, tuple[int, ...]]:
    """A reference model, ready to time (its timing with ``ms`` still 0, the artifact, the input shape).

    Raises:
        InvalidArgumentError: ``folder`` is not an exported artifact of the backend's target with one
            fixed-shape input, or the predictor maps nothing in it to a kernel.
    """
    from edgevit.artifact import read_manifest
    from edgevit.errors import ArtifactError

    try:
        manifest = read_manifest(folder)
    except (ArtifactError, OSError) as exc:
        raise InvalidArgumentError(f"reference {str(folder)!r} is not an exported artifact ({exc}); pass folders "
                                   "written by `edgevit export`") from None
    if manifest.target != TARGETS[backend]:
        raise InvalidArgumentError(f"reference {str(folder)!r} is an artifact of target {manifest.target}; a {backend} probe times "
                                   f"{TARGETS[backend]} artifacts (export the model with --target {TARGETS[backend]})")
    shape = tuple(manifest.inputs[0].shape) if len(manifest.inputs) == 1 else ()
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
        raise InvalidArgumentError(f"reference {str(folder)!r} needs one input of a fixed shape, has "
                                   f"{[tuple(i.shape) for i in manifest.inputs]}")
    graph = read_graph(folder)
    kernels = kernel_counts(graph, backend, cpu_flags)
    if not kernels:
        raise InvalidArgumentError(f"reference {str(folder)!r}: the predictor maps none of its ops to a kernel")
    model = manifest.model
    name = str(model.get("name", folder.name)) if isinstance(model, dict) else folder.name
    family = str(model.get("family", name)) if isinstance(model, dict) else name
    return ReferenceTiming(name, family, 0.0, kernels, io_bytes=io_bytes(graph)), folder, shape


def _digest(kernel: Kernel) -> str:
    """Eight hex digits naming the kernel's kind, precision and dims (a reused file must be the same kernel)."""
    return hashlib.sha256(kernel.describe().encode()).hexdigest()[:8]


def _input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _check(backend: str, options: dict[str, Any]) -> None:
    if backend not in TARGETS:
        raise InvalidArgumentError(f"cannot probe backend {backend!r}; choose one of {', '.join(TARGETS)}")
    rounds, warmup, passes = options.get("rounds", 1), options.get("warmup", 0), options.get("passes", 1)
    chain, window = options.get("chain", 1), options.get("window_ms", 0.0)
    gap = options.get("idle_gap_ms", 0.0)
    if (rounds < 1 or warmup < 0 or not 1 <= passes <= MAX_PASSES or not 1 <= chain <= MAX_CHAIN
            or not 0 <= window <= MAX_WINDOW_MS or not 0 <= gap <= MAX_IDLE_GAP_MS):
        raise InvalidArgumentError(f"rounds must be >= 1, warmup >= 0, passes 1-{MAX_PASSES}, chain 1-{MAX_CHAIN}, "
                                   f"window_ms 0-{MAX_WINDOW_MS:g} and idle_gap_ms 0-{MAX_IDLE_GAP_MS:g}; got "
                                   f"rounds={rounds}, warmup={warmup}, passes={passes}, chain={chain}, "
                                   f"window_ms={window}, idle_gap_ms={gap}")


def _edgevit_version() -> str:
    from edgevit import __version__

    return __version__
