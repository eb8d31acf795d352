"""The exported-artifact format: a folder holding a model file and ``manifest.json``.

This module is the contract between the export side (which writes artifacts) and the
torch-free runtime (which loads them); it imports only the standard library (and edgevit's own
:mod:`edgevit._files`, which does too).

Layout::

    cas_vit_xs-onnx-fp32/
        model.onnx              (model.tflite, or model.mlpackage/ for CoreML)
        manifest.json

Example:
    >>> manifest = read_manifest("cas_vit_xs-onnx-fp32")
    >>> manifest.model_file, manifest.inputs[0].shape
    (PosixPath('cas_vit_xs-onnx-fp32/model.onnx'), (1, 3, 224, 224))
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevit._files import file_sha256, read_json, write_json
from edgevit.errors import ArtifactError

FORMAT = "edgevit-artifact"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
#: what a machine records in an artifact folder about running it there (edgevit.runtime.choice): not
#: part of the artifact, so not in its digest and not uploaded
BACKEND_CHOICE_NAME = "backend_choice.json"
#: the model-file suffix of every target's format: the one table the runtime, the manifest check,
#: the export targets and the bench read (a new target adds its own with register_model_suffix)
MODEL_SUFFIXES: dict[str, str] = {"onnx": ".onnx", "tflite": ".tflite", "coreml": ".mlpackage", "executorch": ".pte"}
#: tensor dtypes a manifest may name (numpy names)
DTYPES = ("float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "bool")
LAYOUTS = ("NCHW", "NHWC")
#: preprocessing choices (edgevit.data.preprocess.PreprocessSpec reads them from here)
RESIZE_MODES = ("crop", "warp")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
#: bounds that keep a manifest from asking for absurd work (a 1e9-pixel resize, a 100-d tensor)
MAX_IMAGE_SIZE = 4096
MAX_TENSORS = 64
MAX_RANK = 8
MAX_DIM = 2**31 - 1
MAX_NAME = 256


@dataclass(frozen=True)
class TensorSpec:
    """A named model input or output. ``None`` in ``shape`` marks a dynamic dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    layout: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "layout": self.layout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(data["name"], tuple(data["shape"]), data.get("dtype", "float32"), data.get("layout"))


@dataclass(frozen=True)
class Manifest:
    """Everything ``manifest.json`` says. Unknown keys are kept in ``extra``.

    Fields:
        model: ``{"name", "family", "num_classes", "params", "gmacs", "image_size"}``.
        weights: ``{"path", "sha256"}`` or ``{"path": None, "sha256": None, "note": "random init"}``.
        target / precision: e.g. ``"onnx"`` / ``"fp32"``.
        model_file: name of the model file (or ``.mlpackage`` folder) inside the artifact.
        inputs / outputs: tensor specs; the input layout is ``"NCHW"`` or ``"NHWC"``.
        preprocessing: :class:`edgevit.data.PreprocessSpec` as a dict.
        labels: class names, or None.
        converter: package versions used to convert.
        files: ``{file name: size in bytes}``.
        ops: ``{"histogram": {op: count}, "warnings": [...]}``.
        verification: the report of the check against PyTorch (see edgevit.export.verify).
        options: the export options used.
    """

    model: dict[str, Any]
    target: str
    precision: str
    model_file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: dict[str, Any]
    weights: dict[str, Any] = field(default_factory=dict)
    labels: list[str] | None = None
    converter: dict[str, str] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    ops: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    edgevit_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def model_files(self) -> dict[str, int]:
        """``files`` without the companions (``extra["companions"]``: another form of the same model for
        another runtime, such as ``model.ort``): what running ``model_file`` needs."""
        companions = set(self.extra.get("companions", {}))
        return {name: size for name, size in self.files.items() if name not in companions}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = [t.to_dict() for t in self.inputs]
        data["outputs"] = [t.to_dict() for t in self.outputs]
        extra = data.pop("extra")
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **data, **extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise ArtifactError(f"not an edgevit manifest (format={data.get('format')!r}, expected {FORMAT!r})")
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise ArtifactError(
                f"manifest format version {data['format_version']} is newer than this edgevit "
                f"understands ({FORMAT_VERSION}); upgrade edgevit"
            )
        names = set(cls.__dataclass_fields__) - {"extra"}
        missing = [k for k in ("model", "target", "precision", "model_file", "inputs", "outputs", "preprocessing")
                   if k not in data]
        if missing:
            raise ArtifactError(f"manifest is missing required fields: {', '.join(missing)}")
        problems = manifest_problems(data)
        if problems:
            raise ArtifactError(f"manifest is invalid: {'; '.join(problems[:8])}"
                                + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""))
        kwargs = {k: data[k] for k in names if k in data}
        kwargs["inputs"] = tuple(TensorSpec.from_dict(t) for t in data["inputs"])
        kwargs["outputs"] = tuple(TensorSpec.from_dict(t) for t in data["outputs"])
        extra = {k: v for k, v in data.items() if k not in names and k not in ("format", "format_version")}
        return cls(**kwargs, extra=extra)

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        return write_json(path, self.to_dict(), default=_json_default)


