"""Export: a zoo model (or any edge-contract module) to ONNX, TFLite or Core ML, verified.

Every export starts from ``model.reparameterize()``, runs the pipeline of named steps in
:data:`~edgevit.export.pipeline.PIPELINE` (prepare -> convert -> quantize -> inspect -> verify ->
companions -> write), and leaves either a whole artifact folder ``<out>/<name>-<target>-<precision>/``
(the model file and ``manifest.json``) or nothing.

Example:
    >>> import edgevit
    >>> artifact = edgevit.export("cas_vit_xs", target="coreml", precision="fp16")
    >>> print(artifact.report())
    >>> outcomes = edgevit.export.export_all("test_vit", targets="onnx,tflite", precisions=["fp32", "fp16"])

Importing this package imports no converter (and no torch); each target imports its
converter when it runs.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

from edgevit.export.options import ExportOptions, split_names
from edgevit.export.prepare import Piece
from edgevit.export.report import Artifact, ExportOutcome, summary_table
from edgevit.export.targets import TARGETS, Target
from edgevit.precision import PRECISIONS, Precision

__all__ = ["export", "export_all", "Artifact", "ExportOptions", "ExportOutcome", "Piece", "Precision", "PRECISIONS",
           "TARGETS", "Target", "summary_table"]


def export(model: Any, target: str | None = None, *, options: ExportOptions | None = None,
           progress: bool | None = None, **kwargs: Any) -> Artifact:
    """Export ``model`` to one target and return the written, verified :class:`Artifact`.

    Args:
        model: a zoo model name (``"cas_vit_xs"``), an ``nn.Module`` with ``reparameterize()``, or a
            :class:`Piece` (a module with its own real inputs, which may be an intermediate tensor).
        target: a name in :data:`TARGETS` (overrides ``options.target``).
        options: an :class:`ExportOptions`; keyword arguments override its fields
            (``precision="fp16"``, ``weights="l1.pth"``, ``batch="dynamic"``, ``out="artifacts"``...).
        progress: print step progress on stderr (default: only when stderr is a terminal and not ``quiet``).

    Raises:
        UnknownNameError: unknown model, target or precision (lists the valid ones).
        InvalidArgumentError: an option the target cannot honour, or an unwritable ``out``.
        CheckpointMismatchError: ``weights`` belong to another model.
        ConversionError: the converter failed (names the op and the model module).
        VerificationError: the artifact's outputs differ from PyTorch beyond tolerance.

    Example:
        >>> artifact = export("test_vit", target="tflite", precision="fp16", out="artifacts")
        >>> artifact.manifest.verification["status"]
        'passed'
    """
    from edgevit.export.auto import wants_auto

    precisions = kwargs.pop("precision") if wants_auto(kwargs.get("precision")) else None
    options = _options(options, target, kwargs)
    if "," in options.target:
        raise _many_targets_error(options.target)
    outcome = export_all(model, precisions=precisions, options=options, progress=progress, raise_errors=True)[0]
    assert outcome.artifact is not None
    return outcome.artifact


def export_all(model: Any, targets: str | list[str] | None = None, precisions: str | list[str] | None = None, *,
               options: ExportOptions | None = None, progress: bool | None = None, raise_errors: bool = False,
               supported_only: bool = False, **kwargs: Any) -> list[ExportOutcome]:
    """Export ``model`` to several targets and precisions, preparing the model once.

    Every target and precision is checked before any work. A failing cell does not stop the
    others (unless ``raise_errors``); its :class:`ExportOutcome` holds the error.

    Args:
        supported_only: leave out the precisions a target does not offer instead of refusing
            (for matrices over every target and precision).
    """
    from edgevit._files import check_writable
    from edgevit.export import auto as _auto
    from edgevit.export.options import check_options_apply
    from edgevit.export.pipeline import check_replaceable, new_job
    from edgevit.export.targets import TARGETS as _targets

    if precisions is None and _auto.wants_auto(kwargs.get("precision")):
        precisions = kwargs.pop("precision")
    options = _options(options, None, kwargs)
    target_names = [_targets.canonical(t) for t in split_names(targets if targets is not None else options.target)]
    by_auto = _auto.wants_auto(precisions)
    if by_auto:  # each target's candidates, exported into a staging folder, the winner moved out at the end
        _auto.check_options(options)
        plan = [(t, p) for t in target_names for p in _auto.candidates(_targets.get(t)())]
        precision_names = sorted({p for _, p in plan})
    else:
        precision_names = [PRECISIONS.canonical(p)
                           for p in split_names(precisions if precisions is not None else options.precision)]
        plan = [(t, p) for t in target_names for p in precision_names
                if not supported_only or p in _targets.get(t)().all_precisions]
    check_options_apply(options, target_names, precision_names)
    cells = [options.replace(target=t, precision=p) for t, p in plan]
    jobs = [new_job(model, cell) for cell in cells]  # unknown target / unsupported precision: fail now
    check_writable(options.out)
    for job in jobs:
        check_replaceable(options.out / job.artifact_name)
    staging = None
    if by_auto:
        import tempfile

        staging = Path(tempfile.mkdtemp(prefix=".edgevit-auto-", dir=options.out))
        for job in jobs:
            job.options = job.options.replace(out=staging)
    try:
        outcomes = _run_jobs(jobs, options, progress, raise_errors and not by_auto)  # auto: a failing int8 falls back
        return _auto.settle(outcomes, options, progress, raise_errors) if by_auto else outcomes
    finally:
        if staging is not None:
            _auto.remove_staging(staging)


def _run_jobs(jobs: list[Any], options: ExportOptions, progress: bool | None, raise_errors: bool) -> list[ExportOutcome]:
    import time

    from edgevit._progress import Progress
    from edgevit.export.pipeline import run_pipeline

    printer = Progress(enabled=False if options.quiet else progress)
    outcomes, prepared = [], None
    for job in jobs:
        job.prepared = prepared
        start = time.perf_counter()
        try:
            run_pipeline(job, printer)
        except Exception as exc:
            if raise_errors or job.prepared is None or not isinstance(exc, _CELL_ERRORS):
                raise
            outcomes.append(ExportOutcome(job.prepared.name, job.options.target, job.options.precision,
                                          error=exc, seconds=time.perf_counter() - start))
            prepared = job.prepared
            continue
        prepared = job.prepared
        seconds = time.perf_counter() - start
        artifact = Artifact(job.path, job.manifest, round(seconds, 2))
        outcomes.append(ExportOutcome(prepared.name, job.options.target, job.options.precision, artifact,
                                      seconds=seconds))
    return outcomes


def _options(options: ExportOptions | None, target: str | None, kwargs: dict[str, Any]) -> ExportOptions:
    options = options or ExportOptions()
    if target is not None:
        kwargs["target"] = target
    if "out" in kwargs:
        kwargs["out"] = Path(kwargs["out"])
    return options.replace(**kwargs) if kwargs else options


def _many_targets_error(value: str) -> Exception:
    from edgevit.errors import InvalidArgumentError

    return InvalidArgumentError(f"export() takes one target, got {value!r}; use export_all(model, targets={value!r})")


def _cell_errors() -> tuple[type[BaseException], ...]:
    from edgevit.errors import ArtifactError, ConversionError, MissingDependencyError, VerificationError

    return (ConversionError, VerificationError, ArtifactError, MissingDependencyError)


_CELL_ERRORS = _cell_errors()


class _CallableModule(types.ModuleType):
    """Lets ``edgevit.export(...)`` call :func:`export` once this package has been imported.

    ``edgevit.export`` is both this package and the documented function; after
    ``import edgevit.export`` the attribute is the package, so the package forwards calls.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Artifact:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
