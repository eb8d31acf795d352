"""Loading a model with one backend and running it: :func:`load` and :class:`Session`.

A :class:`Session` sits on top of a backend's :class:`~edgevit.runtime.BackendModel` and
adds what every backend would otherwise repeat: input validation with errors that say
what was expected, prediction from images with the artifact's own preprocessing, and
batching as far as the model allows. It imports numpy only (PIL when predicting).

``predict`` never loses a batch to one bad image: every image gets a :class:`Prediction`,
and an image that cannot be read gets one whose ``error`` names the file and says why
(``labels`` and ``scores`` empty). Check ``prediction.ok`` or ``prediction.error``.

Example:
    >>> from edgevit.runtime import load
    >>> with load("cas_vit_xs-onnx-fp32", threads=2) as session:
    ...     logits = session.run({"pixel_values": x})["logits"]
    ...     for p in session.predict(["cat.jpg", "dog.jpg"], top_k=3):
    ...         print(p.source, p.labels, p.scores)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.artifact import MANIFEST_NAME, MODEL_SUFFIXES, Manifest, TensorSpec, read_manifest
from edgevit.errors import (
    ArtifactError,
    DataError,
    EdgeVitError,
    InvalidArgumentError,
    MissingDependencyError,
    RuntimeInputError,
)
from edgevit.runtime._backend import BACKENDS, Backend, BackendModel

__all__ = ["load", "Session", "Prediction", "resolve_backend", "backends_for", "options_for"]


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image, or why that image could not be classified.

    Attributes:
        source: the file path, or ``"<image 3>"`` for an in-memory image (its batch position).
        labels / indices / scores: best first; scores are softmax probabilities.
        error: None when the image was classified, otherwise a one-line reason naming the file.
    """

    source: str
    labels: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def load(path: str | Path, backend: str = "auto", threads: int | None = None, **options: Any) -> Session:
    """Load an artifact folder (with ``manifest.json``) or a bare model file.

    Args:
        path: an artifact folder, or a ``.onnx`` / ``.tflite`` file or ``.mlpackage`` folder.
        backend: a registered backend name, or ``"auto"`` to pick by file type and by what is
            installed (``.mlpackage``: ``"coreml"`` on macOS, ``"coreml-reference"`` elsewhere).
        threads: CPU threads for the backend; None keeps the backend's default.
        options: backend options (a value None keeps the backend's default); each backend lists
            its own in ``Backend.options``, e.g. onnxruntime's ``spin`` (intra-op spinning).

    Raises:
        ArtifactError: the folder, manifest or model file is missing or corrupt.
        MissingDependencyError: the backend is not installed (names the pip extra).
        UnknownNameError: no backend of that name.

    Example:
        >>> session = load("test_vit-tflite-fp32", backend="litert", threads=2)
    """
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise InvalidArgumentError(f"threads must be a positive integer or None, got {threads!r}")
    manifest, model_path = _locate(Path(path))
    reason = f"asked for backend={backend!r}"
    if backend == "auto":
        backend, reason = _auto(manifest, model_path, threads, options)
    backend_cls = resolve_backend(model_path, backend)
    options = check_backend_options(backend_cls, options)
    model = _open(backend_cls, model_path, threads, options)
    if manifest is not None and backend_cls.name == "onnxruntime":
        _warn_about_int8_kernels(manifest, model_path)
    return Session(model, backend_cls, model_path, manifest=manifest, threads=threads, backend_reason=reason)


def _auto(manifest: Manifest | None, model_path: Path, threads: int | None,
          options: dict[str, Any]) -> tuple[str, str]:
    """``backend="auto"``: the fastest measured here for this artifact (:mod:`edgevit.runtime.choice`)
    when several backends open its file, else the first installed in the fixed order."""
    classes = _backends_for(model_path.suffix)

    def fixed(why: str = "") -> tuple[str, str]:
        order = ", ".join(cls.name for cls in classes) or "none"
        return "auto", f"the first installed of: {order}" + (f" ({why})" if why else "")

    if manifest is None or len(classes) < 2:
        return fixed()
    from edgevit.runtime.choice import read_choice

    def installed() -> dict[str, str]:
        return {cls.name: cls.version() for cls in classes if cls.available()}

    choice = read_choice(model_path.parent, model_path.name, installed, threads=threads)
    if choice.backend is None:
        return fixed(choice.reason)
    foreign = sorted(k for k, v in options.items() if v is not None and k not in BACKENDS.get(choice.backend).options)
    if foreign:
        return fixed(f"measured fastest here: {choice.backend}, which does not take {', '.join(foreign)}")
    return choice.backend, choice.reason


