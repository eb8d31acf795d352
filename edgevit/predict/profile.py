"""A device profile: how long each calibration kernel took on one device, with its provenance.

A profile is plain data (a frozen :class:`DeviceProfile`) saved as JSON. It records the raw
measurements, not a fitted model: the fit (:mod:`edgevit.predict.fit`) runs when a prediction
is made, so a better cost model in a later edgevit reads old profiles unchanged. What a file
holds::

    {"format": "edgevit-device-profile", "format_version": 1,
     "device": "pi-a", "edgevit": "0.1.0", "created_utc": "2026-11-30T22:10:00+00:00", "mapping_version": 8,
     "environment": {... edgevit.environment.Environment ...}, "cpu_flags": ["avx2", ...],
     "backend": "onnxruntime", "backend_version": "1.20.1", "threads": 2,
     "measurement": {"rounds": 20, "warmup": 3, "statistic": "mean", "where": "local", "passes": 3, "chain": 4,
                     "window_ms": 100.0, "idle_gap_ms": 20.0},
     "timings": [{"kind": "run", "dtype": "fp32", "dims": {}, "ms": 0.011},
                 {"kind": "linear", "dtype": "fp32", "dims": {"M": 197, "K": 192, "N": 576}, "ms": 0.21,
                  "extra": [], "idle_ms": 0.74, "io_bytes": 605472}, ...],
     "references": [{"model": "cas_vit_xs", "family": "cas_vit", "ms": 12.1, "idle_ms": 14.0,
                     "kernels": [{"kind": "conv1x1", "dtype": "fp32", "dims": {...}, "count": 12}, ...]}, ...]}

Each timing's ``ms`` is the whole call of a calibration model holding that kernel and the
kernels listed in ``extra`` (the ``run`` kernel is the empty model's call; the fit subtracts
it, and the fitted cost of the extras). ``references`` (optional) are whole models timed the
same way, with the kernels the predictor maps them to: the fit scales its kernel sums by what
they measured (:mod:`edgevit.predict.fit`). ``idle_ms`` (optional, on a ladder of calibration
models and on the references) is the median time when requested one at a time, each request
after ``measurement.idle_gap_ms`` of idle: the fit relates it to ``ms`` to predict a model's time
in that regime (a split plan's pieces, each asked once per end-to-end request, run in it).
``io_bytes`` (optional) is what the timed model's inputs and outputs weigh: every call copies
them, and the fit prices that apart from the kernels. ``mapping_version`` (optional) is the
:data:`~edgevit.predict.kernels.MAPPING_VERSION` the probe mapped every model's ops to kernels
with; absent in a profile probed before edgevit recorded it. A file that is not JSON,
lacks a field, holds a wrong value or was written in another ``format_version`` is refused
with one :class:`~edgevit.errors.ProfileError` naming the file and saying to re-probe.

Example:
    >>> profile = load_profile("profiles/pi-a-onnxruntime.json")  # doctest: +SKIP
    >>> profile.backend, len(profile.timings)  # doctest: +SKIP
    ('onnxruntime', 212)
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgevit._files import write_text
from edgevit.environment import Environment
from edgevit.errors import EdgeVitError, InvalidArgumentError, ProfileError
from edgevit.predict.kernels import MAPPING_VERSION, Kernel

__all__ = ["FORMAT", "FORMAT_VERSION", "STATISTICS", "DeviceProfile", "KernelTiming", "Measurement",
           "ReferenceTiming", "load_profile", "merge_profiles", "profile_from_dict", "save_profile"]

FORMAT = "edgevit-device-profile"
#: bumped whenever a field changes meaning; a profile of another version is refused (re-probe)
FORMAT_VERSION = 1
#: the statistics a timing may be (of the rounds measured)
STATISTICS = ("p50", "mean", "min")
_REPROBE = "re-probe the device to write a new profile (edgevit.probe.probe_local or probe_remote; `edgevit devices probe` is planned)"


@dataclass(frozen=True)
class Measurement:
    """How the timings were taken.

    Attributes:
        rounds: timed calls per calibration model.
        warmup: untimed calls before them.
        statistic: which statistic of the rounds each ``ms`` is (``"p50"``, ``"mean"``, ``"min"``).
        where: ``"local"`` (in the probing process) or ``"agent"`` (device-side timings of a device agent).
        passes: sweeps over the calibration set; each timing is the median of its passes' statistics
            (a profile written before passes existed made one).
        chain: copies of a kernel in the chained calibration models (1: every kernel timed alone;
            the timings themselves say what each model held).
        window_ms: each model was run back to back for at least this long (0: ``rounds`` runs only).
        idle_gap_ms: some calibration models and the reference models were also timed one request
            at a time, each after this long idle (their ``idle_ms``); 0: not measured.
    """

    rounds: int
    warmup: int
    statistic: str = "p50"
    where: str = "local"
    passes: int = 1
    chain: int = 1
    window_ms: float = 0.0
    idle_gap_ms: float = 0.0


@dataclass(frozen=True)
class KernelTiming:
    """One calibration model's time: the kernel it measures, and the measured call in milliseconds.

    ``extra`` lists the other kernels the calibration model runs (a converter's layout
    transposes around a TFLite convolution, the slice that feeds an AV product): the fit
    subtracts their cost, fitted from the calibration models of their own kinds. ``idle_ms``: its
    median time one request at a time after the profile's idle gap (None: not timed that way; the
    probe times a ladder of sizes). ``io_bytes``: the bytes of the model's inputs and outputs,
    which each call copies in and out (:func:`edgevit.predict.mapping.io_bytes`; 0: not recorded,
    a profile probed before edgevit recorded it); the fit prices them apart from the kernels.
    """

    kernel: Kernel
    ms: float
    extra: tuple[Kernel, ...] = ()
    idle_ms: float | None = None
    io_bytes: int = 0


@dataclass(frozen=True)
class ReferenceTiming:
    """One whole model's time on the device, and the kernels the predictor maps it to.

    Attributes:
        model: its name (the artifact manifest's).
        family: its model family (the manifest's); a prediction can leave its own family's
            references out (:func:`edgevit.predict.fit`'s ``leave_out``).
        ms: the measured call, timed as the calibration models are.
        kernels: ``((kernel, count), ...)``: the kernels it runs (free ones left out).
        idle_ms: its median time requested one at a time, each request after the profile's
            ``measurement.idle_gap_ms`` of idle (None: not measured). Threads asleep, caches and
            frequency cooled down: on this project's AVX2 VM 1.1-2.1x ``ms``.
        io_bytes: its inputs' and outputs' bytes, as :class:`KernelTiming`'s (0: not recorded).
    """

    model: str
    family: str
    ms: float
    kernels: tuple[tuple[Kernel, int], ...]
    idle_ms: float | None = None
    io_bytes: int = 0

    @property
    def precision(self) -> str:
        """``"int8"`` when any of its kernels is int8, else ``"fp32"`` (what a prediction's scale is chosen by)."""
        return "int8" if any(k.dtype == "int8" for k, _ in self.kernels) else "fp32"


@dataclass(frozen=True)
class DeviceProfile:
    """What one device measured, with everything needed to judge whether it still applies.

    Attributes:
        device: a name for the device (a device file's name, or the host name).
        backend / backend_version: the runtime backend timed (``"onnxruntime"``, ``"litert"``) and its version.
        threads: the backend's CPU threads (None: its default).
        measurement: rounds, warm-up, statistic, where it ran.
        environment: the machine stamp (CPU, cores, OS, Python, load when probed).
        cpu_flags: the CPU's feature flags (they decide the int8 and vector kernels).
        created_utc: when the probe finished (ISO 8601).
        edgevit: the edgevit version that probed.
        timings: one per calibration model, the ``run`` (empty model) timing among them.
        format_version: the profile format (:data:`FORMAT_VERSION`).
        references: whole models timed beside the calibration set (none: the kernel sums are not scaled).
        mapping_version: the :data:`~edgevit.predict.kernels.MAPPING_VERSION` that mapped the
            calibration models' ``extra`` kernels and the references' kernels (None: not recorded, a
            profile probed before edgevit recorded it). The fit says when it is not this edgevit's.
    """

    device: str
    backend: str
    backend_version: str
    threads: int | None
    measurement: Measurement
    environment: Environment
    cpu_flags: tuple[str, ...]
    created_utc: str
    edgevit: str
    timings: tuple[KernelTiming, ...]
    format_version: int = FORMAT_VERSION
    references: tuple[ReferenceTiming, ...] = ()
    mapping_version: int | None = MAPPING_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see the module docstring)."""
        return {
            "format": FORMAT, "format_version": self.format_version, "device": self.device,
            "edgevit": self.edgevit, "created_utc": self.created_utc,
            **({"mapping_version": self.mapping_version} if self.mapping_version is not None else {}),
            "environment": self.environment.to_dict(),
            "cpu_flags": list(self.cpu_flags), "backend": self.backend, "backend_version": self.backend_version,
            "threads": self.threads, "measurement": asdict(self.measurement),
            "timings": [{**_kernel_dict(t.kernel), "ms": t.ms, "extra": [_kernel_dict(k) for k in t.extra],
                         **({"idle_ms": t.idle_ms} if t.idle_ms is not None else {}),
                         **({"io_bytes": t.io_bytes} if t.io_bytes else {})} for t in self.timings],
            "references": [{"model": r.model, "family": r.family, "ms": r.ms,
                            **({"idle_ms": r.idle_ms} if r.idle_ms is not None else {}),
                            **({"io_bytes": r.io_bytes} if r.io_bytes else {}),
                            "kernels": [{**_kernel_dict(k), "count": n} for k, n in r.kernels]} for r in self.references],
        }

    def summary(self) -> str:
        """``pi-a: onnxruntime 1.20.1, 2 threads, 212 kernels (p50 of 20), probed 2026-11-30``."""
        threads = f"{self.threads} threads" if self.threads else "default threads"
        m = self.measurement
        passes = f" over {m.window_ms:g} ms" if m.window_ms else ""
        passes += f", median of {m.passes} passes" if m.passes > 1 else ""
        references = f", {len(self.references)} reference models" if self.references else ""
        idle = sum(t.idle_ms is not None for t in (*self.timings, *self.references))
        if m.idle_gap_ms and idle:
            references += f", {idle} models also timed after {m.idle_gap_ms:g} ms idle"
        return (f"{self.device}: {self.backend} {self.backend_version}, {threads}, {len(self.timings)} kernels"
                f"{references} ({m.statistic} of {m.rounds}{passes}), probed {self.created_utc[:10]}")


def _kernel_dict(kernel: Kernel) -> dict[str, Any]:
    return {"kind": kernel.kind, "dtype": kernel.dtype, "dims": dict(kernel.dims)}


#: what profiles must share to be merged: the same device, backend and way of measuring
_SAME = ("device", "backend", "backend_version", "threads", "cpu_flags", "edgevit", "mapping_version")
_SAME_MEASUREMENT = ("rounds", "warmup", "statistic", "where", "chain", "window_ms", "idle_gap_ms")


def merge_profiles(profiles: list[DeviceProfile] | tuple[DeviceProfile, ...]) -> DeviceProfile:
    """One profile from several probes of the same device: each timing the median of theirs.

    A device drifts over minutes (a shared VM, a throttling board, a quota), and a probe taken
    in one phase prices every kernel in that phase. Probes taken at several times, for example
    one pass each between the runs you want to predict, merge into a profile whose timings are
    the median over them (the passes add up). The first profile's environment stamp is kept;
    the latest ``created_utc``.

    Raises:
        InvalidArgumentError: no profiles, or profiles of other devices, backends, threads,
            versions or ways of measuring, or of other calibration sets (the message says which).

    Example:
        >>> merged = merge_profiles([load_profile(f"pass{i}.json") for i in (1, 2, 3)])  # doctest: +SKIP
        >>> merged.measurement.passes  # doctest: +SKIP
        3
    """
    profiles = tuple(profiles)
    if not profiles:
        raise InvalidArgumentError("merge_profiles needs at least one profile")
    first = profiles[0]
    for n, other in enumerate(profiles[1:], start=2):
        differ = [f"{name} {getattr(first, name)!r} / {getattr(other, name)!r}" for name in _SAME
                  if getattr(first, name) != getattr(other, name)]
        differ += [f"measurement.{name} {getattr(first.measurement, name)!r} / {getattr(other.measurement, name)!r}"
                   for name in _SAME_MEASUREMENT if getattr(first.measurement, name) != getattr(other.measurement, name)]
        mine, theirs = ({(t.kernel, t.extra) for t in p.timings} for p in (first, other))
        if mine != theirs:
            differ.append(f"calibration models: {len(mine - theirs)} only in the first, {len(theirs - mine)} only in "
                          f"profile {n}")
        mine, theirs = ({_reference_key(r) for r in p.references} for p in (first, other))
        if mine != theirs:
            differ.append(f"reference models: {sorted(r[0] for r in mine ^ theirs)} not in both")
        if differ:
            raise InvalidArgumentError(f"profile {n} cannot be merged with the first: {'; '.join(differ)}. Merge "
                                       "probes of one device and backend made with the same settings and edgevit")
    ms: dict[tuple[Kernel, tuple[Kernel, ...]], list[float]] = {}
    whole: dict[tuple, list[float]] = {}
    idle: dict[tuple, list[float | None]] = {}
    for profile in profiles:
        for timing in profile.timings:
            ms.setdefault((timing.kernel, timing.extra), []).append(timing.ms)
            idle.setdefault(("timing", timing.kernel, timing.extra), []).append(timing.idle_ms)
        for reference in profile.references:
            whole.setdefault(_reference_key(reference), []).append(reference.ms)
            idle.setdefault(_reference_key(reference), []).append(reference.idle_ms)
    return replace(
        first,
        measurement=replace(first.measurement, passes=sum(p.measurement.passes for p in profiles)),
        created_utc=max(p.created_utc for p in profiles),
        timings=tuple(replace(t, ms=statistics.median(ms[t.kernel, t.extra]),
                              idle_ms=_median_or_none(idle["timing", t.kernel, t.extra])) for t in first.timings),
        references=tuple(replace(r, ms=statistics.median(whole[_reference_key(r)]),
                                 idle_ms=_median_or_none(idle[_reference_key(r)])) for r in first.references),
    )


def _median_or_none(values: list[float | None]) -> float | None:
    """The median of the values measured (None: none was)."""
    measured = [v for v in values if v is not None]
    return statistics.median(measured) if measured else None


def _reference_key(reference: ReferenceTiming) -> tuple:
    return reference.model, reference.family, reference.kernels


def save_profile(profile: DeviceProfile, path: str | Path) -> Path:
    """Write ``profile`` as JSON to ``path`` (parents created; whole or not at all) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(profile.to_dict(), indent=1) + "\n")


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and validate the profile at ``path``.

    Raises:
        ProfileError: the file is missing, not JSON, not a profile, of another format
            version, or has a missing or wrong field; the message names the file and the fix.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such device profile; probe the device first ({_REPROBE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not a readable device profile (corrupt JSON: {exc}); {_REPROBE}") from None
    return profile_from_dict(data, source=str(path))


def profile_from_dict(data: Any, source: str = "<profile>") -> DeviceProfile:
    """Validate a parsed profile (pure): the inverse of :meth:`DeviceProfile.to_dict`.

    Raises:
        ProfileError: as :func:`load_profile`, naming ``source``.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f"{source}: not an edgevit device profile (no \"format\": \"{FORMAT}\"); {_REPROBE}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ProfileError(f"{source}: device profile format version {version!r} (written by edgevit "
                           f"{data.get('edgevit', '?')}); this edgevit reads version {FORMAT_VERSION}; {_REPROBE}")
    try:
        return _parse(data)
    except (KeyError, TypeError, ValueError, EdgeVitError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ProfileError(f"{source}: invalid device profile ({what}); {_REPROBE}") from None


def _parse(data: dict[str, Any]) -> DeviceProfile:
    threads = data["threads"]
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or null, got {threads!r}")
    timings = tuple(_timing(i, t) for i, t in enumerate(_list(data, "timings")))
    if not timings:
        raise ValueError("no timings")
    references = tuple(_reference(i, r) for i, r in enumerate(_list(data, "references") if "references" in data else []))
    mapping = data.get("mapping_version")
    if mapping is not None and (not isinstance(mapping, int) or isinstance(mapping, bool) or mapping < 1):
        raise ValueError(f"mapping_version must be a positive integer or absent, got {mapping!r}")
    return DeviceProfile(
        device=_text(data, "device"), backend=_text(data, "backend"), backend_version=_text(data, "backend_version"),
        threads=threads, measurement=_measurement(data["measurement"]), environment=_environment(data["environment"]),
        cpu_flags=tuple(str(f) for f in _list(data, "cpu_flags")), created_utc=_text(data, "created_utc"),
        edgevit=_text(data, "edgevit"), timings=timings, references=references, mapping_version=mapping,
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data[key]
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list, got {type(value).__name__}")
    return value


def _measurement(data: Any) -> Measurement:
    m = Measurement(int(data["rounds"]), int(data["warmup"]), str(data["statistic"]), str(data["where"]),
                    int(data.get("passes", 1)), int(data.get("chain", 1)), float(data.get("window_ms", 0.0)),
                    float(data.get("idle_gap_ms", 0.0)))
    if (m.rounds < 1 or m.warmup < 0 or m.passes < 1 or m.chain < 1 or not 0 <= m.window_ms < math.inf
            or not 0 <= m.idle_gap_ms < math.inf or m.statistic not in STATISTICS):
        raise ValueError(f"measurement {asdict(m)}: rounds >= 1, warmup >= 0, passes >= 1, chain >= 1, "
                         f"window_ms >= 0, idle_gap_ms >= 0, statistic one of {STATISTICS}")
    return m


def _environment(data: Any) -> Environment:
    names = {f.name for f in fields(Environment)}
    if not isinstance(data, dict) or set(data) != names:
        got = set(data) if isinstance(data, dict) else set()
        raise ValueError(f"environment fields differ: missing {sorted(names - got)}, unexpected {sorted(got - names)}")
    return Environment(**data)


def _timing(index: int, data: Any) -> KernelTiming:
    try:
        kernel = Kernel.of(data["kind"], data["dtype"], **data["dims"])
        ms = float(data["ms"])
        extra = tuple(Kernel.of(k["kind"], k["dtype"], **k["dims"]) for k in data.get("extra", []))
        idle = None if data.get("idle_ms") is None else float(data["idle_ms"])
        io = _io_bytes(data)
    except KeyError as exc:
        raise ValueError(f"timing {index}: missing field {exc}") from None
    except (EdgeVitError, TypeError, ValueError) as exc:
        raise ValueError(f"timing {index}: {exc}") from None
    if not math.isfinite(ms) or ms < 0:
        raise ValueError(f"timing {index} ({kernel.describe()}): ms must be a finite non-negative number, got {data['ms']!r}")
    if idle is not None and not (math.isfinite(idle) and idle > 0):
        raise ValueError(f"timing {index} ({kernel.describe()}): idle_ms must be a finite positive number or absent, "
                         f"got {data['idle_ms']!r}")
    return KernelTiming(kernel, ms, extra, idle, io)


def _io_bytes(data: dict[str, Any]) -> int:
    """A timing's optional ``io_bytes``: a non-negative integer (absent: 0)."""
    value = data.get("io_bytes", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"io_bytes must be a non-negative integer, got {value!r}")
    return value


def _reference(index: int, data: Any) -> ReferenceTiming:
    try:
        kernels = []
        for k in data["kernels"]:
            count = k["count"]
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"a kernel's count must be a positive integer, got {count!r}")
            kernels.append((Kernel.of(k["kind"], k["dtype"], **k["dims"]), count))
        idle = data.get("idle_ms")
        reference = ReferenceTiming(_text(data, "model"), _text(data, "family"), float(data["ms"]), tuple(kernels),
                                    None if idle is None else float(idle), _io_bytes(data))
    except KeyError as exc:
        raise ValueError(f"reference {index}: missing field {exc}") from None
    except (EdgeVitError, TypeError, ValueError) as exc:
        raise ValueError(f"reference {index}: {exc}") from None
    if not math.isfinite(reference.ms) or reference.ms <= 0 or not reference.kernels:
        raise ValueError(f"reference {index} ({reference.model}): ms must be a finite positive number and the kernels "
                         f"not empty, got ms {data['ms']!r} and {len(reference.kernels)} kernels")
    if reference.idle_ms is not None and not (math.isfinite(reference.idle_ms) and reference.idle_ms > 0):
        raise ValueError(f"reference {index} ({reference.model}): idle_ms must be a finite positive number or absent, "
                         f"got {data['idle_ms']!r}")
    return reference
