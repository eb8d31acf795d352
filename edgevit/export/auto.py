"""``precision="auto"``: export the candidates, time them here, keep the fastest verified one.

int8 is not always faster: on an x86 CPU without VNNI onnxruntime's int8 kernels barely beat
fp32 on most of the zoo (``benchmarks/results/int8.md``), while on ARM and VNNI CPUs they do.
``auto`` settles it by measurement on the machine that exports (run the export where the model
will run, or pick the precision by hand):

1. every candidate precision of the target (:func:`candidates`: fp32, and int8 where the target
   quantizes it) is exported and verified into a staging folder beside ``out``;
2. a candidate counts only when it passed verification, and, when a labelled set was given
   (``data``), lost at most ``max_drop`` top-1 points against PyTorch (default
   :data:`DEFAULT_MAX_DROP`);
3. the counting candidates are timed in one interleaved run with :func:`edgevit.bench.benchmark`
   (same input, every candidate once per round, the order rotated);
4. a quantized candidate wins only if it is at least :data:`MIN_GAIN` faster than float (median
   of the per-round ratios): below that, float's accuracy costs nothing;
5. the winner is renamed to ``<out>/<name>-<target>-<precision>``; its manifest records every
   candidate's verification and timing and why it won (``extra["precision_auto"]``); the other
   candidates are deleted.

Core ML is refused off macOS: its artifacts run here only in the reference executor, whose speed
says nothing about a device.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

from edgevit.errors import InvalidArgumentError

AUTO = "auto"
#: the precisions ``auto`` weighs, in order of preference on a tie
CANDIDATES = ("fp32", "int8")
#: a quantized candidate must be at least this much faster than float (paired median) to win
MIN_GAIN = 0.05
#: top-1 points a quantized candidate may lose on the labelled set (``data``) when ``max_drop`` is not set
DEFAULT_MAX_DROP = 1.0
#: timing: warm-up and timed rounds per candidate
WARMUP, RUNS = 5, 30


def wants_auto(precisions: Any) -> bool:
    """True when the requested precisions are ``"auto"`` (which must then be the only one)."""
    from edgevit.export.options import split_names

    names = split_names(precisions) if precisions is not None else []
    if AUTO not in names:
        return False
    if len(names) > 1:
        raise InvalidArgumentError(f"precision 'auto' picks one precision per target by itself; it cannot be combined "
                                   f"with others (got {','.join(names)}). Pass 'auto' alone, or list precisions")
    return True


def candidates(target: Any) -> tuple[str, ...]:
    """The precisions ``auto`` exports for ``target`` (a Target instance)."""
    if target.name == "coreml" and sys.platform != "darwin":
        raise InvalidArgumentError(
            "precision 'auto' times every candidate on this machine, and off macOS a Core ML artifact runs only in "
            "the coreml-reference executor, whose speed says nothing about a device. Choose a precision for "
            "coreml (fp16, its usual choice, int8 or w8/w6/w4), or run the export on a Mac")
    return tuple(p for p in CANDIDATES if p in target.all_precisions)


def check_options(options: Any) -> None:
    if not options.verify:
        raise InvalidArgumentError("precision 'auto' keeps the fastest *verified* artifact; it cannot run with "
                                   "verify off (--no-verify). Drop --no-verify, or choose a precision")


def choose(outcomes: list[Any], options: Any, progress: bool | None = None) -> dict[str, Any]:
    """Judge one target's candidate outcomes (staged artifacts); returns the record for the manifest.

    The record: ``{"chosen": precision or None, "reason", "candidates": {precision: {...}}, "timing"}``.
    """
    from edgevit.bench import benchmark

    budget = options.max_drop if options.max_drop is not None else DEFAULT_MAX_DROP
    record: dict[str, Any] = {"candidates": {}, "min_gain": MIN_GAIN, "max_drop": budget}
    counting = {}
    for outcome in outcomes:
        entry: dict[str, Any] = {}
        if outcome.artifact is None:
            entry["error"] = f"{type(outcome.error).__name__}: {outcome.error}"
        else:
            verification = outcome.artifact.verification
            entry["verification"] = verification.get("status", "skipped")
            accuracy = verification.get("accuracy")
            if accuracy:
                entry["top1_drop"] = accuracy["top1_drop"]
            if entry["verification"] != "passed":
                entry["excluded"] = f"verification {entry['verification']}"
            elif accuracy and outcome.precision not in ("fp32", "fp16") and accuracy["top1_drop"] > budget:
                entry["excluded"] = (f"top-1 drop {accuracy['top1_drop']:.2f} points on {accuracy['data']} is over "
                                     f"the budget of {budget:g}")
            else:
                counting[outcome.precision] = outcome.artifact
        record["candidates"][outcome.precision] = entry
    if not counting:
        record.update(chosen=None, reason="no candidate passed verification within the accuracy budget")
        return record
    if len(counting) == 1:
        (only,) = counting
        record.update(chosen=only, reason="the only candidate that passed verification within the accuracy budget")
        return record
    report = benchmark([a.path for a in counting.values()], warmup=WARMUP, runs=RUNS, memory=False, progress=progress)
    results = dict(zip(counting, report.results))
    samples = {p: r.samples_ms for p, r in results.items()}
    for precision, result in results.items():
        record["candidates"][precision]["p50_ms"] = round(result.latency.p50_ms, 3)
    float_name = next(p for p in CANDIDATES if p in counting)
    chosen, reason = float_name, None
    for precision in counting:
        if precision == float_name:
            continue
        ratio = _paired_ratio(samples, precision, float_name)
        record["candidates"][precision]["ratio_to_float"] = round(ratio, 3)
        if ratio <= 1 - MIN_GAIN and (chosen == float_name or ratio < record["candidates"][chosen]["ratio_to_float"]):
            chosen = precision
        if reason is None:
            reason = (f"{precision} {ratio:.2f}x of {float_name}'s time here: "
                      + ("faster by more than" if ratio <= 1 - MIN_GAIN else "not faster by")
                      + f" {MIN_GAIN:.0%}")
    record.update(chosen=chosen, reason=reason,
                  timing={"runs": RUNS, "warmup": WARMUP, "interleaved": True, "threads": "backend default",
                          "cpu": report.environment.cpu_model, "environment": report.environment.summary()})
    return record


def _paired_ratio(samples: dict[str, Any], precision: str, float_name: str) -> float:
    import numpy as np

    return float(np.median(np.asarray(samples[precision]) / np.asarray(samples[float_name])))


def settle(outcomes: list[Any], options: Any, progress: bool | None, raise_errors: bool) -> list[Any]:
    """One outcome per target: the chosen candidate moved into ``options.out``, or the error of none counting."""
    from edgevit.errors import VerificationError
    from edgevit.export.report import ExportOutcome

    settled = []
    for target in dict.fromkeys(o.target for o in outcomes):
        group = [o for o in outcomes if o.target == target]
        record = choose(group, options, progress)
        seconds = sum(o.seconds for o in group)
        if record["chosen"] is None:
            details = "; ".join(f"{p}: {e.get('excluded') or e.get('error') or e.get('verification')}"
                                for p, e in record["candidates"].items())
            error = VerificationError(f"precision 'auto' for {target}: {record['reason']} ({details})")
            if raise_errors:
                raise error
            settled.append(ExportOutcome(group[0].model, target, AUTO, error=error, seconds=seconds))
            continue
        winner = next(o for o in group if o.precision == record["chosen"])
        artifact = install_choice(winner, record, options.out)
        settled.append(ExportOutcome(winner.model, target, winner.precision, artifact, seconds=seconds))
    return settled


def install_choice(outcome: Any, record: dict[str, Any], out: Path) -> Any:
    """Write ``record`` into the winner's manifest and rename it from staging into ``out``; returns the Artifact."""
    from edgevit.export.pipeline import install
    from edgevit.export.report import Artifact

    artifact = outcome.artifact
    manifest = dataclasses.replace(artifact.manifest, extra={**artifact.manifest.extra, "precision_auto": record})
    manifest.write(artifact.path)
    final = out / artifact.path.name
    install(artifact.path, final)
    return Artifact(final, manifest, artifact.seconds)


def remove_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
