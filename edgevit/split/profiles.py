"""Device profiles on the split side: pieces exported and predicted on every profiled device.

A device file may describe a device by a measured profile (``profile = "pi-a-onnxruntime.json"``)
instead of a speed. Planning stays pure (:mod:`edgevit.partition` receives numbers); this module
is the edge that produces them:

1. :func:`load_profiles` reads and fits the profile of every profiled device once, when the
   split starts, and refuses a profile that cannot predict this split's pieces: a corrupt one
   (a one-line :class:`~edgevit.errors.ProfileError` naming the device), or one whose backend
   does not run the split's target (an onnxruntime profile for a TFLite split).
2. :class:`PiecePredictor` exports a piece (unverified, into a temporary folder, to the
   split's target and precision, calibrated on the piece's own inputs for a quantized
   precision) and predicts the file with every profiled device's fitted profile
   (:func:`edgevit.predict.predict`). A piece is exported once per (piece, target,
   precision), however many devices are profiled: the predictions are cached by a digest of
   the module (its structure and weights) and of its input shape. A prediction that is not
   complete (ops no table knows, kernels the profile never timed) is a lower bound: it is
   kept, recorded with what was not costed, and warned about.
3. :func:`profile_plan` predicts an existing plan folder's artifacts for another device file
   (torch-free: no export, the plan's own files are read), so
   :func:`edgevit.partition.predict.predict_plan` can use profiles of devices the plan was not
   made for.

Where the split measures its pieces on this machine (:mod:`edgevit.split.measure`), it asks
the predictor beside it: the class-wise strategy for its sub-models and the unsplit model,
the pipeline strategy for every segment (a stage's time is then its segments' predictions
added, the backend's per-call overhead counted once; see
:meth:`edgevit.partition.cost.ProfiledTime.chained`) and the unsplit model.

Example:
    >>> profiles = load_profiles(load_devices("devices.toml"), target="onnx")  # doctest: +SKIP
    >>> with PiecePredictor(profiles, "onnx", "fp32") as predictor:  # doctest: +SKIP
    ...     predictor.times("sub0", module, example)
    {'pi-a': ProfiledTime(ms=3.1, ...), 'pi-b': ProfiledTime(ms=12.4, ...)}
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevit.devices import Cluster
from edgevit.errors import InvalidArgumentError, ProfileError
from edgevit.partition.cost import ProfiledTime
from edgevit.predict import CostModel, DeviceProfile, Prediction, fit, load_profile, predict
from edgevit.predict.fit import PREDICTOR_VERSION
from edgevit.predict.fusion import RULES

__all__ = ["PiecePredictor", "ProfiledDevice", "load_profiles", "profile_plan", "target_of_backend"]


@dataclass(frozen=True)
class ProfiledDevice:
    """One device of the device file described by a profile, read and fitted once.

    Attributes:
        device: its name in the device file.
        path: the profile file; ``sha256``: the file's digest.
        profile: the profile as read; ``model``: the cost model fitted to it.
    """

    device: str
    path: str
    sha256: str
    profile: DeviceProfile
    model: CostModel

    def time(self, prediction: Prediction) -> ProfiledTime:
        """A prediction made with this device's profile, as planning sees it."""
        missing = {**prediction.unknown, **prediction.uncalibrated}
        return ProfiledTime(ms=prediction.total_ms, run_ms=prediction.run_ms, backend=self.profile.backend,
                            profile=self.path, profile_sha256=self.sha256,
                            profile_created_utc=self.profile.created_utc,
                            predictor_version=prediction.predictor_version,
                            not_costed=tuple(sorted((str(k), int(v)) for k, v in missing.items())),
                            idle_curve=prediction.idle_curve, range_ms=prediction.range_ms)

    def to_dict(self) -> dict[str, Any]:
        """What a plan records of the profile (``latency.profiles``)."""
        p = self.profile
        return {"profile": self.path, "profile_sha256": self.sha256, "profile_created_utc": p.created_utc,
                "backend": p.backend, "backend_version": p.backend_version, "threads": p.threads,
                "probed_as": p.device, "probed_with_edgevit": p.edgevit, "kernels_timed": len(p.timings),
                "statistic": p.measurement.statistic, "where": p.measurement.where,
                "predictor_version": PREDICTOR_VERSION, "mapping_version": p.mapping_version,
                "notes": list(self.model.notes), "summary": p.summary()}