def register_model_suffix(target: str, suffix: str, override: bool = False) -> None:
    """Make ``target``'s model files (``model<suffix>``) known to artifacts and the runtime.

    Raises:
        InvalidArgumentError: the suffix is not ``.name``, or the target or suffix is taken.
    """
    from edgevit.errors import InvalidArgumentError

    if not (isinstance(suffix, str) and suffix.startswith(".") and suffix[1:].isalnum()):
        raise InvalidArgumentError(f"a model suffix is a dot and letters or digits ('.onnx'), got {suffix!r}")
    taken = {s: t for t, s in MODEL_SUFFIXES.items() if t != target}
    if not override and (target in MODEL_SUFFIXES or suffix in taken):
        owner = target if target in MODEL_SUFFIXES else taken[suffix]
        raise InvalidArgumentError(f"target {owner!r} already has model suffix {MODEL_SUFFIXES[owner]!r}; "
                                   "pass override=True to replace it")
    MODEL_SUFFIXES[target] = suffix


def manifest_problems(data: dict[str, Any]) -> list[str]:
    """Every way the manifest ``data`` (parsed JSON) breaks the format: types, ranges, file names.

    The runtime loads what a manifest names and the agent accepts manifests over the network,
    so nothing in one is trusted: the model file must be a plain name inside the artifact folder
    with its target's suffix, tensors must have sane names, shapes and dtypes, and preprocessing
    must describe an image a device can make. Returns one line per problem (empty: valid).
    """
    problems: list[str] = []
    target = data.get("target")
    if target not in MODEL_SUFFIXES:
        problems.append(f"target {target!r} is not one of {', '.join(MODEL_SUFFIXES)}")
    precision = data.get("precision")
    if not (isinstance(precision, str) and precision.isalnum() and len(precision) <= 16):
        problems.append(f"precision {precision!r} is not a precision name (fp32, fp16, int8, w8...)")
    model_file = data.get("model_file")
    problem = relative_file_problem(model_file, "model_file", allow_folders=False)
    if problem:
        problems.append(problem)
    elif target in MODEL_SUFFIXES and not model_file.endswith(MODEL_SUFFIXES[target]):
        problems.append(f"model_file {model_file!r} does not end in {MODEL_SUFFIXES[target]!r}, the {target} suffix")
    for key in ("inputs", "outputs"):
        problems += _tensor_list_problems(data.get(key), key)
    for key in ("model", "preprocessing", "weights", "converter", "files", "ops", "verification", "options"):
        if key in data and not isinstance(data[key], dict):
            problems.append(f"{key} must be an object, got {type(data[key]).__name__}")
    if isinstance(data.get("preprocessing"), dict):
        problems += preprocessing_problems(data["preprocessing"])
    labels = data.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        problems.append("labels must be a list of strings or null")
    files = data.get("files")
    if isinstance(files, dict):
        for name, size in files.items():
            problem = relative_file_problem(name, "files entry")
            if problem:
                problems.append(problem)
            elif isinstance(size, bool) or not isinstance(size, int) or size < 0:
                problems.append(f"files[{name!r}] must be a byte count, got {size!r}")
    return problems


def relative_file_problem(name: Any, what: str, allow_folders: bool = True) -> str | None:
    """Why ``name`` is not a safe relative path inside an artifact folder, or None.

    Safe: forward slashes only, no absolute path, no ``.``/``..`` or empty part, no part starting
    with ``.`` other than the names edgevit writes, at most 8 parts of at most 255 characters.
    """
    if not isinstance(name, str) or not name:
        return f"{what} must be a non-empty string, got {name!r}"
    parts = name.split("/")
    bad = ("\\" in name or "\x00" in name or name.startswith("/") or len(parts) > 8
           or any(part in ("", ".", "..") or len(part) > 255 or part.startswith(".") for part in parts))
    if bad or (not allow_folders and len(parts) > 1):
        kind = "a plain file name" if not allow_folders else "a relative path inside the artifact folder"
        return f"{what} {name!r} is not {kind} (no '..', no absolute path, no hidden or empty parts)"
    return None


