"""The export pipeline: named steps over one :class:`ExportJob`, written atomically.

:data:`PIPELINE` is plain data (a tuple of :class:`Step`), so a user can see what an export
does and in which order::

    >>> [step.name for step in PIPELINE]
    ['prepare', 'convert', 'quantize', 'inspect', 'verify', 'write']

Everything is written into a hidden staging folder next to the destination
(``.<name>-<target>-<precision>.XXXX.partial``) and renamed into place by the last step; any
failure removes the staging folder, so an export either produces a whole artifact or
nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgevit._files import normal_modes, signals_deferred, staging_dir
from edgevit._progress import Progress
from edgevit.artifact import Manifest, TensorSpec
from edgevit.errors import ConversionError, EdgeVitError, InvalidArgumentError, VerificationError
from edgevit.export.ops import OpReport
from edgevit.export.options import ExportOptions
from edgevit.export.prepare import PreparedModel, prepare_model
from edgevit.export.targets import Target, get_target
from edgevit.precision import precision


@dataclass
class ExportJob:
    """The working state of one export (one model, one target, one precision)."""

    source: Any
    options: ExportOptions
    target: Target
    prepared: PreparedModel | None = None
    staging: Path | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    ops: OpReport | None = None
    verification: dict[str, Any] = field(default_factory=lambda: {"status": "skipped"})
    quantization: dict[str, Any] | None = None
    #: the calibration images of a quantized precision (with held-out images when verified in domain)
    calibration: Any = None
    converter_log: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    cpu_timings: dict[str, float] = field(default_factory=dict)
    manifest: Manifest | None = None
    #: ``{file: how it was made and its verification}`` of the target's companion files (``model.ort``)
    companions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the verification inputs and their PyTorch outputs, computed once (see :func:`verification_samples`)
    samples: tuple[Any, Any] | None = None
    path: Path | None = None
    #: what a long step is doing now (quantization's calibration and search), for the progress display
    note: Callable[[str], None] = field(default=lambda message: None, repr=False)

    @property
    def artifact_name(self) -> str:
        if self.prepared is not None:
            name = self.prepared.name
        else:
            name = self.options.name or (self.source if isinstance(self.source, str) else type(self.source).__name__)
        return f"{name}-{self.options.target}-{self.options.precision}"

    @property
    def model_path(self) -> Path:
        assert self.staging is not None
        return self.staging / self.target.model_file


@dataclass(frozen=True)
class Step:
    """One named step of the pipeline and what it does."""

    name: str
    run: Callable[[ExportJob], None]
    doc: str


def prepare(job: ExportJob) -> None:
    """Build (or reuse) the reparameterized model, its reference outputs and the staging folder."""
    if job.prepared is None:
        job.prepared = prepare_model(job.source, job.options)
    prepared = job.prepared
    input_spec, output_spec = job.target.io_specs(job.options, prepared.input_shape, prepared.output_shape,
                                                  prepared.image_input)
    job.inputs, job.outputs = (input_spec,), (output_spec,)
    with signals_deferred():  # recorded before a SIGTERM can unwind: run_pipeline removes it
        job.staging = staging_dir(job.options.out, job.artifact_name)


def convert(job: ExportJob) -> None:
    """Run the target's converter; a failure names the op and the model module it came from."""
    from edgevit._quiet import captured_output
    from edgevit.export.diagnose import explain_failure

    prepared = job.prepared
    example = prepared.example(job.options)
    log = None
    try:
        with captured_output() as log:
            job.target.convert(prepared.model, example, job.options, job.model_path)
    except EdgeVitError:
        raise
    except Exception as exc:  # noqa: BLE001 - converters raise anything; explain it in one error
        text = log.text if log is not None else ""
        message = explain_failure(job.options.target, prepared.name, exc, text,
                                  lambda: job.target.diagnosis_programs(prepared.exported_program(example, job.options)))
        error = ConversionError(message)
        if text.strip():  # shown by --debug (tracebacks print notes), not in the one-line error
            error.add_note("converter output (last lines):\n" + "\n".join(text.strip().splitlines()[-60:]))
        raise error from exc
    job.converter_log = log.text
    if not job.model_path.exists():
        raise ConversionError(f"the {job.options.target} converter reported success but wrote no {job.model_path.name}")


def quantize(job: ExportJob) -> None:
    """Quantized precisions (int8, w8, w6, w4): calibrate, choose by measurement what stays float,
    quantize the converted float model in place (edgevit.quantize); float precisions: nothing."""
    from edgevit.quantize.export_step import quantize_job

    quantize_job(job)


