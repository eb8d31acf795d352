"""The one exception tree of edgevit.

Every error that edgevit raises on purpose derives from :class:`EdgeVitError`; the CLI
prints such errors as ``ErrorType: message`` (no traceback unless ``--debug``)::

    EdgeVitError
    ├── UnknownNameError          a registry lookup failed (model, target, backend, strategy)
    ├── InvalidArgumentError      a value a user passed is not allowed (size, precision, ...)
    ├── CheckpointError           a weights file cannot be read or does not fit the model
    │   └── CheckpointMismatchError   keys or shapes differ; lists them all
    ├── MissingDependencyError    an optional package is not installed; names the pip extra
    ├── ConversionError           a converter failed; names the op and module where known
    ├── VerificationError         an artifact's numbers differ from PyTorch beyond tolerance
    ├── ArtifactError             an artifact folder or model file is corrupt or incomplete
    ├── RuntimeInputError         inputs given to a runtime session are wrong
    ├── UnsupportedOpError        an executor met an op it does not implement
    ├── DataError                 a dataset or image cannot be used
    ├── PlanningError             devices/partitioning cannot satisfy the request
    ├── ProfileError              a device profile file is corrupt, incomplete or from another
    │                             profile format version (re-probe the device)
    └── AgentError                a device agent refused or failed a request; ``code`` is the
                                  gRPC status name (NOT_FOUND, INVALID_ARGUMENT, UNAUTHENTICATED...)
"""

from __future__ import annotations


class EdgeVitError(Exception):
    """Base class of every error edgevit raises on purpose."""


class UnknownNameError(EdgeVitError, KeyError):
    """A name was looked up in a registry and not found."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(EdgeVitError, ValueError):
    """A value passed by the user is not allowed."""


class CheckpointError(EdgeVitError):
    """A weights file cannot be read or used."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or tensor shapes do not match the model."""


class MissingDependencyError(EdgeVitError, ImportError):
    """An optional dependency is missing; the message names the pip extra that provides it."""


class ConversionError(EdgeVitError):
    """A converter failed on the model."""


class VerificationError(EdgeVitError):
    """An exported artifact does not reproduce the PyTorch model within tolerance."""


class ArtifactError(EdgeVitError):
    """An artifact folder, manifest or model file is missing, corrupt or inconsistent."""


class RuntimeInputError(EdgeVitError, ValueError):
    """Inputs passed to a runtime session have the wrong name, shape or dtype."""


class UnsupportedOpError(EdgeVitError):
    """An executor met an op (or op version) it does not implement."""


class DataError(EdgeVitError):
    """A dataset, folder or image cannot be used."""


class PlanningError(EdgeVitError):
    """A partition or placement request cannot be satisfied."""


class ProfileError(EdgeVitError):
    """A device profile (``edgevit.predict``) cannot be read: corrupt, incomplete, or written in
    another profile format version. The message names the file and says to re-probe the device."""


class AgentError(EdgeVitError):
    """A request to a device agent was refused or failed.

    Raised inside the agent (and turned into the gRPC status ``code``) and by edgevit's client
    (with the status the agent answered). ``code`` is a ``grpc.StatusCode`` name.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.args[0]}" if self.args else self.code


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional dependency or raise an error that names the pip extra.

    Example:
        >>> ort = require("onnxruntime", "onnxruntime", "running ONNX artifacts")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"{module!r} is needed{why} but is not installed ({exc}); "
            f"install it with: pip install 'edgevit[{extra}]'"
        ) from exc