def target_of_backend(backend: str) -> str | None:
    """The export target whose files ``backend`` runs (``onnxruntime`` -> ``onnx``, ``litert`` ->
    ``tflite``); None for a backend the predictor has no rules for."""
    return RULES.get(backend).format if backend in RULES else None


def load_profiles(cluster: Cluster, target: str) -> dict[str, ProfiledDevice]:
    """``{device name: ProfiledDevice}`` for every device of ``cluster`` given by a profile.

    Raises:
        ProfileError: a profile file is missing, corrupt or of another format version; one
            line naming the device, the file and the fix.
        InvalidArgumentError: a profile's backend does not run ``target``'s files (the message
            says which target to split for, or which backend to probe).
    """
    out = {}
    for device in cluster.devices:
        if device.profile is None:
            continue
        try:
            profile = load_profile(device.profile)
            digest = hashlib.sha256(Path(device.profile).read_bytes()).hexdigest()
        except ProfileError as exc:
            raise ProfileError(f"device {device.name!r} of {cluster.source}: {exc}") from None
        except OSError as exc:
            raise ProfileError(f"device {device.name!r} of {cluster.source}: cannot read its profile "
                               f"{device.profile!r} ({exc.strerror or exc})") from None
        runs = target_of_backend(profile.backend)
        if runs != target:
            raise InvalidArgumentError(_mismatch(device.name, cluster.source, device.profile, profile.backend,
                                                 runs, target))
        model = fit(profile)
        for note in model.notes:
            warnings.warn(f"device {device.name!r} of {cluster.source}: {note}", stacklevel=2)
        out[device.name] = ProfiledDevice(device.name, device.profile, digest, profile, model)
    return out


def _mismatch(device: str, source: str, path: str, backend: str, runs: str | None, target: str) -> str:
    where = f"device {device!r} of {source} is described by a profile of backend {backend!r} ({path})"
    probe = [b for b in RULES.names() if target_of_backend(b) == target]
    reprobe = (f"probe the device with --backend {probe[0]} (edgevit devices probe ... --backend {probe[0]})"
               if probe else f"no profile backend runs {target} files, so the split cannot use profiles")
    if runs is None:
        return f"{where}, for which the predictor has no rules; {reprobe}"
    return (f"{where}, which runs {runs} files, but this split exports {target}: its pieces' times cannot be "
            f"predicted from it; split with --target {runs}, or {reprobe}")


