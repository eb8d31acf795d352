"""Core ML on macOS: runs ``.mlpackage`` artifacts with ``coremltools`` prediction.

Prediction needs Apple's Core ML framework, so this backend is available on macOS only.
On Linux, ``.mlpackage`` artifacts run with the numpy reference executor
(``backend="coreml-reference"``), which ``backend="auto"`` picks there.

coremltools imports torch when torch is installed, so it is imported inside :meth:`open`
and never at module import time. Core ML chooses its own threads and compute units
(``compute_units="ALL"``: CPU, GPU and Neural Engine); it has no thread-count setting, so a
``threads`` value is reported as not applied (a warning) rather than dropped silently.

Example:
    >>> from edgevit.runtime import load
    >>> session = load("cas_vit_xs-coreml-fp16", backend="coreml")   # macOS
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np

from edgevit.artifact import TensorSpec
from edgevit.environment import is_macos
from edgevit.errors import MissingDependencyError, require
from edgevit.runtime._backend import Backend, BackendModel

#: Core ML multi-array data types (``ArrayFeatureType.ArrayDataType`` values) -> numpy dtype names
COREML_DTYPES = {65568: "float32", 65600: "float64", 65552: "float16", 131104: "int32", 131080: "int8"}


class CoreMLModel(BackendModel):
    """A ``coremltools.models.MLModel`` behind the backend interface."""

    def __init__(self, mlmodel) -> None:
        self.mlmodel = mlmodel
        self.threads = None
        description = mlmodel.get_spec().description
        self.input_specs = tuple(_spec(feature) for feature in description.input)
        self.output_specs = tuple(_spec(feature) for feature in description.output)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.mlmodel.predict(feeds)
        return {spec.name: np.asarray(outputs[spec.name]) for spec in self.output_specs}

    def close(self) -> None:
        self.mlmodel = None


class CoreMLBackend(Backend):
    name = "coreml"
    suffixes = (".mlpackage",)
    extra = "coreml"
    distribution = "coremltools"
    priority = 10

    @classmethod
    def available(cls) -> bool:
        return is_macos() and importlib.util.find_spec("coremltools") is not None

    def open(self, model_path: Path, threads: int | None) -> CoreMLModel:
        if not is_macos():
            raise MissingDependencyError(
                "the 'coreml' backend predicts with Apple's Core ML framework, which exists only on macOS; "
                "on this machine run .mlpackage artifacts with backend='coreml-reference' "
                "(numpy executor: pip install 'edgevit[coreml-reference]')"
            )
        ct = require("coremltools", self.extra, "running CoreML artifacts")
        if threads is not None:
            warnings.warn(
                f"Core ML has no thread-count setting; threads={threads} is not applied "
                "(Core ML schedules CPU, GPU and Neural Engine itself)",
                stacklevel=3,
            )
        mlmodel = ct.models.MLModel(str(model_path), compute_units=ct.ComputeUnit.ALL)
        return CoreMLModel(mlmodel)


def _spec(feature) -> TensorSpec:
    array = feature.type.multiArrayType
    shape = tuple(int(d) for d in array.shape)
    return TensorSpec(feature.name, shape, COREML_DTYPES.get(int(array.dataType), "float32"))
