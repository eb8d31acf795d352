"""The export matrix: every zoo model to every target at every precision (not a test).

For every zoo model (not the ``test_*`` variants) at its default size, batch 1, this calls
``edgevit.export.export_all`` with every registered target at fp32 and fp16 (``--precisions``
for others), verification on (the default), and records per cell: success, export seconds, the
artifact's size, the worst max relative error, the lowest cosine similarity, top-1
agreement with PyTorch, what verified it, and the op warnings.

Seconds are what one standalone export of that cell would cost on a warm process: the
model's shared ``prepare`` step plus the cell's convert, inspect, verify and write. Converter
imports are paid once by a warm-up export of ``test_vit`` to each target and reported on
their own. The machine is shared (2 cores, several engineers), so compare within one run.

Usage::

    python benchmarks/export_matrix.py                  # every zoo model (an hour or more)
    python benchmarks/export_matrix.py cas_vit_* --resume
    python benchmarks/export_matrix.py cas_vit_xs vit_tiny_* --targets executorch --precisions int8

Writes ``benchmarks/results/export_matrix.md`` and ``export_matrix.json``; each model's rows
are written as soon as they are measured, so an interrupted run keeps what it has
(``--resume`` skips models whose requested cells are all in the JSON). A run replaces only the cells it
measures (model, target, precision), so a column can be added to an earlier run. Artifacts go to a temporary folder and are
deleted after each model unless ``--keep DIR`` is given.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEED_GOAL_S = 60.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from edgevit.export import TARGETS
    from edgevit.models import list_models

    json_path = RESULTS / "export_matrix.json"
    if args.report_only:
        write_results(load_previous(json_path), json_path)
        return 0
    torch.set_num_threads(args.threads)
    names = [n for n in list_models(include_test=False) if any(fnmatch.fnmatchcase(n, p) for p in args.models)]
    if not names:
        print(f"no zoo model matches {args.models}", file=sys.stderr)
        return 2
    data = load_previous(json_path) if args.resume else {}
    data.setdefault("rows", [])
    data["environment"] = environment(args.threads)
    precisions = args.precisions.split(",")
    targets = args.targets.split(",") if args.targets else TARGETS.names()
    unknown = sorted(set(targets) - set(TARGETS.names()))
    if unknown:
        print(f"unknown target(s) {unknown}; registered: {TARGETS.names()}", file=sys.stderr)
        return 2
    data["precisions"] = sorted(set(data.get("precisions", [])) | set(precisions)) if args.resume else precisions
    if "warmup" not in data or not args.resume:
        data["warmup"] = warm_up(targets)
    cells = {(r["model"], r["target"], r["precision"]) for r in data["rows"]}
    for name in names:
        wanted = {(name, t, p) for t in targets for p in precisions if p in TARGETS.get(t)().all_precisions}
        if wanted <= cells:
            continue
        print(f"== {name}", flush=True)
        rows = export_model(name, targets, precisions, args.keep)
        measured = {(r["model"], r["target"], r["precision"]) for r in rows}
        data["rows"] = [r for r in data["rows"] if (r["model"], r["target"], r["precision"]) not in measured] + rows
        cells |= measured
        data["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_results(data, json_path)
        for row in rows:
            print(f"   {row['target']:7s} {row['precision']:5s} {row['status']:7s} {row['seconds']:6.1f} s  "
                  f"{row.get('verified', '-')}", flush=True)
        gc.collect()
    write_results(data, json_path)
    failed = [r for r in data["rows"] if r["status"] != "ok"]
    return 1 if failed else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["*"], help="glob patterns over zoo names (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for conversion (default 1)")
    parser.add_argument("--resume", action="store_true", help="skip models already in export_matrix.json")
    parser.add_argument("--keep", type=Path, help="keep the artifacts in this folder (default: delete them)")
    parser.add_argument("--precisions", default="fp32,fp16", help="comma-separated precisions (default fp32,fp16)")
    parser.add_argument("--targets", help="comma-separated targets (default: every registered target)")
    parser.add_argument("--report-only", action="store_true", help="rewrite export_matrix.md from the JSON and stop")
    return parser.parse_args(argv)


def warm_up(targets: list[str]) -> dict[str, float]:
    """Import every converter once (an export of test_vit per target); returns seconds per target."""
    from edgevit.export import export_all

    seconds = {}
    with tempfile.TemporaryDirectory() as out:
        for target in targets:
            start = time.perf_counter()
            export_all("test_vit", targets=target, precisions="fp32", out=out, quiet=True)
            seconds[target] = round(time.perf_counter() - start, 1)
    return seconds


def export_model(name: str, targets: list[str], precisions: list[str], keep: Path | None) -> list[dict]:
    """Every target at every precision it offers, for one model; one row per cell."""
    from edgevit.export import export_all

    out = Path(tempfile.mkdtemp(prefix=f"export-matrix-{name}-")) if keep is None else keep
    out.mkdir(parents=True, exist_ok=True)
    try:
        outcomes = export_all(name, targets=targets, precisions=precisions, out=out, quiet=True,
                              supported_only=True)
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)
    first = next((o.artifact.manifest.extra for o in outcomes if o.ok), {})
    prepare = (first.get("timings", {}).get("prepare", 0.0), first.get("cpu_seconds", {}).get("prepare", 0.0))
    return [row_of(o, *prepare) for o in outcomes]


def row_of(outcome, prepare_s: float, prepare_cpu_s: float) -> dict:
    row = {"model": outcome.model, "target": outcome.target, "precision": outcome.precision}
    if not outcome.ok:
        row.update(status="FAILED", seconds=round(outcome.seconds, 1),
                   error=f"{type(outcome.error).__name__}: {outcome.error}")
        return row
    manifest = outcome.artifact.manifest
    timings = dict(manifest.extra.get("timings", {}))
    timings["prepare"] = prepare_s
    cpu = dict(manifest.extra.get("cpu_seconds", {}))
    cpu["prepare"] = prepare_cpu_s
    verification = manifest.verification
    metrics = list((verification.get("outputs") or {}).values())
    worst = max(metrics, key=lambda m: m["max_rel_err"]) if metrics else None
    row.update(
        status="ok",
        seconds=round(sum(timings.values()), 1),
        cpu_seconds=round(sum(cpu.values()), 1),
        timings=timings,
        cpu_timings=cpu,
        size_bytes=outcome.artifact.size_bytes,
        verified=verified_by(verification),
        max_abs_err=worst["max_abs_err"] if worst else None,
        max_rel_err=worst["max_rel_err"] if worst else None,
        min_cosine=worst["min_cosine"] if worst else None,
        top1_agreement=worst["top1_agreement"] if worst else None,
        verification_note=verification.get("note"),
        op_total=manifest.ops.get("total"),
        op_details=manifest.ops.get("details", {}),
        warnings=manifest.ops.get("warnings", []),
    )
    return row


def verified_by(verification: dict) -> str:
    if verification.get("numbers_checked"):
        return f"{verification['status']} ({verification['backend']})"
    return f"{verification.get('status')} (numbers not checked)"


def environment(threads: int) -> dict:
    from edgevit.export import TARGETS
    from edgevit.runtime import BACKENDS

    packages = {}  # every target's converter packages and the versions of the backends that verify it
    for name in TARGETS.names():
        target = TARGETS.get(name)()
        packages.update(target.converter_versions())
        for backend in target.verification_backends():
            packages[f"backend {backend}"] = BACKENDS.get(backend).version()
    return {"machine": platform.machine(), "system": platform.system(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "torch_threads": threads, "packages": packages,
            "note": "shared machine: 2 cores used by several engineers at once; seconds include that load"}


def load_previous(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def write_results(data: dict, json_path: Path) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for path, text in ((json_path, json.dumps(data, indent=1) + "\n"),
                       (json_path.with_suffix(".md"), markdown(data))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def markdown(data: dict) -> str:
    rows = sorted(data["rows"], key=lambda r: (r["model"], r["target"], r["precision"]))
    env = data["environment"]
    ok = sum(r["status"] == "ok" for r in rows)
    done = [r for r in rows if r["status"] == "ok"]
    slow = [r for r in done if r["seconds"] > SPEED_GOAL_S]
    slow_cpu = [r for r in done if r.get("cpu_seconds", 0) > SPEED_GOAL_S]
    models = {r["model"] for r in rows}
    per_cell: dict[tuple[str, str], int] = {}
    for r in rows:
        per_cell[r["target"], r["precision"]] = per_cell.get((r["target"], r["precision"]), 0) + 1
    columns = "; ".join(f"{t} {p} {'every model' if n == len(models) else f'{n} models'}"
                        for (t, p), n in sorted(per_cell.items()))
    lines = [
        "# Export matrix",
        "",
        f"{len(models)} zoo models (`benchmarks/export_matrix.py`), each cell exported and verified: {columns}. "
        f"{ok}/{len(rows)} cells succeeded; {sum('numbers not checked' not in r['verified'] for r in done)} were "
        f"numerically verified. {len(slow)} took longer than the {SPEED_GOAL_S:.0f} s goal in wall-clock time on "
        f"this loaded machine, {len(slow_cpu)} in CPU time.",
        "",
        f"Machine: {env['system']} {env['machine']}, {env['cpus']} CPUs shared with other engineers, torch threads "
        f"{env['torch_threads']}, Python {env['python']}. Finished {data.get('finished', '?')}.",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()) + ".",
        "",
        "Seconds: the model's prepare step (build, reference outputs, reparameterize) plus this cell's convert, "
        "inspect, verify and write, in a warm process (wall clock); cpu s: CPU time of the process over the "
        "same steps (all threads), which the machine's load does not inflate. Converter import/warm-up (paid "
        "once per process): "
        + ", ".join(f"{t} {s} s" for t, s in data.get("warmup", {}).items()) + ".",
        "Errors are against the PyTorch fp32 model on 4 random tensors and 4 photographs; max rel err = max |diff| "
        "/ max |reference|. 'numbers not checked' marks a structural check only. int8 cells are judged by cosine "
        "(>= 0.95) and top-1 agreement (>= 75%) on held-out calibration images (digits), and the models have "
        "random-init weights, whose outputs barely depend on the image: a top-1 miss there is weak evidence "
        "(`benchmarks/int8.py` measures int8 accuracy on digits-trained weights).",
        "",
        "| model | target | precision | status | seconds | cpu s | size | verified | max rel err | min cosine | "
        "top-1 | op warnings |",
        "|---|---|---|---|--:|--:|--:|---|--:|--:|--:|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['target']} | {r['precision']} | **FAILED** | {r['seconds']} | - | - | - | "
                         f"- | - | - | {escape(r['error'][:300])} |")
            continue
        lines.append(
            f"| {r['model']} | {r['target']} | {r['precision']} | ok | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
            f"{r['size_bytes'] / 2**20:.1f} MB | {r['verified']} | {fmt(r['max_rel_err'], '.2g')} | "
            f"{fmt(r['min_cosine'], '.6f')} | {fmt(r['top1_agreement'], '.0%')} | "
            f"{escape('; '.join(r['warnings'])) or '-'} |"
        )
    lines += ["", *outliers(done)]
    return "\n".join(lines) + "\n"


def outliers(rows: list[dict], n: int = 8) -> list[str]:
    """The costliest cells by CPU time and the step that dominates each."""
    lines = [f"## The {n} costliest cells (CPU seconds) and their dominant step", "",
             "| model | target | precision | cpu s | dominant step | its cpu s |", "|---|---|---|--:|---|--:|"]
    for r in sorted(rows, key=lambda r: -r.get("cpu_seconds", 0))[:n]:
        step, cost = max(r.get("cpu_timings", {}).items(), key=lambda kv: kv[1], default=("-", 0.0))
        lines.append(f"| {r['model']} | {r['target']} | {r['precision']} | {r['cpu_seconds']:.1f} | {step} | {cost:.1f} |")
    return lines


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    sys.exit(main())
