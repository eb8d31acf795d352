"""The coreml-reference executor on every zoo model: speed, and accuracy against PyTorch (not a test).

For each zoo model (not ``test_*``) at its default size and each precision (fp32, fp16), this
exports a Core ML ML Program with ``edgevit.export.export`` (Core ML deployment target as
given, batch 1, its own verification off), loads it with the numpy reference executor and

* runs the export's verification inputs (4 random tensors + 4 preprocessed photos, the same
  :func:`edgevit.export.verify.make_samples`) and compares the logits with the PyTorch
  float32 model before reparameterization, using :func:`edgevit.export.verify.compare`
  and judging them with the export's tolerance table;
* times single-image runs (median of ``--runs``) against PyTorch eager on the same machine
  and threads (the ratio is the number to compare between runs; the machine is shared, so
  both run single-threaded by default);
* profiles one run per op type, so the slowest ops are named.

The goal is a 224-pixel model at batch 1 in under 5 s per run.

Usage::

    python benchmarks/coreml_reference_speed.py                    # every zoo model, fp32 and fp16
    python benchmarks/coreml_reference_speed.py "vit_*" --resume

Writes ``benchmarks/results/coreml_reference_speed.md`` and ``.json``, after every model.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GOAL_S = 5.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from edgevit.models import list_models

    torch.set_num_threads(args.threads)
    names = [n for n in list_models(include_test=False) if any(fnmatch.fnmatchcase(n, p) for p in args.models)]
    if not names:
        print(f"no zoo model matches {args.models}", file=sys.stderr)
        return 2
    json_path = args.out.with_suffix(".json")
    data = json.loads(json_path.read_text()) if args.resume and json_path.exists() else {"rows": []}
    data["environment"] = environment(args)
    done = {(r["model"], r["precision"]) for r in data["rows"]}
    _freeze_import_garbage()
    for name in names:
        for precision in args.precisions:
            if (name, precision) in done:
                continue
            print(f"== {name} {precision}", flush=True)
            row = measure(name, precision, args)
            data["rows"] = [r for r in data["rows"] if (r["model"], r["precision"]) != (name, precision)] + [row]
            data["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
            write_results(data, json_path)
            print("   " + ", ".join(f"{k}={row[k]}" for k in ("status", "run_s", "ratio", "max_abs_err", "top1")
                                    if k in row), flush=True)
            gc.collect()
    write_results(data, json_path)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["*"], help="zoo model names or glob patterns")
    parser.add_argument("--precisions", default="fp32,fp16", type=lambda s: s.split(","))
    parser.add_argument("--deployment-target", default="iOS16")
    parser.add_argument("--runs", type=int, default=3, help="timed single-image runs per cell")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for the executor and torch threads (default 1: on this shared "
                             "2-core machine two BLAS threads contend and run several times slower)")
    parser.add_argument("--resume", action="store_true", help="keep rows already in the JSON")
    parser.add_argument("--out", type=Path, default=RESULTS / "coreml_reference_speed",
                        help="results path without suffix (.md and .json are written)")
    return parser.parse_args(argv)


def _freeze_import_garbage() -> None:
    """coremltools' convert calls gc.collect(); freezing what the imports made keeps that cheap."""
    import coremltools  # noqa: F401 - imported here so its objects are frozen too

    gc.collect()
    gc.freeze()


