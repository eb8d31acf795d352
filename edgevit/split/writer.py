"""Writing a plan folder: every piece exported and verified, then ``plan.json``; all or nothing.

Every piece goes through the one export pipeline (``edgevit.export`` given an
:class:`edgevit.export.Piece`): pieces whose input is the image (sub-models, the first
pipeline stage) are verified against PyTorch on random tensors, photos and validation images;
pieces whose input is an intermediate tensor (the fusion head, later pipeline stages) on what
the pieces before them make of the validation images. A quantized precision (int8, w8...) is
calibrated on the training images, or on what the pieces before make of them, and verified
like any quantized export.

Everything is written to a hidden staging folder beside ``out`` and renamed into place at
the end, so a failed split leaves no half-written plan.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevit._files import signals_deferred, staging_dir, write_json
from edgevit._progress import Progress
from edgevit.artifact import read_manifest
from edgevit.partition.plan import PLAN_NAME, Plan, PlanPiece
from edgevit.split.request import BuiltPiece, BuiltPlan

__all__ = ["export_piece", "write_plan"]


def write_plan(built: BuiltPlan, out: str | Path, check: tuple[np.ndarray, np.ndarray] | None = None,
               log: Callable[[str], None] | None = None, timing: str = "runtime", threads: int | None = 1,
               rounds: int = 15) -> Plan:
    """Export every piece of ``built`` into ``out`` and write ``plan.json``.

    Args:
        check: validation ``(images, labels)``; when given the exported plan is run in this
            process through ``edgevit.runtime`` and compared with the PyTorch split, and its
            accuracy recorded.
        timing: ``"runtime"``: also export the unsplit model (``unsplit-*``), time it and every
            piece with the runtime in a fresh process, and re-time the plan with those figures
            (see :func:`retime`); ``"pytorch"``: keep the strategy's PyTorch timings.
        log: ``log(message)`` for progress lines (default: a :class:`~edgevit._progress.Progress` on stderr).
    """
    from edgevit.export.pipeline import install

    log = log or Progress(desc="split").log

    out = Path(out)  # its folder was checked by split() before the work
    staging = None
    try:
        with signals_deferred():  # recorded before a SIGTERM can unwind: the finally removes it
            staging = staging_dir(out.parent, out.name)
        plan = built.plan
        pieces = []
        for item in built.pieces:
            log(f"exporting {item.piece.name} to {plan.target} ({plan.precision})")
            pieces.append(export_piece(item, plan, staging))
        fusion = None
        if built.fusion is not None:
            log(f"exporting fusion head to {plan.target} ({plan.precision})")
            fusion = export_piece(built.fusion, plan, staging)
        plan = dataclasses.replace(plan, pieces=tuple(pieces), fusion=fusion)
        plan = _memory_checked(plan, log)
        plan = retime(built, plan, staging, timing, threads, rounds, log)
        _write_json(staging / PLAN_NAME, plan.to_dict())
        if check is not None:
            log("running the exported plan on the validation images")
            plan = dataclasses.replace(plan, accuracy={**plan.accuracy, **_check_exported(staging, plan, built, check)})
            _write_json(staging / PLAN_NAME, plan.to_dict())
        install(staging, out)
        staging = None
        return plan
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _memory_checked(plan: Plan, log: Callable[[str], None]) -> Plan:
    """The plan with a note (and a progress line) for every device its exported pieces overflow.

    Pieces are placed by the memory model before they are exported; a quantized recipe that keeps
    layers float (measured during the export) makes a file larger than predicted. The plan is
    still written (the training is not lost); ``edgevit deploy`` refuses it until the device
    file gives that device the memory, or the split is redone with more devices or a smaller
    precision."""
    notes = []
    for overflow in plan.memory_overflows():
        notes.append(f"memory: {overflow.message()}; deploying this plan is refused until the device file gives "
                     f"{overflow.device!r} at least {overflow.needed_bytes / 1e6:.3g} MB, or the split is redone "
                     "with more devices or a smaller precision")
        log(f"warning: {notes[-1]}")
    return dataclasses.replace(plan, notes=(*plan.notes, *notes)) if notes else plan


def retime(built: BuiltPlan, plan: Plan, folder: Path, timing: str, threads: int | None, rounds: int, log) -> Plan:
    """Time the exported pieces and the exported unsplit model with the runtime, in a fresh
    process, and let the strategy recompute placement and latency from those times."""
    from edgevit.export.targets import get_target
    from edgevit.export.verify import backend_usable
    from edgevit.split._timing import measure_in_subprocess

    if timing != "runtime" or built.unsplit is None or built.strategy is None:
        return plan
    usable = [b for b in get_target(plan.target).verification_backends() if backend_usable(b)[0]]
    if not usable or usable[0] == "coreml-reference":
        note = (f"compute times are PyTorch eager: no runtime that runs {plan.target} at device speed is available "
                "here" + (" (coreml-reference is a numpy reference executor)" if usable else ""))
        return dataclasses.replace(plan, notes=(*plan.notes, note))
    backend = usable[0]
    log(f"exporting the unsplit model to {plan.target} ({plan.precision}) to time it beside the pieces")
    first = built.pieces[0]  # its input is the image: sub0, or the first stage
    unsplit = BuiltPiece(PlanPiece("unsplit", "stage", "unsplit", None, "input", "logits"), built.unsplit,
                         first.example, True, first.check_inputs, first.calibration)
    unsplit_dir = _export(unsplit, plan, folder)
    log(f"timing the exported pieces with {backend} in a fresh process")
    pieces = [*plan.pieces, *((plan.fusion,) if plan.fusion else ())]
    folders = [str(folder / p.artifact) for p in pieces] + [str(unsplit_dir)]
    times = measure_in_subprocess(folders, backend, threads, rounds)
    plan = dataclasses.replace(plan, model={**plan.model, "artifact": unsplit_dir.name})
    return apply_times(built.strategy, plan, folder, times, backend, threads, rounds)


def apply_times(strategy, plan: Plan, folder: Path, times: dict, backend: str, threads: int | None,
                rounds: int) -> Plan:
    """Let ``strategy`` re-time ``plan`` with runtime timings of its artifacts (minimum of the
    runs; the median is kept as ``median_ms``)."""
    pieces = [*plan.pieces, *((plan.fusion,) if plan.fusion else ())]
    names = {str(folder / p.artifact): p.name for p in pieces}
    names[str(folder / plan.model["artifact"])] = "unsplit"
    fastest = {names[f]: ms for f, ms in times["min_ms"].items()}
    median = {names[f]: ms for f, ms in times["median_ms"].items()}
    how = (f"edgevit.runtime ({backend}), {threads or 'default'} thread(s), batch 1, minimum of {rounds} interleaved "
           "runs in a fresh process (medians in median_ms)")
    plan = strategy.retime(plan, fastest, how)

    def with_median(piece: PlanPiece) -> PlanPiece:
        return dataclasses.replace(piece, cost={**piece.cost, "median_ms": median[piece.name]})

    return dataclasses.replace(plan, pieces=tuple(with_median(p) for p in plan.pieces),
                               fusion=with_median(plan.fusion) if plan.fusion else None,
                               model={**plan.model, "median_ms": median["unsplit"]})


def export_piece(item: BuiltPiece, plan: Plan, folder: Path) -> PlanPiece:
    """Export one piece into ``folder``; returns its plan entry with artifact name, tensor names and sizes."""
    artifact = _export(item, plan, folder)
    manifest = read_manifest(artifact)
    cost = {**item.piece.cost, "file_bytes": int(sum(manifest.files.values()))}
    info = {**item.piece.info, "verification": manifest.verification.get("status", "skipped")}
    if manifest.extra.get("quantization"):
        agreement = manifest.extra["quantization"].get("agreement_on_calibration")
        info["quantization"] = {"recipe": manifest.extra["quantization"].get("recipe", {}).get("chosen_by"),
                                "agreement_on_calibration": agreement}
    return dataclasses.replace(item.piece, artifact=artifact.name, input_name=manifest.inputs[0].name,
                               output_name=manifest.outputs[0].name, cost=cost, info=info)


def _export(item: BuiltPiece, plan: Plan, folder: Path) -> Path:
    """One piece through the export pipeline (``edgevit.export`` with an :class:`~edgevit.export.Piece`):
    verified on its own real inputs, a quantized precision calibrated on its own training inputs."""
    from edgevit.data.preprocess import PreprocessSpec
    from edgevit.export import Piece, export

    labels = _labels(item, plan)
    piece = Piece(item.module, item.check_inputs, calibration=item.calibration, name=item.piece.name,
                  image_input=item.image_input,
                  preprocessing=PreprocessSpec.from_dict(plan.preprocessing) if item.image_input else None,
                  classifies=labels is not None, labels=labels, family=f"edgevit-split:{item.piece.role}",
                  note=f"trained by edgevit split ({plan.strategy})")
    return export(piece, target=plan.target, precision=plan.precision, out=folder, quiet=True).path


def _labels(item: BuiltPiece, plan: Plan) -> list[str] | None:
    last_stage = item.piece.role == "stage" and item.piece.span is not None and item.piece.span[1] is None
    if item.piece.role == "fusion" or item.piece.name == "unsplit" or last_stage:
        return list(plan.labels)
    return None


def _check_exported(folder: Path, plan: Plan, built: BuiltPlan, check: tuple[np.ndarray, np.ndarray]) -> dict:
    """Run the exported plan in this process and compare it with the PyTorch split."""
    from edgevit.cluster.local import run_in_process
    from edgevit.export.targets import get_target
    from edgevit.export.verify import backend_usable

    images, labels = check
    reasons = []
    for backend in get_target(plan.target).verification_backends():
        usable, why = backend_usable(backend)
        if not usable:
            reasons.append(why)
            continue
        result = run_in_process(folder, images, backend=backend)
        with torch.no_grad():
            reference = np.concatenate([built.reference(torch.from_numpy(images[i : i + 64])).numpy()
                                        for i in range(0, len(images), 64)])
        return {"exported": {
            "top1": float((result.predictions == labels).mean() * 100),
            "agreement_with_pytorch": float((result.predictions == reference.argmax(1)).mean()),
            "max_abs_logit_diff": float(np.abs(result.logits - reference).max()), "images": int(len(labels)),
            "run_with": f"edgevit.runtime ({backend}), all pieces in this process"}}
    return {"exported": {"status": "not run", "note": "; ".join(reasons or ["no runtime backend runs this target here"])}}


def _write_json(path: Path, data: dict) -> None:
    write_json(path, data, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to plan.json")