def inspect(job: ExportJob) -> None:
    """Read the written model back: op histogram and warnings."""
    from edgevit._quiet import captured_output

    with captured_output():
        job.ops = job.target.inspect(job.model_path, job.options)


def verify(job: ExportJob) -> None:
    """Run the artifact with the torch-free runtime and compare with PyTorch (unless --no-verify);
    with --data, also its accuracy and PyTorch's on that labelled set."""
    from edgevit._quiet import captured_output
    from edgevit.export.verify import backend_usable, verify_artifact
    from edgevit.runtime.cpu import int8_path

    if job.options.verify:  # the staging manifest says where it is being verified (see edgevit.runtime.cpu)
        job.verification = {"status": "running", "cpu": int8_path().to_dict()}
    job.manifest = build_manifest(job)
    job.manifest.write(job.staging)
    prepared = job.prepared
    if job.options.verify:
        samples, reference = verification_samples(job)
        with captured_output():
            job.verification = verify_artifact(job.staging, job.manifest, samples, reference, job.target, job.options,
                                               classifies=prepared.classifies)
    if job.options.data is not None:  # asked for explicitly, so measured even with --no-verify
        from edgevit.quantize.export_step import labelled_accuracy

        backend = next((b for b in job.target.verification_backends() if backend_usable(b)[0]), "auto")
        with captured_output():
            job.verification["accuracy"] = labelled_accuracy(
                job.model_path, backend, job.options.layout, prepared.model, job.options.data,
                prepared.preprocessing("NCHW"))
    if job.verification["status"] == "failed":
        problems = "; ".join(job.verification["failures"])
        raise VerificationError(
            f"{job.artifact_name} does not match PyTorch: {problems}. No artifact was written; "
            "rerun with --no-verify to keep it anyway"
        )


def verification_samples(job: ExportJob) -> tuple[Any, Any]:
    """The prepared samples, plus the held-out images of the calibration source that the quantize
    step read for precisions judged in domain (int8), with their PyTorch reference from the deploy
    model (equal to the original within float rounding). Computed once per job: the verify and
    companions steps share them."""
    if job.samples is None:
        job.samples = _verification_samples(job)
    return job.samples


def _verification_samples(job: ExportJob) -> tuple[Any, Any]:
    import torch

    from edgevit.export.verify import with_held_out

    prepared = job.prepared
    calibration = job.calibration
    if calibration is None or calibration.held_out is None:
        return prepared.samples, prepared.reference
    with torch.no_grad():
        reference = prepared.model(torch.from_numpy(calibration.held_out)).float().numpy()
    return with_held_out(prepared.samples, prepared.reference, list(calibration.held_out_names), calibration.held_out,
                         reference)


def companions(job: ExportJob) -> None:
    """Files the target derives from the finished model (ONNX with ``--ort-format``: ``model.ort``),
    each verified against PyTorch like the model file, with the backend that opens it; one that
    fails stops the export like a failed verification."""
    from edgevit._quiet import captured_output
    from edgevit.export.verify import verify_artifact

    made = job.target.companions(job.model_path, job.options)
    for name, info in made.items():
        if not job.options.verify:
            info["verification"] = {"status": "skipped"}
            continue
        samples, reference = verification_samples(job)
        with captured_output():
            report = verify_artifact(job.staging, job.manifest, samples, reference, job.target, job.options,
                                     classifies=job.prepared.classifies, model_file=name, backends=(info["backend"],))
        info["verification"] = report
        if report["status"] != "passed":
            raise VerificationError(f"{name} (written from {job.target.model_file}) does not match PyTorch: "
                                    f"{'; '.join(report['failures'])}. No artifact was written")
    job.companions = made


def write(job: ExportJob) -> None:
    """Write the final manifest and rename the staging folder into place."""
    job.manifest = build_manifest(job)
    job.manifest.write(job.staging)
    final = job.options.out / job.artifact_name
    install(job.staging, final)
    job.staging = None
    job.path = final


PIPELINE: tuple[Step, ...] = (
    Step("prepare", prepare, "build the model, reparameterize it, compute PyTorch reference outputs"),
    Step("convert", convert, "run the target's converter into a staging folder"),
    Step("quantize", quantize, "quantized precisions: calibrate, pick what stays float by measurement, quantize"),
    Step("inspect", inspect, "op histogram and warnings of the written model"),
    Step("verify", verify, "run the artifact with edgevit.runtime and compare with PyTorch"),
    Step("companions", companions, "files derived from the model for other runtimes (ONNX --ort-format: "
         "model.ort), each verified like the model"),
    Step("write", write, "write manifest.json and rename the staging folder into place"),
)


