"""Writing a plan folder: every piece exported and verified, then ``plan.json``; all or nothing.

Pieces whose input is the image (sub-models, the first pipeline stage) go through the
public ``edgevit.export`` like any zoo model; its verification runs them against PyTorch on
random tensors and photos. Pieces whose input is an intermediate tensor (the fusion head,
later pipeline stages) use the same target converters (``Target.convert`` /
``Target.inspect``) and are verified here against PyTorch on real intermediate tensors with
the export tolerance table; ``edgevit.export`` only builds image inputs.

Everything is written to a hidden staging folder beside ``out`` and renamed into place at
the end, so a failed split leaves no half-written plan.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevit._files import staging_dir, write_text
from edgevit.artifact import Manifest, TensorSpec, read_manifest
from edgevit.errors import VerificationError
from edgevit.partition.plan import PLAN_NAME, Plan, PlanPiece
from edgevit.split.request import BuiltPiece, BuiltPlan

__all__ = ["export_piece", "write_plan"]


def write_plan(built: BuiltPlan, out: str | Path, check: tuple[np.ndarray, np.ndarray] | None = None,
               log=print, timing: str = "runtime", threads: int | None = 1, rounds: int = 15) -> Plan:
    """Export every piece of ``built`` into ``out`` and write ``plan.json``.

    Args:
        check: validation ``(images, labels)``; when given the exported plan is run in this
            process through ``edgevit.runtime`` and compared with the PyTorch split, and its
            accuracy recorded.
        timing: ``"runtime"``: also export the unsplit model (``unsplit-*``), time it and every
            piece with the runtime in a fresh process, and re-time the plan with those figures
            (see :func:`retime`); ``"pytorch"``: keep the strategy's PyTorch timings.
    """
    from edgevit.export.pipeline import install

    out = Path(out)  # its folder was checked by split() before the work
    staging = staging_dir(out.parent, out.name)
    try:
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
    unsplit = BuiltPiece(PlanPiece("unsplit", "stage", "unsplit", None, "input", "logits"), built.unsplit,
                         built.pieces[0].example, True)
    unsplit_dir = _export_image_piece(unsplit, plan, folder)
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
    if item.image_input:
        artifact = _export_image_piece(item, plan, folder)
    else:
        artifact = _export_tensor_piece(item, plan, folder)
    manifest = read_manifest(artifact)
    cost = {**item.piece.cost, "file_bytes": int(sum(manifest.files.values()))}
    info = {**item.piece.info, "verification": manifest.verification.get("status", "skipped")}
    return dataclasses.replace(item.piece, artifact=artifact.name, input_name=manifest.inputs[0].name,
                               output_name=manifest.outputs[0].name, cost=cost, info=info)


def _export_image_piece(item: BuiltPiece, plan: Plan, folder: Path) -> Path:
    import edgevit.export as export

    artifact = export.export(item.module, target=plan.target, precision=plan.precision, out=folder,
                             name=item.piece.name, image_size=int(item.example.shape[-1]), quiet=True)
    manifest = read_manifest(artifact.path)
    # the sub-models were trained on this preprocessing; the exporter only knows the zoo default
    manifest = dataclasses.replace(manifest, preprocessing=plan.preprocessing, labels=_labels(item, plan))
    manifest.write(artifact.path)
    return artifact.path


def _export_tensor_piece(item: BuiltPiece, plan: Plan, folder: Path) -> Path:
    from edgevit import __version__
    from edgevit.export._capture import captured_output
    from edgevit.export.options import ExportOptions
    from edgevit.export.pipeline import file_sizes, install
    from edgevit.export.targets import INPUT_NAME, OUTPUT_NAME, get_target

    target = get_target(plan.target)
    options = ExportOptions(target=plan.target, precision=plan.precision, out=folder, quiet=True, name=item.piece.name)
    target.check(options)
    module = item.module.eval()
    with torch.no_grad():
        reference = module(torch.from_numpy(item.check_inputs)).float().numpy()
    staging = staging_dir(folder, item.piece.name)
    try:
        start = time.perf_counter()
        with captured_output():  # converters talk a lot; edgevit.export hides it the same way
            target.convert(module, item.example, options, staging / target.model_file)
            ops = target.inspect(staging / target.model_file, options)
        inputs = (TensorSpec(INPUT_NAME, (1, *item.example.shape[1:]), "float32", None),)
        outputs = (TensorSpec(OUTPUT_NAME, (1, *reference.shape[1:]), "float32", None),)
        manifest = Manifest(
            model={"name": item.piece.name, "family": f"edgevit-split:{item.piece.role}", "num_classes": int(reference.shape[-1]),
                   "params": int(sum(p.numel() for p in module.parameters())), "gmacs": None, "image_size": None},
            target=plan.target, precision=plan.precision, model_file=target.model_file, inputs=inputs, outputs=outputs,
            preprocessing={}, weights={"path": None, "sha256": None, "note": f"trained by edgevit split ({plan.strategy})"},
            labels=_labels(item, plan), converter=target.converter_versions(),
            files=file_sizes(staging, target.model_file), ops=ops.to_dict(), options=options.to_dict(),
            created=datetime.now(UTC).isoformat(timespec="seconds"), edgevit_version=__version__,
            extra={"notes": target.notes(options), "timings": {"convert": round(time.perf_counter() - start, 3)}},
        )
        manifest.write(staging)
        verification = _verify_tensor_piece(staging, manifest, target, item.check_inputs, reference, plan.precision)
        manifest = dataclasses.replace(manifest, verification=verification)
        manifest.write(staging)
        if verification["status"] == "failed":
            raise VerificationError(f"{item.piece.name} ({plan.target}, {plan.precision}) does not match PyTorch: "
                                    + "; ".join(verification["failures"]))
        final = folder / f"{item.piece.name}-{plan.target}-{plan.precision}"
        install(staging, final)
        staging = None
        return final
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _verify_tensor_piece(folder: Path, manifest: Manifest, target, inputs: np.ndarray, reference: np.ndarray,
                         precision: str) -> dict[str, Any]:
    """Run the artifact on real intermediate tensors and judge it with the export tolerance table."""
    from edgevit.export.verify import backend_usable, compare, judge, tolerance_for
    from edgevit.runtime import load

    tolerance = tolerance_for(precision)
    reasons = []
    for backend in target.verification_backends():
        usable, why = backend_usable(backend)
        if not usable:
            reasons.append(why)
            continue
        with load(folder, backend=backend) as session:
            name = session.input_specs[0].name
            actual = np.concatenate([next(iter(session.run({name: inputs[i : i + 1]}).values()))
                                     for i in range(len(inputs))])
        names = tuple(f"input_{i}" for i in range(len(inputs)))
        metrics = {manifest.outputs[0].name: compare(reference, actual, names)}
        failures = judge(metrics, tolerance)
        return {"status": "failed" if failures else "passed", "numbers_checked": True, "backend": backend,
                "reference": "PyTorch, the same real intermediate tensors", "samples": {"real": len(inputs)},
                "tolerance": {"precision": precision, **dataclasses.asdict(tolerance)}, "outputs": metrics,
                "failures": failures}
    return {"status": "structural", "numbers_checked": False, "failures": [],
            "note": "numbers were NOT checked: " + "; ".join(reasons or ["no runtime backend runs this target here"])}


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
    write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to plan.json")
