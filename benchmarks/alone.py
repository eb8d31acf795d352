"""Artifacts timed alone, each in its own process (not a test): the check of one-process timings.

The interleaved benchmarks (latency, peers, onnx_path) run every column in one process, one
after the other. Runtimes whose threads spin after a call (XNNPACK's pthreadpool, PyTorch's
OpenMP, onnxruntime with spinning on) then take cycles from the column that runs next, and a
runtime whose threads block (edgevit's onnxruntime default) pays for it most. Here every
column runs alone in a fresh process (``edgevit.bench.probe``-style: load, warm up, time),
the columns alternating, ``--repeats`` times, so nothing runs beside it.

For each model of the latency benchmark's cache (``--cache``): ONNX fp32 in onnxruntime
blocking (edgevit's default) and spinning, the same file in OpenVINO, TFLite fp32 in LiteRT,
and the ExecuTorch fp32 ``.pte``; int8 likewise where the cache has it. The claim is the
median over repeats of each ratio to TFLite fp32 (and of ONNX int8 to ONNX fp32).

Usage::

    python benchmarks/alone.py cas_vit_xs vit_tiny_patch16_224 --repeats 3

Writes ``benchmarks/results/alone.md`` and ``alone.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: (column, cache folder, file suffix in the folder name, backend, spin)
COLUMNS = (
    ("onnx-fp32", "onnx-fp32", "onnx-fp32", "onnxruntime", None),
    ("onnx-fp32-spin", "onnx-fp32", "onnx-fp32", "onnxruntime", True),
    ("onnx-fp32@openvino", "onnx-fp32", "onnx-fp32", "openvino", None),
    ("tflite-fp32", "tflite-fp32", "tflite-fp32", "litert", None),
    ("executorch-fp32", "executorch-fp32", "executorch-fp32", "executorch", None),
    ("onnx-int8", "onnx-int8", "onnx-int8", "onnxruntime", None),
    ("onnx-int8-spin", "onnx-int8", "onnx-int8", "onnxruntime", True),
    ("tflite-int8", "tflite-int8", "tflite-int8", "litert", None),
    ("executorch-int8", "executorch-int8", "executorch-int8", "executorch", None),
)
#: (label, numerator, denominator)
RATIOS = (("ONNX fp32 / TFLite fp32", "onnx-fp32", "tflite-fp32"),
          ("ONNX fp32 spinning / TFLite fp32", "onnx-fp32-spin", "tflite-fp32"),
          ("OpenVINO fp32 / TFLite fp32", "onnx-fp32@openvino", "tflite-fp32"),
          ("ExecuTorch fp32 / TFLite fp32", "executorch-fp32", "tflite-fp32"),
          ("ONNX int8 / ONNX fp32", "onnx-int8", "onnx-fp32"),
          ("ONNX int8 / ONNX fp32, both spinning", "onnx-int8-spin", "onnx-fp32-spin"),
          ("TFLite int8 / TFLite fp32", "tflite-int8", "tflite-fp32"),
          ("ExecuTorch int8 / ExecuTorch fp32", "executorch-int8", "executorch-fp32"))

CHILD = r"""
import json, sys, time
import numpy as np
from edgevit.bench.inputs import random_feeds
from edgevit.runtime import load
path, backend, spin, threads, warmup, runs = sys.argv[1:7]
options = {"spin": True} if spin == "1" else {}
session = load(path, backend=backend, threads=int(threads), **options)
feeds = random_feeds(session.input_specs, 1)
for _ in range(int(warmup)):
    session.run(feeds)
samples = []
for _ in range(int(runs)):
    start = time.perf_counter_ns()
    session.run(feeds)
    samples.append((time.perf_counter_ns() - start) / 1e6)
print(json.dumps({"p50_ms": float(np.median(samples)), "min_ms": min(samples)}))
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgevit.environment import environment

    env = environment()
    rows = []
    for name in args.models:
        rows.append(measure(name, args))
        write(rows, env, args)
    write(rows, env, args, finished=True)
    print(f"wrote {args.out}.md and .json", file=sys.stderr)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="zoo model names exported in --cache by benchmarks/latency.py")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="times every column runs (alternating)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-latency")
    parser.add_argument("--out", type=Path, default=RESULTS / "alone")
    return parser.parse_args(argv)


def measure(name: str, args: argparse.Namespace) -> dict:
    columns = [(key, args.cache / folder / f"{name}-{suffix}", backend, spin)
               for key, folder, suffix, backend, spin in COLUMNS]
    columns = [c for c in columns if (c[1] / "manifest.json").exists()]
    samples: dict[str, list[float]] = {key: [] for key, *_ in columns}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for key, path, backend, spin in columns:
            command = [sys.executable, "-c", CHILD, str(path), backend, "1" if spin else "0", str(args.threads),
                       str(args.warmup), str(args.runs)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if done.returncode:
                raise RuntimeError(f"{name} {key}: {done.stderr.strip().splitlines()[-1]}")
            samples[key].append(json.loads(done.stdout.strip().splitlines()[-1])["p50_ms"])
    import numpy as np

    p50 = {key: float(np.median(values)) for key, values in samples.items()}
    ratios = {}
    for label, top, bottom in RATIOS:
        if top in samples and bottom in samples:
            ratios[label] = round(float(np.median(np.asarray(samples[top]) / np.asarray(samples[bottom]))), 3)
    row = {"model": name, "p50_ms": {k: round(v, 3) for k, v in p50.items()}, "ratios": ratios,
           "samples_ms": samples, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "at": time.strftime("%H:%M:%S")}
    print(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()), file=sys.stderr)
    return row


def write(rows: list[dict], env, args, finished: bool = False) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = {"environment": env.to_dict(), "finished": finished,
            "settings": {"threads": args.threads, "warmup": args.warmup, "runs": args.runs, "repeats": args.repeats},
            "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    labels = [label for label, *_ in RATIOS]
    lines = ["# Artifacts timed alone, each in its own process", "",
             f"Machine: {env.summary()}. Batch 1, {args.threads} threads, random-init weights; every column in a "
             f"fresh process ({args.warmup} warm-up, p50 of {args.runs} runs), the columns alternating, "
             f"{args.repeats} times. Ratios: median over the repeats of the per-repeat ratio of p50s. Nothing ran "
             "beside each column, unlike the one-process interleaved runs of latency.md and peers.md."
             + ("" if finished else " **Not finished.**"), "",
             "| model | " + " | ".join(labels) + " | load avg |", "|---|" + "---:|" * len(labels) + "---:|"]
    for row in rows:
        cells = [f"{row['ratios'][label]:.2f}" if label in row["ratios"] else "-" for label in labels]
        lines.append(f"| {row['model']} | " + " | ".join(cells)
                     + f" | {row['load_average'][0]:.1f}-{row['load_average'][1]:.1f} |")
    lines += ["", "p50 (ms) per column:", "", "| model | " + " | ".join(k for k, *_ in COLUMNS) + " |",
              "|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        lines.append(f"| {row['model']} | " + " | ".join(
            f"{row['p50_ms'][k]:.2f}" if k in row["p50_ms"] else "-" for k, *_ in COLUMNS) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
