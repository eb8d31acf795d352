"""Does onnxruntime's transformers optimizer make edgevit's ONNX file faster? (issue 19, not a test)

Issue 19 asks for Optimum-style optimization levels on the ONNX path. Before building
``--optimize``, this measures what it would give, per 224-px model, in one process and one
interleaved run (blocking threads in every column, so no column spins into the next):

* ``edgevit``: edgevit's default ONNX file (opset 20) in edgevit's onnxruntime backend;
* ``O2``: that file through ``onnxruntime.transformers.optimizer.optimize_model(model_type="vit",
  opt_level=0)``: SkipLayerNormalization, BiasGelu and the other fusions written as contrib ops
  in the saved file (what Optimum's O2 does), in the same session settings;
* ``O3``: O2 with the GELU approximation (FastGelu), as Optimum's O3.

Every output is checked against PyTorch on the same input (fp32 artifact tolerance; O3 changes
the numbers by design). Ratios are the column's p50 over ``edgevit``'s (below 1: faster), and in
brackets the median of the per-round ratios. The fused op counts of each file are reported.

Usage::

    python benchmarks/onnx_optimize.py                    # five models, 2 threads
    python benchmarks/onnx_optimize.py vit_tiny_patch16_224 --runs 40

Writes ``benchmarks/results/onnx_optimize.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


sys.path.insert(0, str(HERE))
from latency import _write, log  # noqa: E402 - the latency benchmark's helpers
from onnx_path import EdgevitSession, RawOrt, each_model, reference_input, time_interleaved  # noqa: E402

RESULTS = HERE / "results"
MODELS = ("cas_vit_xs", "efficientformer_l1", "efficientformerv2_s0", "tiny_vit_5m_224", "vit_tiny_patch16_224")
LEVELS = {"O2": False, "O3": True}  # level -> GELU approximation


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgevit.environment import environment

    env = environment()
    each_model(args.models, lambda name: measure(name, args),
               lambda rows, finished: write_results(rows, env, args, finished=finished))
    log(f"wrote {args.out}.md and .json")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=150, help="timed rounds (each runs every column once)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-onnx-optimize")
    parser.add_argument("--out", type=Path, default=RESULTS / "onnx_optimize")
    return parser.parse_args(argv)


def build(name: str, args: argparse.Namespace) -> tuple[dict[str, Path], np.ndarray, np.ndarray]:
    """edgevit's default ONNX file and its O2 / O3 versions; PyTorch's output on one random input."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from edgevit.export import export

    model, x, reference = reference_input(name)
    folder = args.cache / name
    artifact = export(model, target="onnx", out=folder, verify=False, quiet=True)
    files = {"edgevit": Path(artifact.path)}
    for level, approximate in LEVELS.items():
        options = FusionOptions("vit")
        options.enable_gelu_approximation = approximate
        optimized = optimize_model(str(Path(artifact.path) / "model.onnx"), model_type="vit", num_heads=0,
                                   hidden_size=0, opt_level=0, optimization_options=options, use_gpu=False)
        files[level] = folder / f"{level}.onnx"
        optimized.save_model_to_file(str(files[level]))
    return files, x, reference


def measure(name: str, args: argparse.Namespace) -> dict:
    import onnx

    from edgevit.precision import TOLERANCES

    files, x, reference = build(name, args)
    columns = {"edgevit": EdgevitSession(files["edgevit"], args.threads)}
    columns.update({level: RawOrt(files[level], args.threads, spin=False, edgevit_options=True) for level in LEVELS})
    scale = max(float(np.abs(reference).max()), 1e-12)
    agreement = {key: float(np.abs(c.run(x).astype(np.float64) - reference).max() / scale) for key, c in columns.items()}
    base_ops = Counter(n.op_type for n in onnx.load(str(files["edgevit"] / "model.onnx")).graph.node)
    fused = {}
    for level in LEVELS:
        ops = Counter(n.op_type for n in onnx.load(str(files[level])).graph.node)
        fused[level] = {op: count for op, count in ops.items() if op not in base_ops}
    load_before = os.getloadavg()[0]
    samples = time_interleaved(columns, x, args.warmup, args.runs)
    p50 = {key: float(np.median(v)) for key, v in samples.items()}
    base = np.asarray(samples["edgevit"])
    row = {
        "model": name, "p50_ms": {k: round(v, 3) for k, v in p50.items()},
        "ratio_p50": {k: round(p50[k] / p50["edgevit"], 3) for k in LEVELS},
        "ratio_paired_median": {k: round(float(np.median(np.asarray(samples[k]) / base)), 3) for k in LEVELS},
        "max_rel_err": {k: v for k, v in agreement.items()}, "fp32_limit": TOLERANCES["fp32"].max_rel_err,
        "fused_ops": fused, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    log(f"  {name}: edgevit {p50['edgevit']:.2f} ms; " +
        ", ".join(f"{k} {row['ratio_p50'][k]:.3f}" for k in LEVELS) + f"; load {row['load_average']}")
    return row


def write_results(rows: list[dict], env, args, finished: bool = False) -> None:
    from edgevit.runtime.cpu import int8_path

    data = {"environment": env.to_dict(), "simd_flags": int8_path().to_dict()["flags"], "finished": finished,
            "settings": {"threads": args.threads, "batch": 1, "warmup": args.warmup, "runs": args.runs,
                         "interleaved": "each column once per round, the order rotated", "weights": "random init"},
            "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    _write(args.out.with_suffix(".md"), markdown(rows, env, args, finished))


def markdown(rows: list[dict], env, args, finished: bool) -> str:
    from edgevit.runtime.cpu import int8_path

    flags = ", ".join(int8_path().to_dict()["flags"]) or "?"
    lines = ["# onnxruntime's transformers optimizer on edgevit's ONNX file (issue 19)", "",
             f"Machine: {env.summary()}; SIMD flags {flags}. Batch 1, {args.threads} threads, no spinning in any column, random-init "
             f"weights, {args.runs} rounds after {args.warmup} warm-up, each running every column once, the order "
             "rotated. Ratio: the column's p50 over edgevit's default file (below 1: faster); in brackets the "
             "median of the per-round ratios. Error: largest |output - PyTorch| over the largest logit."
             + ("" if finished else " **Not finished; rows are added as they are measured.**"), "",
             "| model | edgevit p50 ms | O2 | O3 | error edgevit / O2 / O3 | fused in O2 | load avg |",
             "|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error']} | | | | | |")
            continue
        ratio = {k: f"{r['ratio_p50'][k]:.3f} ({r['ratio_paired_median'][k]:.3f})" for k in LEVELS}
        errors = " / ".join(f"{r['max_rel_err'][k]:.1e}" for k in ("edgevit", *LEVELS))
        fused = ", ".join(f"{op} x{n}" for op, n in r["fused_ops"]["O2"].items()) or "nothing"
        lines.append(f"| {r['model']} | {r['p50_ms']['edgevit']:.2f} | {ratio['O2']} | {ratio['O3']} | {errors} | "
                     f"{fused} | {r['load_average'][0]}-{r['load_average'][1]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