def preprocessing_problems(spec: dict[str, Any]) -> list[str]:
    """Why a manifest's ``preprocessing`` cannot make an image for the model (empty: it can)."""
    problems = []
    size = spec.get("size", 224)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IMAGE_SIZE:
        problems.append(f"preprocessing.size must be an integer in 1..{MAX_IMAGE_SIZE}, got {size!r}")
    for key, low in (("mean", None), ("std", 0.0)):
        if key not in spec:
            continue
        value = spec[key]
        if not (isinstance(value, list) and len(value) == 3 and all(_finite(v) for v in value)):
            problems.append(f"preprocessing.{key} must be 3 finite numbers (one per RGB channel), got {value!r}")
        elif low is not None and any(v <= low for v in value):
            problems.append(f"preprocessing.{key} must be positive, got {value!r}")
    crop = spec.get("crop_pct", 0.875)
    if not _finite(crop) or not 0.05 <= crop <= 1.0:
        problems.append(f"preprocessing.crop_pct must be in [0.05, 1], got {crop!r}")
    for key, allowed in (("resize_mode", RESIZE_MODES), ("interpolation", INTERPOLATIONS), ("layout", LAYOUTS)):
        if key in spec and spec[key] not in allowed:
            problems.append(f"preprocessing.{key} must be one of {', '.join(allowed)}, got {spec[key]!r}")
    return problems


def _tensor_list_problems(tensors: Any, key: str) -> list[str]:
    if not isinstance(tensors, list) or not 1 <= len(tensors) <= MAX_TENSORS:
        return [f"{key} must be a list of 1..{MAX_TENSORS} tensor descriptions, got {_short(tensors)}"]
    problems = []
    names = set()
    for i, tensor in enumerate(tensors):
        where = f"{key}[{i}]"
        if not isinstance(tensor, dict):
            problems.append(f"{where} must be an object with name, shape and dtype, got {_short(tensor)}")
            continue
        name, shape = tensor.get("name"), tensor.get("shape")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME or name in names:
            problems.append(f"{where}.name must be a unique non-empty string of at most {MAX_NAME} characters, "
                            f"got {_short(name)}")
        names.add(name)
        if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(
                dim is None or (isinstance(dim, int) and not isinstance(dim, bool) and 1 <= dim <= MAX_DIM)
                for dim in shape):
            problems.append(f"{where}.shape must be a list of at most {MAX_RANK} positive integers or null "
                            f"(dynamic), got {_short(shape)}")
        if tensor.get("dtype", "float32") not in DTYPES:
            problems.append(f"{where}.dtype must be one of {', '.join(DTYPES)}, got {_short(tensor.get('dtype'))}")
        if tensor.get("layout") not in (None, *LAYOUTS):
            problems.append(f"{where}.layout must be NCHW, NHWC or null, got {_short(tensor.get('layout'))}")
    return problems


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) < 1e30


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def artifact_digest(folder: str | Path) -> str:
    """A sha256 over an artifact folder's files (relative paths and contents, sorted by path).

    Two folders with the same files give the same digest wherever they are: the agent and the
    client compare it to know whether a device already holds this exact artifact. A machine's
    record of its fastest backend (:data:`BACKEND_CHOICE_NAME`) is not part of it.
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix()
                       != BACKEND_CHOICE_NAME):
        relative = path.relative_to(folder).as_posix()
        digest.update(relative.encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to a manifest")


def read_manifest(folder: str | Path) -> Manifest:
    """Read and validate ``manifest.json`` of an artifact folder.

    Raises:
        ArtifactError: one clear line when the folder, manifest or model file is missing or corrupt.
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ArtifactError(f"{str(folder)!r} is not an artifact folder (no such directory)")
    if not path.is_file():
        raise ArtifactError(f"{str(folder)!r} has no {MANIFEST_NAME}; is it an edgevit artifact?")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} is corrupt: expected a JSON object")
    manifest = Manifest.from_dict(data)
    model_path = folder / manifest.model_file
    if not model_path.exists():
        raise ArtifactError(f"{str(folder)!r}: the manifest names {manifest.model_file!r} but it is not there")
    if model_path.is_symlink() or not model_path.resolve().is_relative_to(folder.resolve()):
        raise ArtifactError(f"{str(folder)!r}: the model file {manifest.model_file!r} is a link; an artifact's "
                            "files must be inside its folder")
    return manifest