def _warn_about_int8_kernels(manifest: Manifest, model_path: Path) -> None:
    """Warn (once per artifact and process, by Python's warning filter) when this CPU's int8 kernels
    may compute the artifact differently from the CPU it was verified on (edgevit.runtime.cpu)."""
    import warnings

    from edgevit.runtime.cpu import Int8KernelWarning, int8_artifact_warning, int8_path

    message = int8_artifact_warning(manifest, int8_path())
    if message is not None:
        warnings.warn(f"{model_path.parent}: {message}", Int8KernelWarning, stacklevel=3)


class Session:
    """One loaded model: validated ``run`` on arrays, ``predict`` on images.

    Attributes:
        backend: the backend's name; ``backend_version``: its package version; ``backend_reason``:
            why it runs this file (asked for, measured fastest here, or ``auto``'s fixed order).
        threads: the thread count asked for (None: backend default).
        manifest: the artifact's :class:`~edgevit.artifact.Manifest`, or None for a bare file.
        model_path: the model file (or ``.mlpackage`` folder) that was loaded.
        backend_model: the backend's model, for callers that measure the bare backend.
    """

    def __init__(
        self,
        model: BackendModel,
        backend: type[Backend],
        model_path: Path,
        manifest: Manifest | None = None,
        threads: int | None = None,
        backend_reason: str = "",
    ) -> None:
        self.backend_model = model
        self.backend_reason = backend_reason
        self.backend = backend.name
        self.backend_version = backend.version()
        self.model_path = model_path
        self.manifest = manifest
        self.threads = threads
        self._in_names = _public_names(manifest.inputs if manifest else (), model.input_specs, "input")
        self._out_names = _public_names(manifest.outputs if manifest else (), model.output_specs, "output")
        self.input_specs = tuple(
            dataclasses.replace(spec, name=self._in_names[spec.name], layout=_layout(manifest, i, spec))
            for i, spec in enumerate(model.input_specs)
        )
        self.output_specs = tuple(dataclasses.replace(s, name=self._out_names[s.name]) for s in model.output_specs)
        self._to_backend = {public: name for name, public in self._in_names.items()}
        self._by_name = {spec.name: spec for spec in self.input_specs}
        self._closed = False

    # -- running ---------------------------------------------------------------------------

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named arrays; returns every output by name.

        Raises:
            RuntimeInputError: a name, shape or dtype differs from ``input_specs``.
            ArtifactError: the backend failed on valid inputs (the file uses something this
                runtime cannot execute); the backend's own error is chained.
        """
        if self._closed:
            raise InvalidArgumentError("this session is closed; load the model again to run it")
        checked = self._validate(feeds)
        try:
            outputs = self.backend_model.run(checked)
        except EdgeVitError:
            raise
        except Exception as exc:  # noqa: BLE001 - native runtimes raise many types; one clear error
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ArtifactError(
                f"{self.backend} failed to run {self.model_path.name} on valid inputs ({type(exc).__name__}: "
                f"{first[:300]}); the model file uses something this runtime cannot execute here") from exc
        return {self._out_names[name]: value for name, value in outputs.items()}

    def _validate(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, dict):
            raise RuntimeInputError(
                f"run() takes a dict {{input name: array}}, got {type(feeds).__name__}; "
                f"inputs: {self._describe_inputs()}"
            )
        unknown = [name for name in feeds if name not in self._by_name]
        missing = [name for name in self._by_name if name not in feeds]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown input(s) {', '.join(map(repr, unknown))}")
            if missing:
                parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
            raise RuntimeInputError(f"{'; '.join(parts)}; expected {self._describe_inputs()}")
        checked = {}
        for name, value in feeds.items():
            spec = self._by_name[name]
            if not isinstance(value, np.ndarray):
                raise RuntimeInputError(
                    f"input {name!r} must be a numpy array, got {type(value).__name__}; expected {_describe(spec)}"
                )
            if value.dtype.name != spec.dtype:
                raise RuntimeInputError(
                    f"input {name!r} has dtype {value.dtype.name}, expected {spec.dtype}; "
                    f"convert it with array.astype(np.{spec.dtype})"
                )
            if not _shape_fits(value.shape, spec.shape):
                raise RuntimeInputError(
                    f"input {name!r} has shape {tuple(value.shape)}, expected {_format_shape(spec.shape)}"
                    + (f" ({spec.layout})" if spec.layout else "")
                )
            checked[self._to_backend[name]] = value
        return checked

    # -- predicting ------------------------------------------------------------------------

    def predict(
        self, images: Any, top_k: int = 5, preprocessing: Any = None, batch_size: int | None = None
    ) -> list[Prediction]:
        """Classify images: file paths, PIL images or HxWx3 uint8 arrays (one, or a list).

        The artifact's preprocessing (from the manifest) is applied; pass ``preprocessing``
        (a :class:`~edgevit.data.PreprocessSpec` or its dict) for a bare model file. Images
        are batched when the model's batch dimension is dynamic (``batch_size`` at a time,
        default all), run one by one when it is fixed at 1.

        Returns:
            One :class:`Prediction` per image, in order. An image that cannot be decoded gets
            a Prediction with ``error`` set; the others are still classified.
        """
        from edgevit.data.preprocess import preprocess_image

        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidArgumentError(f"top_k must be a positive integer, got {top_k!r}")
        spec = self._preprocess_spec(preprocessing)
        items = _as_image_list(images)
        results: list[Prediction | None] = [None] * len(items)
        ready: list[tuple[int, np.ndarray]] = []
        for i, image in enumerate(items):
            source = str(image) if isinstance(image, (str, Path)) else f"<image {i}>"
            try:
                ready.append((i, preprocess_image(image, spec)))
            except DataError as exc:
                results[i] = Prediction(source=source, error=str(exc))
        for chunk in _chunks(ready, self._batch_limit(batch_size)):
            logits = self._logits(np.stack([array for _, array in chunk]))
            for (i, _), row in zip(chunk, logits):
                source = str(items[i]) if isinstance(items[i], (str, Path)) else f"<image {i}>"
                results[i] = self._top_k(source, row, top_k)
        return results  # type: ignore[return-value]

    def _preprocess_spec(self, preprocessing: Any):
        from edgevit.data.preprocess import PreprocessSpec

        if preprocessing is None:
            if self.manifest is None:
                raise InvalidArgumentError(
                    f"{self.model_path.name} was loaded without a manifest, so its preprocessing is unknown; "
                    "pass predict(..., preprocessing=PreprocessSpec(size=...)) or load the artifact folder"
                )
            preprocessing = self.manifest.preprocessing
        spec = preprocessing if isinstance(preprocessing, PreprocessSpec) else PreprocessSpec.from_dict(preprocessing)
        layout = self.input_specs[0].layout
        if layout in ("NCHW", "NHWC") and layout != spec.layout:
            spec = dataclasses.replace(spec, layout=layout)
        return spec

    def _batch_limit(self, batch_size: int | None) -> int:
        fixed = self.input_specs[0].shape[0] if self.input_specs[0].shape else None
        if fixed is not None:
            if batch_size is not None and batch_size != fixed:
                raise InvalidArgumentError(f"this model has a fixed batch of {fixed}; batch_size={batch_size} cannot be used")
            return fixed
        if batch_size is not None and batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
        return batch_size or 1_000_000

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        spec = self.input_specs[0]
        if not np.issubdtype(np.dtype(spec.dtype), np.floating):
            raise InvalidArgumentError(
                f"predict() feeds float images but input {spec.name!r} takes {spec.dtype}; "
                "quantize the preprocessed images yourself and call run()"
            )
        fixed = spec.shape[0] if spec.shape else None
        count = len(batch)
        if fixed is not None and count < fixed:  # pad a short last batch to the fixed size
            batch = np.concatenate([batch, np.repeat(batch[-1:], fixed - count, axis=0)])
        outputs = self.run({spec.name: batch.astype(spec.dtype, copy=False)})
        logits = outputs[self.output_specs[0].name]
        return np.asarray(logits, dtype=np.float64).reshape(len(batch), -1)[:count]

    def _top_k(self, source: str, logits: np.ndarray, top_k: int) -> Prediction:
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        k = min(top_k, probs.size)
        order = np.argsort(-probs, kind="stable")[:k]
        labels = self.manifest.labels if self.manifest and self.manifest.labels else None
        names = tuple(labels[i] if labels and i < len(labels) else f"class_{i}" for i in order)
        return Prediction(source, names, tuple(int(i) for i in order), tuple(float(probs[i]) for i in order))

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self.backend_model.close()
            self._closed = True

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(_describe(spec) for spec in self.input_specs)
        return f"Session({self.model_path.name!r}, backend={self.backend!r}, threads={self.threads}, inputs=[{ins}])"

    def _describe_inputs(self) -> str:
        return ", ".join(_describe(spec) for spec in self.input_specs)


# -- resolving the model file and the backend -----------------------------------------------


def _locate(path: Path) -> tuple[Manifest | None, Path]:
    """The manifest (or None) and the model file for an artifact folder or bare model file."""
    if not path.exists():
        raise ArtifactError(f"{str(path)!r} does not exist; pass an artifact folder or a model file")
    if path.is_dir() and (path / MANIFEST_NAME).exists():
        manifest = read_manifest(path)
        return manifest, path / manifest.model_file
    if path.suffix in _runnable_suffixes():
        return None, path
    if path.is_dir():
        raise ArtifactError(f"{str(path)!r} has no {MANIFEST_NAME} and is not a model; is it an edgevit artifact?")
    raise ArtifactError(
        f"{str(path)!r} is not a model file edgevit can run (suffix {path.suffix or 'none'!r}); "
        f"expected an artifact folder or one of {', '.join(_runnable_suffixes())}"
    )


def _runnable_suffixes() -> tuple[str, ...]:
    """The model files' suffixes of every target, and the other files a registered backend opens (``.ort``)."""
    found, _ = _importable_backends()
    return tuple(dict.fromkeys([*MODEL_SUFFIXES.values(), *(s for cls in found for s in cls.suffixes)]))


