"""Reading an ``.mlpackage`` folder: ``Manifest.json``, the model spec and its weight files.

Layout written by coremltools::

    model.mlpackage/
        Manifest.json                         item entries; rootModelIdentifier names the spec
        Data/com.apple.CoreML/model.mlmodel   the Model protobuf (an ML Program)
        Data/com.apple.CoreML/weights/weight.bin

Inside the program a weight is ``@model_path/weights/weight.bin`` plus a byte offset, where
``@model_path`` is the folder that holds ``model.mlmodel``. Everything that is missing,
truncated or not an ML Program raises one :class:`~edgevit.errors.ArtifactError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevit.errors import ArtifactError
from edgevit.runtime.backends.coreml_reference._proto import load_proto
from edgevit.runtime.backends.coreml_reference.blob import WeightFile

MODEL_PATH_PREFIX = "@model_path/"


@dataclass
class MLPackage:
    """A parsed ``.mlpackage``: its Model protobuf and lazily opened weight files."""

    path: Path
    spec: Any
    model_dir: Path
    _weights: dict[str, WeightFile] = field(default_factory=dict)

    def weight_file(self, file_name: str) -> WeightFile:
        """The weight file a ``BlobFileValue`` names (``@model_path/weights/weight.bin``)."""
        if file_name not in self._weights:
            self._weights[file_name] = WeightFile(self._resolve(file_name))
        return self._weights[file_name]

    def _resolve(self, file_name: str) -> Path:
        if not file_name.startswith(MODEL_PATH_PREFIX):
            raise ArtifactError(
                f"{self.path.name}: a weight refers to {file_name!r}; only files inside the package "
                f"({MODEL_PATH_PREFIX}...) can be read"
            )
        target = (self.model_dir / file_name[len(MODEL_PATH_PREFIX):]).resolve()
        if self.model_dir.resolve() not in target.parents:
            raise ArtifactError(f"{self.path.name}: the weight path {file_name!r} leaves the package")
        return target

    def close(self) -> None:
        for weights in self._weights.values():
            weights.close()
        self._weights.clear()


def read_package(path: str | Path) -> MLPackage:
    """Parse ``path`` (an ``.mlpackage`` folder) into an :class:`MLPackage`.

    Raises:
        ArtifactError: the folder, its manifest or its spec is missing or corrupt, or the model
            is not an ML Program.
    """
    path = Path(path)
    if not path.is_dir():
        kind = "a file" if path.exists() else "missing"
        raise ArtifactError(f"{str(path)!r} is {kind}; an .mlpackage is a folder written by coremltools' save()")
    spec_path = _spec_path(path)
    model_pb2 = load_proto("Model_pb2")
    spec = model_pb2.Model()
    try:
        data = spec_path.read_bytes()
        spec.ParseFromString(data)
    except OSError as exc:
        raise ArtifactError(f"cannot read {spec_path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ArtifactError(f"{spec_path} is not a valid Core ML model spec (corrupt or truncated: {exc})") from exc
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise ArtifactError(
            f"{path.name} holds a {kind or 'empty'} model, not an ML Program; the reference executor runs "
            "ML Programs only (coremltools.convert(..., convert_to='mlprogram'))"
        )
    return MLPackage(path=path, spec=spec, model_dir=spec_path.parent)


def _spec_path(path: Path) -> Path:
    manifest_path = path / "Manifest.json"
    if not manifest_path.is_file():
        raise ArtifactError(f"{str(path)!r} has no Manifest.json; it is not an .mlpackage (or it is incomplete)")
    try:
        manifest = json.loads(manifest_path.read_text())
        root = manifest["rootModelIdentifier"]
        relative = manifest["itemInfoEntries"][root]["path"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(
            f"{manifest_path} is corrupt: cannot find the root model entry ({type(exc).__name__}: {exc})"
        ) from exc
    spec_path = (path / "Data" / relative).resolve()
    if path.resolve() not in spec_path.parents:
        raise ArtifactError(f"{manifest_path} points outside the package ({relative!r})")
    if not spec_path.is_file():
        raise ArtifactError(f"{path.name}: the model spec {relative!r} named in Manifest.json is missing")
    return spec_path
