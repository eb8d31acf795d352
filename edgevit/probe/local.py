"""Probe this machine: export the calibration set, time each model with ``edgevit.runtime``, write a profile.

For each kernel of the calibration set (:func:`edgevit.predict.calibration.calibration_kernels`)
the probe builds its module (:mod:`edgevit.probe.modules`), exports it with edgevit's exporter
to the backend's format (not verified: the numbers do not matter, the shapes do), reads the
file back with the predictor's own mapping (:func:`edgevit.predict.map_kernels`), checks that
it holds a kernel of the intended kind, and times it: ``warmup`` untimed calls, then ``rounds``
timed ``session.run`` calls on one random input; the timing is their median. The other kernels
the file holds (layout transposes, a slice) are recorded as the timing's ``extra``. A model
whose file holds no kernel of the intended kind, or of a kind the backend never runs as one
kernel (:attr:`edgevit.predict.fusion.RuleSet.absent`), is left out and named in ``skipped``.

Timing a device through its agent (``--url``) is the next step; this is the ``--local`` path.

Example:
    >>> result = probe_local("onnxruntime", preset="quick", rounds=5, threads=1)  # doctest: +SKIP
    >>> save_profile(result.profile, "here-onnxruntime.json")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevit._progress import Progress
from edgevit.environment import cpu_flags, environment
from edgevit.errors import InvalidArgumentError
from edgevit.predict import DeviceProfile, Kernel, KernelTiming, Measurement, map_kernels
from edgevit.predict.calibration import calibration_kernels
from edgevit.predict.fusion import RULES

__all__ = ["TARGETS", "ProbeResult", "probe_local"]

#: backend -> the export target whose files it runs
TARGETS = {"onnxruntime": "onnx", "litert": "tflite"}


@dataclass(frozen=True)
class ProbeResult:
    """A probe's profile, and the calibration models it could not use (``(kernel, why)``)."""

    profile: DeviceProfile
    skipped: tuple[tuple[Kernel, str], ...]
    seconds: float


def probe_local(backend: str = "onnxruntime", *, preset: str = "standard", kernels: tuple[Kernel, ...] | None = None,
                rounds: int = 20, warmup: int = 3, threads: int | None = None, device: str | None = None,
                workdir: str | Path | None = None, progress: bool | None = None) -> ProbeResult:
    """Time the calibration set on this machine with ``backend`` and return its profile.

    Args:
        backend: ``"onnxruntime"`` or ``"litert"``.
        preset / kernels: the calibration preset, or the kernels themselves.
        rounds / warmup: timed and untimed calls per model.
        threads: the backend's CPU threads (None: its default).
        device: the profile's device name (default: this host's name).
        workdir: where the calibration artifacts are written (default: a temporary folder, removed).
        progress: show a progress bar on stderr (default: on a terminal).

    Raises:
        InvalidArgumentError: an unknown backend, or rounds / warmup out of range.
    """
    if backend not in TARGETS:
        raise InvalidArgumentError(f"cannot probe backend {backend!r}; choose one of {', '.join(TARGETS)}")
    if rounds < 1 or warmup < 0:
        raise InvalidArgumentError(f"rounds must be >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    kernels = kernels if kernels is not None else calibration_kernels(preset)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgevit-probe-") as scratch:
        root = Path(workdir) if workdir is not None else Path(scratch)
        timings, skipped = [], []
        with Progress(len(kernels), f"probe {backend}", enabled=progress) as bar:
            for index, kernel in enumerate(kernels):
                bar.note(kernel.describe())
                if kernel.kind in RULES.get(backend).absent:
                    outcome = f"{backend} runs no {kernel.kind} kernel (the converter decomposes it)"
                else:
                    outcome = _probe_one(kernel, index, backend, root, rounds, warmup, threads)
                (timings if isinstance(outcome, KernelTiming) else skipped).append(outcome if isinstance(outcome, KernelTiming)
                                                                                   else (kernel, outcome))
                bar.update(1)
    profile = DeviceProfile(
        device=device or platform.node() or "this machine", backend=backend, backend_version=_backend_version(backend),
        threads=threads, measurement=Measurement(rounds, warmup, "p50", "local"), environment=environment(),
        cpu_flags=cpu_flags(), created_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        edgevit=_edgevit_version(), timings=tuple(timings),
    )
    return ProbeResult(profile, tuple(skipped), time.perf_counter() - start)


def _probe_one(kernel: Kernel, index: int, backend: str, root: Path, rounds: int, warmup: int,
               threads: int | None) -> KernelTiming | str:
    """The timing of one calibration model, or why it cannot be used."""
    path, shape = _export(kernel, index, backend, root)
    rows = [r for r in map_kernels(path, backend) if r.status == "ok"]
    if kernel.kind == "run":
        extra: tuple[Kernel, ...] = ()
    else:
        main = [r for r in rows if r.kernel.kind == kernel.kind]
        if not main:
            return f"the exported file holds {', '.join(r.kernel.describe() for r in rows) or 'no kernel'}"
        chosen = max(main, key=lambda r: r.kernel == kernel)  # the intended one where the file has it exactly
        kernel = chosen.kernel
        extra = tuple(r.kernel for r in rows if r is not chosen)
    return KernelTiming(kernel, _time(path, backend, shape, rounds, warmup, threads), extra)


def _export(kernel: Kernel, index: int, backend: str, root: Path) -> tuple[Path, tuple[int, ...]]:
    from edgevit.export import Piece, export
    from edgevit.probe.modules import module_for

    module, shape = module_for(kernel)
    piece = Piece(module, np.random.default_rng(index).standard_normal(shape).astype(np.float32),
                  name=f"calib{index:03d}-{kernel.kind}", classifies=False, note="an edgevit calibration kernel")
    artifact = export(piece, target=TARGETS[backend], out=root, verify=False, quiet=True, progress=False)
    return Path(artifact.path), shape


def _time(path: Path, backend: str, shape: tuple[int, ...], rounds: int, warmup: int, threads: int | None) -> float:
    from edgevit import runtime

    with runtime.load(path, backend=backend, threads=threads) as session:
        feeds = {session.input_specs[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        for _ in range(warmup):
            session.run(feeds)
        samples = []
        for _ in range(rounds):
            begin = time.perf_counter()
            session.run(feeds)
            samples.append((time.perf_counter() - begin) * 1000.0)
    return float(np.median(samples))


def _backend_version(backend: str) -> str:
    from edgevit.runtime import BACKENDS

    return str(BACKENDS.get(backend).version())


def _edgevit_version() -> str:
    from edgevit import __version__

    return __version__
