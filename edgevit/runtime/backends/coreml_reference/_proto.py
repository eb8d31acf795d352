"""coremltools' generated protobuf classes, loaded without importing coremltools itself.

``import coremltools`` runs its ``__init__``, which imports torch (and more) when they are
installed. The runtime must stay torch-free, and the only part of coremltools it needs is
the set of ``*_pb2.py`` modules protoc generated from Apple's ``Model.proto`` and
``MIL.proto``. Those modules import each other relatively (``from . import
FeatureTypes_pb2``), so they are loaded here as submodules of a private stand-in package
whose ``__path__`` is coremltools' ``proto`` folder; coremltools' own ``__init__`` never
runs. When coremltools is already imported (the export side), its modules are used as they
are, so one process never holds two copies of the same message classes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from edgevit.errors import MissingDependencyError

_STAND_IN = "_edgevit_coremltools_proto"
EXTRA = "coreml-reference"


def proto_folder() -> Path | None:
    """coremltools' ``proto`` folder, found without importing coremltools; None if absent."""
    try:
        spec = importlib.util.find_spec("coremltools")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "proto"
        if (folder / "Model_pb2.py").is_file() and (folder / "MIL_pb2.py").is_file():
            return folder
    return None


def protobuf_available() -> bool:
    try:
        return importlib.util.find_spec("google.protobuf") is not None
    except (ImportError, ValueError):
        return False


def load_proto(name: str) -> Any:
    """The generated module ``name`` (e.g. ``"Model_pb2"``), imported torch-free."""
    if "coremltools" in sys.modules:  # already paid for; share its classes
        return importlib.import_module(f"coremltools.proto.{name}")
    if _STAND_IN not in sys.modules:
        folder = proto_folder()
        if folder is None:
            raise MissingDependencyError(
                "reading .mlpackage files needs coremltools' protobuf definitions, which are not "
                f"installed; install them with: pip install 'edgevit[{EXTRA}]'"
            )
        if not protobuf_available():
            raise MissingDependencyError(
                f"reading .mlpackage files needs the 'protobuf' package; install it with: pip install 'edgevit[{EXTRA}]'"
            )
        package = types.ModuleType(_STAND_IN)
        package.__path__ = [str(folder)]
        package.__package__ = _STAND_IN
        sys.modules[_STAND_IN] = package
    return importlib.import_module(f"{_STAND_IN}.{name}")