def resolve_backend(model_path: str | Path, backend: str = "auto") -> type[Backend]:
    """The backend class that will open ``model_path``: the one named, or the preferred available one."""
    suffix = Path(model_path).suffix
    if backend != "auto":
        backend_cls = BACKENDS.get(backend)
        if suffix not in backend_cls.suffixes:
            able = [cls.name for cls in _backends_for(suffix)]
            raise InvalidArgumentError(
                f"backend {backend!r} runs {', '.join(backend_cls.suffixes)} files, not {suffix!r}; "
                f"use backend='auto'" + (f" or one of: {', '.join(able)}" if able else "")
            )
        return backend_cls
    candidates = _backends_for(suffix)
    for backend_cls in candidates:
        if backend_cls.available():
            return backend_cls
    extras = ", ".join(f"pip install 'edgevit[{cls.extra}]' ({cls.name})" for cls in candidates)
    _, broken_backends = _importable_backends()
    broken = "".join(f"; backend {name!r} could not be imported ({why})" for name, why in broken_backends.items())
    raise MissingDependencyError(
        f"no backend that runs {suffix} files is installed here; install one: {extras or 'none registered'}{broken}"
    )


def backends_for(suffix: str) -> list[str]:
    """Names of the registered backends that open ``suffix`` files, in ``backend="auto"``'s order of
    preference (installed or not; a backend whose module does not import is left out).

    Example:
        >>> backends_for(".onnx")
        ['onnxruntime', 'openvino']
    """
    return [cls.name for cls in _backends_for(suffix)]


