"""The interface every export target implements.

A target is a small class found by name in :data:`edgevit.export.targets.TARGETS`; its
converter is imported inside the methods that need it::

    class OnnxTarget(Target):
        name = "onnx"
        precisions = ("fp32", "fp16")
        dynamic_batch = True
        packages = ("torch", "onnx", "onnxscript")

        def convert(self, model, example, options, path) -> None: ...
        def read_ops(self, path) -> OpGraph: ...
        def inspect(self, path, options) -> OpReport: ...

``convert`` is given the reparameterized float32 model and an example input in the
artifact's layout; it wraps the model with :func:`edgevit.export.graph.prepare_graph`
(input named ``input``, float32 in and out, the requested layout and compute precision) and
writes the model file at ``path``. ``read_ops`` reads a file back with its format's reader
in :mod:`edgevit.formats` (the one place that parses the format; the quantizer reads through
it too); ``inspect`` turns that into an op histogram and warnings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgevit.artifact import MODEL_SUFFIXES, TensorSpec
from edgevit.errors import InvalidArgumentError, UnknownNameError
from edgevit.export.options import PRECISIONS, ExportOptions

if TYPE_CHECKING:
    from edgevit.export.ops import OpReport
    from edgevit.formats import OpGraph

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class Target(ABC):
    """One deployable model format."""

    name: ClassVar[str]
    #: float precisions this target's converter produces (names in ``PRECISIONS``)
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")
    #: quantized precisions made from the converted float model by ``edgevit.quantize``
    quantized_precisions: ClassVar[tuple[str, ...]] = ()
    #: input layouts it can take ("NCHW", "NHWC")
    layouts: ClassVar[tuple[str, ...]] = ("NCHW",)
    #: whether ``batch="dynamic"`` works
    dynamic_batch: ClassVar[bool] = False
    #: why dynamic batch does not work, for the error message
    dynamic_batch_note: ClassVar[str] = ""
    #: distributions whose versions go into the manifest
    packages: ClassVar[tuple[str, ...]] = ("torch",)
    #: pip extra that provides the converter
    extra: ClassVar[str] = "export"

    @property
    def all_precisions(self) -> tuple[str, ...]:
        """Every precision this target supports: float, then quantized."""
        return self.precisions + self.quantized_precisions

    @property
    def suffix(self) -> str:
        return MODEL_SUFFIXES[self.name]

    @property
    def model_file(self) -> str:
        return "model" + self.suffix

    # -- checks before any work -------------------------------------------------------------

    def check(self, options: ExportOptions) -> None:
        """Refuse options this target cannot honour, naming what it can do."""
        PRECISIONS.get(options.precision)
        if options.precision not in self.all_precisions:
            raise UnknownNameError(
                f"precision {options.precision!r} not supported by this target ({self.name}): "
                f"valid are {', '.join(self.all_precisions)}"
            )
        if options.layout not in self.layouts:
            raise InvalidArgumentError(
                f"the {self.name} target takes {' or '.join(self.layouts)} input, not {options.layout} "
                f"(--channels-last is for: tflite)"
            )
        if options.dynamic_batch and not self.dynamic_batch:
            raise InvalidArgumentError(
                f"the {self.name} target cannot export a dynamic batch{': ' + self.dynamic_batch_note if self.dynamic_batch_note else ''}; "
                "pass a fixed batch size, e.g. --batch 1"
            )

    # -- the work ---------------------------------------------------------------------------

    @abstractmethod
    def convert(self, model: Any, example: Any, options: ExportOptions, path: Path) -> None:
        """Convert ``model`` (float32, NCHW; traced with ``example``) and write the model file at ``path``."""

    def read_ops(self, path: Path) -> OpGraph:
        """The ops and tensors of the model file at ``path``: ``read_ops`` of its format's module in
        :mod:`edgevit.formats` (a target whose files have no reader there need not have one)."""
        raise NotImplementedError(f"the {self.name} target has no op reader (see edgevit.formats)")

    @abstractmethod
    def inspect(self, path: Path, options: ExportOptions) -> OpReport:
        """The op histogram of the written model, and warnings for ops that hurt on this target."""

    def io_specs(self, options: ExportOptions, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
                 image_input: bool = True) -> tuple[TensorSpec, TensorSpec]:
        """The input and output the converted model declares, from one sample's shapes (input
        channels first); an image input carries its layout, a tensor input none."""
        batch = None if options.dynamic_batch else options.batch
        shape = tuple(input_shape)
        if image_input and options.channels_last:
            shape = (*shape[1:], shape[0])
        return (
            TensorSpec(INPUT_NAME, (batch, *shape), "float32", options.layout if image_input else None),
            TensorSpec(OUTPUT_NAME, (batch, *output_shape), "float32"),
        )

    def diagnosis_programs(self, program: Any) -> list[Any]:
        """``program`` (the model's ExportedProgram) in the forms this converter sees, to locate a failing op."""
        return [program, program.run_decompositions({})]

    # -- verification -----------------------------------------------------------------------

    def verification_backends(self) -> tuple[str, ...]:
        """Runtime backends registered for this target's files, in ``backend="auto"``'s order of
        preference; verification runs the artifact with the first one installed here."""
        from edgevit.runtime import backends_for

        return tuple(backends_for(self.suffix))

    def structural_check(self, path: Path, options: ExportOptions, inputs: tuple[TensorSpec, ...],
                         outputs: tuple[TensorSpec, ...]) -> dict[str, Any]:
        """Checks that need no execution; ``{"ok": bool, "checks": [...], "problems": [...]}``."""
        return {"ok": True, "checks": [], "problems": []}

    def converter_versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        versions = {}
        for package in self.packages:
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                versions[package] = "not installed"
        return versions

    def notes(self, options: ExportOptions) -> list[str]:
        """Facts about this artifact a user should know (what fp16 means here, ...)."""
        return []

    def companions(self, path: Path, options: ExportOptions) -> dict[str, dict[str, Any]]:
        """Write the files this target derives from the finished model file at ``path`` into its
        folder, for runtimes that load another form of the same model (the ONNX target's ``.ort``);
        ``{file name: {"backend": the runtime backend that opens it, ...how it was made}}``. The
        export pipeline then runs each with that backend on the verification samples and checks it
        against the model file. Default: none."""
        return {}