def measure(name: str, precision: str, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from edgevit.export import export
    from edgevit.export.verify import compare, judge, make_samples, tolerance_for
    from edgevit.models import create_model, model_info
    from edgevit.runtime import load

    info = model_info(name)
    row = {"model": name, "precision": precision, "image_size": info.input_size[-1],
           "deployment_target": args.deployment_target}
    model = create_model(name).eval()
    samples = make_samples(info.preprocess.spec(info.input_size[-1]))
    with torch.no_grad():
        reference = np.concatenate([model(torch.from_numpy(samples.nchw[i:i + 1])).numpy() for i in range(len(samples))])
    work = Path(tempfile.mkdtemp(prefix="coreml_reference_"))
    try:
        start = time.perf_counter()
        artifact = export(model, target="coreml", precision=precision, deployment_target=args.deployment_target,
                          out=work, verify=False, quiet=True)
        row["export_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        session = load(artifact.path, backend="coreml-reference", threads=args.threads)
        row["load_s"] = round(time.perf_counter() - start, 2)
        program = session.backend_model.program
        row["opset"] = program.opset
        row["ops_run"] = len(program.nodes)
        row["op_types"] = sorted(program.op_types() - {"const"})
        outputs = []
        for i in range(len(samples)):
            outputs.append(session.run({"input": samples.nchw[i:i + 1]})["logits"])
        metrics = compare(reference, np.concatenate(outputs), samples.names)
        failures = judge({"logits": metrics}, tolerance_for(precision))
        row.update(status="passed" if not failures else "failed", failures=failures,
                   max_abs_err=_round(metrics["max_abs_err"]), max_rel_err=_round(metrics["max_rel_err"]),
                   min_cosine=round(metrics["min_cosine"], 7), top1=metrics["top1_agreement"])
        x = samples.nchw[:1]
        row["run_s"] = round(_median_seconds(lambda: session.run({"input": x}), args.runs), 3)
        with torch.no_grad():
            tx = torch.from_numpy(x)
            row["torch_s"] = round(_median_seconds(lambda: model(tx), args.runs), 3)
        row["ratio"] = round(row["run_s"] / row["torch_s"], 1) if row["torch_s"] else None
        profile: dict[str, float] = {}
        session.backend_model.run({"input": x}, profile=profile)
        total = sum(profile.values()) or 1.0
        row["slowest_ops"] = [f"{op} {100 * s / total:.0f}%" for op, s in
                              sorted(profile.items(), key=lambda kv: -kv[1])[:3]]
        session.close()
    except Exception as exc:  # noqa: BLE001 - a benchmark records every failure and goes on
        row.update(status="error", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return row


def _median_seconds(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def environment(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)", "threads": args.threads,
            "runs": args.runs}


def write_results(data: dict, json_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data["rows"].sort(key=lambda r: (r["model"], r["precision"] != "fp32"))
    _write_atomic(json_path, json.dumps(data, indent=1) + "\n")
    _write_atomic(json_path.with_suffix(".md"), markdown(data))


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def markdown(data: dict) -> str:
    env = data["environment"]
    lines = [
        "# coreml-reference: the numpy Core ML executor on the zoo",
        "",
        f"Written by `benchmarks/coreml_reference_speed.py`, finished {data.get('finished', '?')}. Machine: "
        f"{env['machine']}, Python {env['python']}, numpy {env['numpy']}, torch {env['torch']}, "
        f"{env['threads']} threads. Random-init weights; batch 1; Core ML ML Programs from `edgevit.export` "
        "(iOS16 unless noted).",
        "",
        "Accuracy: logits of the executor vs the PyTorch float32 model on the export's 8 verification inputs "
        "(4 random, 4 photos), judged with the export's tolerance table (fp32: rel err <= 1e-4, cosine >= "
        "0.99999, all top-1 equal; fp16: rel err <= 2e-2, cosine >= 0.999, top-1 >= 75%). Speed: median of "
        f"{env['runs']} single-image runs after a warm-up; `ratio` = executor / PyTorch eager on the same "
        f"machine in the same run. Goal: under {GOAL_S:g} s per run at 224 px.",
        "",
        "| model | px | prec | opset | status | max abs err | max rel err | min cosine | top-1 | run s | torch s "
        "| ratio | <5 s | load s | slowest ops |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        if r["status"] == "error":
            lines.append(f"| {r['model']} | {r['image_size']} | {r['precision']} | {r.get('opset', '-')} | error "
                         f"| {r['error']} |  |  |  |  |  |  |  |  |  |")
            continue
        goal = "yes" if r["run_s"] <= GOAL_S else "NO"
        lines.append(
            f"| {r['model']} | {r['image_size']} | {r['precision']} | {r['opset']} | {r['status']} | "
            f"{r['max_abs_err']:.3g} | {r['max_rel_err']:.3g} | {r['min_cosine']:.7f} | {r['top1']:.0%} | "
            f"{r['run_s']:.3f} | {r['torch_s']:.3f} | {r['ratio']} | {goal} | {r['load_s']:.2f} | "
            f"{', '.join(r['slowest_ops'])} |"
        )
    ops = sorted({op for r in data["rows"] for op in r.get("op_types", [])})
    lines += ["", f"MIL op types in these programs ({len(ops)}): {', '.join(ops)}.", ""]
    failed = [r for r in data["rows"] if r["status"] != "passed"]
    if failed:
        lines += ["Not passed:", ""] + [f"- {r['model']} {r['precision']}: {r.get('error') or '; '.join(r['failures'])}"
                                        for r in failed] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