def _backends_for(suffix: str) -> list[type[Backend]]:
    found, _ = _importable_backends()
    return sorted((cls for cls in found if suffix in cls.suffixes), key=lambda c: (c.priority, c.name))


def _importable_backends() -> tuple[list[type[Backend]], dict[str, str]]:
    """Registered backends whose module imports, and why the others do not (one broken must not stop the rest)."""
    found, broken = [], {}
    for name in BACKENDS.names():
        try:
            found.append(BACKENDS.get(name))
        except (ImportError, AttributeError) as exc:
            broken[name] = f"{type(exc).__name__}: {exc}"
    return found, broken


def options_for(path: str | Path, backend: str = "auto", **options: Any) -> dict[str, Any]:
    """Of ``options``, those the backend that would open ``path`` takes (set ones only).

    For tools that run many file types with one setting (``edgevit bench --spin a.onnx b.tflite``):
    the setting applies where it means something and is left out elsewhere.
    """
    _, model_path = _locate(Path(path))
    takes = resolve_backend(model_path, backend).options
    return {key: value for key, value in options.items() if value is not None and key in takes}


def check_backend_options(backend_cls: type[Backend], options: dict[str, Any]) -> dict[str, Any]:
    """The options that are set (None dropped); one the backend does not take is refused, naming its options."""
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(backend_cls.options))
    if unknown:
        offered = "; ".join(f"{k}: {v}" for k, v in backend_cls.options.items()) or "none"
        others = [b.name for b in _importable_backends()[0] if set(unknown) <= set(b.options)]
        raise InvalidArgumentError(
            f"backend {backend_cls.name!r} takes no option {', '.join(map(repr, unknown))} (its options: {offered})"
            + (f"; {', '.join(map(repr, unknown))} is an option of {', '.join(others)}" if others else ""))
    return given


