"""The exported-artifact format: a folder holding a model file and ``manifest.json``.

This module is the contract between the export side (which writes artifacts) and the
torch-free runtime (which loads them); it imports only the standard library.

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

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevit.errors import ArtifactError

FORMAT = "edgevit-artifact"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "coreml": ".mlpackage"}


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
        kwargs = {k: data[k] for k in names if k in data}
        kwargs["inputs"] = tuple(TensorSpec.from_dict(t) for t in data["inputs"])
        kwargs["outputs"] = tuple(TensorSpec.from_dict(t) for t in data["outputs"])
        extra = {k: v for k, v in data.items() if k not in names and k not in ("format", "format_version")}
        return cls(**kwargs, extra=extra)

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=_json_default) + "\n")
        return path


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
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is corrupt: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} is corrupt: expected a JSON object")
    manifest = Manifest.from_dict(data)
    if not (folder / manifest.model_file).exists():
        raise ArtifactError(f"{str(folder)!r}: the manifest names {manifest.model_file!r} but it is not there")
    return manifest