def run_pipeline(job: ExportJob, progress: Progress | None = None,
                 steps: tuple[Step, ...] = PIPELINE) -> ExportJob:
    """Run ``steps`` on ``job``; on any failure the staging folder is removed and the error raised."""
    progress = progress or Progress(enabled=False)
    job.note = progress.note
    try:
        for step in steps:
            with progress.step(f"[{job.artifact_name}] {step.name}"):
                start, cpu_start = time.perf_counter(), time.process_time()
                step.run(job)
                job.timings[step.name] = round(time.perf_counter() - start, 3)
                job.cpu_timings[step.name] = round(time.process_time() - cpu_start, 3)
    finally:
        if job.staging is not None:
            shutil.rmtree(job.staging, ignore_errors=True)
            job.staging = None
    return job


# -- the manifest ------------------------------------------------------------------------------


def build_manifest(job: ExportJob) -> Manifest:
    from edgevit import __version__

    prepared, options = job.prepared, job.options
    return Manifest(
        model=prepared.model_meta,
        target=options.target,
        precision=options.precision,
        model_file=job.target.model_file,
        inputs=job.inputs,
        outputs=job.outputs,
        preprocessing=prepared.preprocessing(options.layout).to_dict() if prepared.image_input else {},
        weights=prepared.weights,
        labels=prepared.labels,
        converter=job.target.converter_versions(),
        files=file_sizes(job.staging, job.target.model_file),
        ops=job.ops.to_dict() if job.ops else {},
        verification=job.verification,
        options=options.to_dict(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        edgevit_version=__version__,
        extra={"notes": job.target.notes(options), "timings": dict(job.timings), "cpu_seconds": dict(job.cpu_timings),
               **({"quantization": job.quantization} if job.quantization else {}),
               **({"companions": job.companions} if job.companions else {})},
    )


def file_sizes(folder: Path, model_file: str) -> dict[str, int]:
    """``{relative path: bytes}`` of the model file(s); an ``.mlpackage`` lists its files."""
    sizes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            sizes[str(path.relative_to(folder))] = path.stat().st_size
    return sizes


# -- writing atomically ------------------------------------------------------------------------


def check_replaceable(final: Path) -> None:
    """Refuse to replace an existing artifact folder that holds files edgevit did not write.

    Raises:
        InvalidArgumentError: listing them, and what to do.
    """
    from edgevit._files import foreign_files

    if final.exists() and not final.is_dir():
        raise InvalidArgumentError(f"{str(final)!r} exists and is not an artifact folder; move it, or pass another --out")
    foreign = foreign_files(final)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InvalidArgumentError(
            f"{str(final)!r} holds files edgevit did not write ({shown}); exporting again would delete them. "
            "Move them out, or pass another --out")


def install(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``; an existing ``final`` is replaced only once the new one is in place.

    Everything in it first gets normal permissions (converters and :mod:`tempfile` make private ones)."""
    normal_modes(staging)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except OSError:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def new_job(source: Any, options: ExportOptions, prepared: PreparedModel | None = None) -> ExportJob:
    """A job with its target resolved and checked against the options (no work done yet)."""
    target = get_target(options.target)
    target.check(options)
    _check_piece_calibration(source, options, target)
    if isinstance(source, str) and options.weights is None and options.precision in target.quantized_precisions \
            and precision(options.precision).needs_calibration:
        import warnings

        warnings.warn(f"{source} has random-init weights: its outputs barely depend on the image, so int8's top-1 "
                      "agreement with float can be near chance even when the conversion is right; quantize trained "
                      "weights (--weights) to judge an int8 model", UserWarning, stacklevel=2)
    if options.precision in target.quantized_precisions or options.data is not None:
        from edgevit.quantize.export_step import check_sources

        check_sources(options, options.precision in target.quantized_precisions)  # before any conversion
    return ExportJob(source=source, options=options, target=target, prepared=prepared)


def _check_piece_calibration(source: Any, options: ExportOptions, target: Any) -> None:
    """A quantized tensor-input piece needs its own calibration inputs: refused before any work."""
    from edgevit.export.prepare import Piece

    if (isinstance(source, Piece) and options.precision in target.quantized_precisions
            and not source.image_input and source.calibration is None):
        shape = tuple(source.inputs.shape[1:])
        raise InvalidArgumentError(
            f"{source.name} takes an intermediate tensor {shape}, so it cannot be calibrated on images; give the "
            f"piece its own calibration inputs (Piece(calibration=...)) to export it at {options.precision}")
