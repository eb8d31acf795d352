"""``model.ort`` against ``model.onnx``: load time, latency and size (issue 19, not a test).

``edgevit export --target onnx --ort-format`` also writes the ORT-format file, optimized once at
export. This measures, per 224-px model, what that file changes in a full onnxruntime build (the
build edgevit's backend uses; a mobile or minimal build loads only ``.ort`` files and cannot be
run here):

* **load**: creating the session (``edgevit.runtime.load``, 2 threads), alternately for the two
  files, ``--loads`` times each: the ``.onnx`` file is optimized at every load, the ``.ort`` file
  was optimized at export;
* **latency**: one process, both sessions, ``--runs`` rounds that each run both files once (the
  order alternated), after ``--warmup`` rounds; the p50 ratio ``.ort / .onnx`` and the median of
  the per-round ratios;
* **size** of each file, and each file's largest error against PyTorch on the same input.

Usage::

    python benchmarks/ort_format.py                       # five models
    python benchmarks/ort_format.py vit_tiny_patch16_224 --runs 40

Writes ``benchmarks/results/ort_format.md`` and ``.json`` (after every model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


sys.path.insert(0, str(HERE))
from latency import _write, log  # noqa: E402 - the latency benchmark's helpers
from onnx_path import EdgevitSession, each_model, reference_input, time_interleaved  # noqa: E402

RESULTS = HERE / "results"
MODELS = ("cas_vit_xs", "efficientformer_l1", "efficientformerv2_s0", "tiny_vit_5m_224", "vit_tiny_patch16_224")
COLUMNS = ("onnx", "ort")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgevit.environment import environment

    env = environment()
    with tempfile.TemporaryDirectory(prefix="edgevit-ort-format.") as work:
        each_model(args.models, lambda name: measure(name, Path(work), args),
                   lambda rows, finished: write_results(rows, env, args, finished=finished))
    log(f"wrote {args.out}.md and .json")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100, help="timed rounds (each runs both files once)")
    parser.add_argument("--loads", type=int, default=8, help="session creations per file, alternated")
    parser.add_argument("--out", type=Path, default=RESULTS / "ort_format")
    return parser.parse_args(argv)


def measure(name: str, work: Path, args: argparse.Namespace) -> dict:
    from edgevit.export import export
    from edgevit.runtime import load

    model, x, reference = reference_input(name)
    artifact = export(model, target="onnx", ort_format=True, out=work / name, quiet=True)  # verified, both files
    files = {"onnx": artifact.path / "model.onnx", "ort": artifact.path / "model.ort"}
    loads: dict[str, list[float]] = {key: [] for key in COLUMNS}
    for index in range(args.loads):
        for key in COLUMNS if index % 2 == 0 else COLUMNS[::-1]:
            start = time.perf_counter()
            with load(files[key], backend="onnxruntime", threads=args.threads):
                loads[key].append((time.perf_counter() - start) * 1e3)
    columns = {key: EdgevitSession(files[key], args.threads, backend="onnxruntime") for key in COLUMNS}
    scale = max(float(np.abs(reference).max()), 1e-12)
    error = {key: float(np.abs(c.run(x).astype(np.float64) - reference).max() / scale) for key, c in columns.items()}
    load_before = os.getloadavg()[0]
    samples = time_interleaved(columns, x, args.warmup, args.runs)
    p50 = {key: float(np.median(v)) for key, v in samples.items()}
    row = {
        "model": name, "bytes": {key: files[key].stat().st_size for key in COLUMNS},
        "load_ms": {key: round(float(np.median(v)), 1) for key, v in loads.items()},
        "p50_ms": {key: round(v, 3) for key, v in p50.items()},
        "ratio_p50": round(p50["ort"] / p50["onnx"], 3),
        "ratio_paired_median": round(float(np.median(np.asarray(samples["ort"]) / np.asarray(samples["onnx"]))), 3),
        "max_rel_err": error, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    log(f"  {name}: load {row['load_ms']['onnx']:.0f} -> {row['load_ms']['ort']:.0f} ms; p50 "
        f"{p50['onnx']:.2f} -> {p50['ort']:.2f} ms ({row['ratio_p50']:.3f}); load avg {row['load_average']}")
    return row


def write_results(rows: list[dict], env, args, finished: bool = False) -> None:
    from edgevit.runtime.cpu import int8_path

    data = {"environment": env.to_dict(), "simd_flags": int8_path().to_dict()["flags"], "finished": finished,
            "settings": {"threads": args.threads, "batch": 1, "warmup": args.warmup, "runs": args.runs,
                         "loads": args.loads, "interleaved": "both files once per round, the order alternated",
                         "weights": "random init"},
            "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    _write(args.out.with_suffix(".md"), markdown(rows, env, args, finished))


def markdown(rows: list[dict], env, args, finished: bool) -> str:
    from edgevit.runtime.cpu import int8_path

    flags = ", ".join(int8_path().to_dict()["flags"]) or "?"
    lines = ["# The ORT-format file against the ONNX file (issue 19)", "",
             f"Machine: {env.summary()}; SIMD flags {flags}. Full onnxruntime build, edgevit's onnxruntime backend, "
             f"batch 1, {args.threads} threads, random-init weights. Load: median of {args.loads} session creations "
             f"per file, alternated. Latency: {args.runs} rounds after {args.warmup} warm-up, each running both files "
             "once, the order alternated; ratio `.ort / .onnx` of the p50s and, in brackets, the median of the "
             "per-round ratios (below 1: the .ort file is faster). Error: largest |output - PyTorch| over the "
             "largest logit." + ("" if finished else " **Not finished; rows are added as they are measured.**"), "",
             "| model | load .onnx ms | load .ort ms | p50 .onnx ms | p50 .ort ms | ratio | size .onnx MB | size .ort MB "
             "| error .onnx / .ort | load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error']} | | | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['load_ms']['onnx']:.0f} | {r['load_ms']['ort']:.0f} | "
                     f"{r['p50_ms']['onnx']:.2f} | {r['p50_ms']['ort']:.2f} | {r['ratio_p50']:.3f} "
                     f"({r['ratio_paired_median']:.3f}) | {r['bytes']['onnx'] / 1e6:.2f} | {r['bytes']['ort'] / 1e6:.2f} | "
                     f"{r['max_rel_err']['onnx']:.1e} / {r['max_rel_err']['ort']:.1e} | "
                     f"{r['load_average'][0]}-{r['load_average'][1]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