class PiecePredictor:
    """Exports pieces (unverified, in a temporary folder) and predicts them on every profiled device.

    One export per (piece, target, precision): the predictions of a piece are cached under a
    digest of its module and input shape, so a piece asked for again (the class-wise strategy
    re-costs its sub-models after every placement attempt) is not exported again. Use it as a
    context manager, or call :meth:`close`, to remove the temporary folder.

    Attributes:
        devices: the profiled devices (:func:`load_profiles`).
        target / precision: how the pieces are exported (the split's).
        exports: how many exports it has made (each piece once).
    """

    def __init__(self, devices: Mapping[str, ProfiledDevice], target: str, precision: str,
                 log: Callable[[str], None] | None = None, preprocessing: Any = None) -> None:
        self.devices = dict(devices)
        self.target, self.precision = target, precision
        self.preprocessing = preprocessing
        self.exports = 0
        #: ``log(message)`` for progress lines and warnings (the split sets its own)
        self.log: Callable[[str], None] = log or (lambda message: None)
        self._cache: dict[tuple[str, str, str], dict[str, ProfiledTime]] = {}
        self._folder: Path | None = None

    def __enter__(self) -> PiecePredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def times(self, name: str, module: Any, example: Any, calibration: Any = None,
              image_input: bool = False) -> dict[str, ProfiledTime]:
        """``{device: ProfiledTime}`` of ``module`` on its batch-1 ``example`` (a tensor or array).

        Args:
            calibration: the piece's own calibration inputs ``[M, ...]``, for a quantized precision.
            image_input: the example is a preprocessed image (exported as the writer exports
                sub-models and first stages).
        """
        if not self.devices:
            return {}
        key = (_fingerprint(module, example), self.target, self.precision)
        if key not in self._cache:
            artifact = self._export(name, module, example, calibration, image_input)
            try:
                graph = _read(artifact)
                times = {device: profiled.time(predict(graph, profiled.model))
                         for device, profiled in self.devices.items()}
            finally:
                shutil.rmtree(artifact, ignore_errors=True)
            self._warn_incomplete(name, times)
            self._cache[key] = times
        return dict(self._cache[key])

    def _export(self, name: str, module: Any, example: Any, calibration: Any, image_input: bool) -> Path:
        import numpy as np

        from edgevit.export import Piece, export

        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="edgevit-predict-"))
        inputs = np.ascontiguousarray(example.detach().numpy() if hasattr(example, "detach") else example,
                                      dtype=np.float32)
        self.exports += 1
        self.log(f"exporting {name} to {self.target} ({self.precision}, unverified) to predict it on "
                  f"{', '.join(self.devices)}")
        piece = Piece(module, inputs, calibration=calibration, name=f"predict{self.exports}-{name}",
                      image_input=image_input and self.preprocessing is not None,
                      preprocessing=self.preprocessing if image_input else None, classifies=False,
                      note="exported by edgevit split to predict its time from device profiles")
        artifact = export(piece, target=self.target, precision=self.precision, out=self._folder, verify=False,
                          quiet=True, progress=False)
        return Path(artifact.path)

    def _warn_incomplete(self, name: str, times: Mapping[str, ProfiledTime]) -> None:
        """One warning per piece and set of ops not costed, naming the devices it applies to."""
        devices_by_gap: dict[tuple[tuple[str, int], ...], list[str]] = {}
        for device, timed in times.items():
            if not timed.complete:
                devices_by_gap.setdefault(timed.not_costed, []).append(device)
        for gap, devices in devices_by_gap.items():
            what = ", ".join(f"{op} x{count}" for op, count in gap)
            at = ", ".join(f"{device} {times[device].ms:.3f} ms" for device in devices)
            message = (f"the predicted time of {name} ({at}) is a lower bound: not costed: {what} (op types no "
                       "table knows or whose shapes are unknown, and kernels the profile never timed: probe the "
                       "device with those kinds and precisions)")
            self.log(f"warning: {message}")
            warnings.warn(message, stacklevel=3)


def profile_plan(plan_dir: str | Path, cluster: Cluster) -> Any:
    """The plan in ``plan_dir`` with every piece predicted on the profiled devices of ``cluster``.

    Torch-free: the plan's own artifacts are read (no export). The result's pieces carry
    ``cost.profiled`` for those devices, so :func:`edgevit.partition.predict.predict_plan` on
    ``cluster`` uses them; the plan on disk is not changed.

    Raises:
        ProfileError / InvalidArgumentError: as :func:`load_profiles`.

    Example:
        >>> fleet = load_devices("fleet/devices.toml")  # doctest: +SKIP
        >>> predict_plan(profile_plan("plan/", fleet), fleet, request_ms=2.4)["end_to_end_ms"]  # doctest: +SKIP
    """
    from edgevit.cluster.plans import load_plan

    folder = Path(plan_dir)
    plan = load_plan(folder)
    profiled = load_profiles(cluster, plan.target)

    def with_times(piece):
        graph = _read(folder / piece.artifact)
        times = {device: p.time(predict(graph, p.model)).to_dict() for device, p in profiled.items()}
        return dataclasses.replace(piece, cost={**piece.cost, "profiled": {**piece.cost.get("profiled", {}), **times}})

    return dataclasses.replace(plan, pieces=tuple(with_times(p) for p in plan.pieces))


def _read(artifact: Path):
    from edgevit.predict import read_graph

    return read_graph(artifact)


def _fingerprint(module: Any, example: Any) -> str:
    """A digest of what decides the exported file: the module's structure and weights, and the
    input's shape."""
    digest = hashlib.sha256()
    digest.update(type(module).__qualname__.encode())
    digest.update(repr(module).encode())
    digest.update(repr(tuple(example.shape)).encode())
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update((value.float() if value.is_floating_point() else value).numpy().tobytes())
    return digest.hexdigest()