def _open(backend_cls: type[Backend], model_path: Path, threads: int | None,
          options: dict[str, Any] | None = None) -> BackendModel:
    try:
        return backend_cls().open(model_path, threads, **(options or {}))
    except EdgeVitError:
        raise
    except Exception as exc:  # noqa: BLE001 - native loaders raise many types; report one clear error
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(
            f"{backend_cls.name} could not load {str(model_path)!r}; the model file is corrupt or not a "
            f"{model_path.suffix} model ({type(exc).__name__}: {first_line})"
        ) from exc


# -- small helpers ----------------------------------------------------------------------------


def _public_names(declared: Sequence[TensorSpec], actual: Sequence[TensorSpec], kind: str) -> dict[str, str]:
    """Map the backend's tensor names to the manifest's (by position when they differ)."""
    names = [spec.name for spec in actual]
    if not declared or [spec.name for spec in declared] == names:
        return {name: name for name in names}
    if len(declared) != len(actual):
        raise ArtifactError(
            f"the manifest lists {len(declared)} {kind}(s) ({', '.join(s.name for s in declared)}) but the model "
            f"file has {len(actual)} ({', '.join(names)}); the artifact is inconsistent, export it again"
        )
    return {name: spec.name for name, spec in zip(names, declared)}


def _layout(manifest: Manifest | None, index: int, spec: TensorSpec) -> str | None:
    if manifest and index < len(manifest.inputs) and manifest.inputs[index].layout:
        return manifest.inputs[index].layout
    return spec.layout


def _shape_fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))


def _format_shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _describe(spec: TensorSpec) -> str:
    return f"{spec.name!r} {spec.dtype}{_format_shape(spec.shape)}"


def _as_image_list(images: Any) -> list[Any]:
    if images is None:
        raise InvalidArgumentError("predict needs images: a file path, a PIL image or an HxWx3 array, or a list of "
                                   "them; got None")
    if isinstance(images, (str, Path)) or not isinstance(images, (list, tuple, np.ndarray)):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim in (2, 3):
            return [images]
        if images.ndim == 4:
            return list(images)
        raise InvalidArgumentError(f"an image array must be HxW, HxWx3 or NxHxWx3, got shape {images.shape}")
    return list(images)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
