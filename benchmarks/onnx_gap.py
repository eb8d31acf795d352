"""Where onnxruntime spends the time that TFLite does not: edgevit's ONNX fp32 file against its TFLite fp32 file (issue 19, not a test)

Issue 19 asks for the default ONNX file within 1.15x of the TFLite file on every 224-px model.
On AVX2 machines it is not (``latency.md``: 1.34-1.55x). This finds out where the difference is,
per model, in one process:

1. **Timed**: edgevit's ONNX file in edgevit's onnxruntime backend (2 threads, blocking, as
   edgevit runs it), the TFLite file in LiteRT (XNNPACK), and a 1024x1024 float32 matmul in
   onnxruntime (the yardstick for matrix throughput under the same load), interleaved round by
   round, the order rotated.
2. **Profiled**: the same ONNX file in a second session with onnxruntime's own profiler
   (``enable_profiling``), the same settings. Each kernel's time is summed by op type over the
   optimized graph onnxruntime runs (its fusions and its NCHWc layout nodes included); matrix
   ops (Gemm, MatMul, FusedMatMul, Conv) get their multiply-adds from the shapes the profiler
   records, so their achieved GFLOP/s can be set against the matmul's. "Between kernels" is a
   run's time minus its kernels' sum: the executor and the waits of the blocking threads. The
   profiler adds a few microseconds per node, so the profiled run is longer than the timed one;
   the breakdown is reported in shares of the profiled run.

Outputs are checked against PyTorch (fp32 tolerance) before timing.

Usage::

    python benchmarks/onnx_gap.py                       # the five int8 benchmark models
    python benchmarks/onnx_gap.py vit_tiny_patch16_224 --runs 60

Writes ``benchmarks/results/onnx_gap.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

sys.path.insert(0, str(HERE))
from latency import MATMUL_FLOP, _write, log, matmul_model  # noqa: E402 - the latency benchmark's helpers
from onnx_path import EdgevitSession, RawOrt, _model_file, each_model, reference_input, time_interleaved  # noqa: E402

RESULTS = HERE / "results"
MODELS = ("cas_vit_xs", "efficientformer_l1", "efficientformerv2_s0", "tiny_vit_5m_224", "vit_tiny_patch16_224")
MATRIX = ("Gemm", "MatMul", "FusedMatMul", "Conv")
LAYOUT = ("ReorderInput", "ReorderOutput", "Transpose", "Reshape", "Split", "Concat", "Gather", "Squeeze",
          "Unsqueeze", "Slice", "Expand", "Flatten")


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
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40, help="timed rounds (each runs every column once)")
    parser.add_argument("--profiled-runs", type=int, default=30, help="runs of the profiled session")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-onnx-gap")
    parser.add_argument("--out", type=Path, default=RESULTS / "onnx_gap")
    return parser.parse_args(argv)


def build(name: str, args: argparse.Namespace) -> tuple[dict[str, Path], np.ndarray, np.ndarray]:
    """edgevit's default ONNX and TFLite fp32 files of one model instance; PyTorch's output on one input."""
    from edgevit.export import export

    model, x, reference = reference_input(name)
    files = {}
    for target in ("onnx", "tflite"):
        folder = args.cache / name / target
        done = sorted(folder.glob("*/manifest.json"))  # exported by an earlier run: reused
        files[target] = done[0].parent if done else Path(
            export(copy.deepcopy(model), target=target, out=folder, verify=False, quiet=True).path)
    return files, x, reference


def measure(name: str, args: argparse.Namespace) -> dict:
    from edgevit.precision import TOLERANCES

    files, x, reference = build(name, args)
    columns = {"onnx": EdgevitSession(files["onnx"], args.threads), "tflite": EdgevitSession(files["tflite"], args.threads),
               "matmul": RawOrt(matmul_model(args.cache), args.threads, spin=False, edgevit_options=True)}
    scale = max(float(np.abs(reference).max()), 1e-12)
    errors = {key: float(np.abs(columns[key].run(x).astype(np.float64) - reference).max() / scale)
              for key in ("onnx", "tflite")}
    limit = TOLERANCES["fp32"].max_rel_err
    if max(errors.values()) > limit:
        raise RuntimeError(f"an output is off PyTorch's by more than the fp32 limit {limit:g}: {errors}")
    matmul_x = np.random.default_rng(1).standard_normal((1, 1024, 1024)).astype(np.float32)
    columns["matmul"].run = _bound(columns["matmul"].run, matmul_x)
    load_before = os.getloadavg()[0]
    samples = time_interleaved(columns, x, args.warmup, args.runs)
    p50 = {key: float(np.median(v)) for key, v in samples.items()}
    profile = profile_onnx(_model_file(files["onnx"]), x, args)
    row = {
        "model": name, "p50_ms": {k: round(v, 3) for k, v in p50.items()},
        "onnx_over_tflite": round(p50["onnx"] / p50["tflite"], 3),
        "onnx_over_tflite_paired": round(float(np.median(np.asarray(samples["onnx"]) / np.asarray(samples["tflite"]))), 3),
        "matmul_gflops": round(MATMUL_FLOP / (p50["matmul"] / 1000.0) / 1e9, 1),
        "max_rel_err": errors, "fp32_limit": limit, "profile": profile,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    matrix = profile["groups"]["matrix"]
    from edgevit.models import model_info

    row["gmacs"] = model_info(name).gmacs
    row["tflite_gflops"] = round(2 * row["gmacs"] / (p50["tflite"] / 1000.0), 1)
    row["onnx_matrix_over_tflite"] = round(matrix["ms"] / p50["tflite"], 3)
    log(f"  {name}: onnx {p50['onnx']:.2f} ms, tflite {p50['tflite']:.2f} ms ({row['onnx_over_tflite']:.2f}x); "
        f"profiled: matrix ops {matrix['share']:.0%} at {matrix['gflops']:.0f} GFLOP/s "
        f"(matmul {row['matmul_gflops']:.0f}); load {row['load_average']}")
    return row


def _bound(run, x: np.ndarray):
    """``run`` fed ``x`` whatever it is called with (the matmul column takes its own input)."""
    return lambda _ignored: run(x)


def profile_onnx(path: Path, x: np.ndarray, args: argparse.Namespace) -> dict:
    """onnxruntime's profiler over ``--profiled-runs`` runs: time, count and MACs per op type, per run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as folder:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        for _ in range(args.warmup):
            session.run(None, feed)
        for _ in range(args.profiled_runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"][-args.profiled_runs:]
    first = runs[0]["ts"]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first]
    n = args.profiled_runs
    per_op: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "nodes": 0, "macs": 0})
    for event in kernels:
        op = event["args"]["op_name"]
        per_op[op]["ms"] += event["dur"] / 1000.0 / n
        per_op[op]["nodes"] += 1
        per_op[op]["macs"] += _macs(op, event["args"]) / n
    for entry in per_op.values():
        entry["nodes"] //= n
    run_ms = float(np.median([e["dur"] for e in runs])) / 1000.0
    kernel_ms = sum(e["ms"] for e in per_op.values())
    groups = {}
    for group, ops in (("matrix", MATRIX), ("layout", LAYOUT)):
        chosen = [per_op[op] for op in ops if op in per_op]
        ms, macs = sum(e["ms"] for e in chosen), sum(e["macs"] for e in chosen)
        groups[group] = {"ms": ms, "share": ms / run_ms, "nodes": sum(e["nodes"] for e in chosen),
                         "gflops": 2 * macs / (ms / 1000.0) / 1e9 if ms else 0.0}
    other = {op: e for op, e in per_op.items() if op not in MATRIX + LAYOUT}
    groups["other"] = {"ms": sum(e["ms"] for e in other.values()),
                       "share": sum(e["ms"] for e in other.values()) / run_ms,
                       "nodes": sum(e["nodes"] for e in other.values())}
    groups["between"] = {"ms": run_ms - kernel_ms, "share": (run_ms - kernel_ms) / run_ms}
    return {"run_ms": run_ms, "kernel_ms": kernel_ms, "groups": groups,
            "ops": {op: {"ms": round(e["ms"], 4), "nodes": e["nodes"], "macs": int(e["macs"])}
                    for op, e in sorted(per_op.items(), key=lambda item: -item[1]["ms"])}}


def _macs(op: str, info: dict) -> float:
    """Multiply-adds of one matrix kernel from the shapes onnxruntime's profiler records (0 for other ops)."""
    if op not in MATRIX:
        return 0.0
    shapes = [next(iter(s.values())) for s in info.get("input_type_shape", [])]
    outputs = [next(iter(s.values())) for s in info.get("output_type_shape", [])]
    if len(shapes) < 2 or not outputs or not outputs[0]:
        return 0.0
    a, w, out = shapes[0], shapes[1], outputs[0]
    if op == "Conv":  # every output element takes (input channels / groups) x kernel taps: prod(W) / out channels
        return math.prod(out) / out[1] * math.prod(w)
    # a matrix product: out [..., M, N] and A [..., M, K] (or transposed): K = prod(A) / prod(out[:-1])
    return math.prod(out) * (math.prod(a) / math.prod(out[:-1]))


def write_results(rows: list[dict], env, args, finished: bool = False) -> None:
    from edgevit.runtime.cpu import int8_path

    data = {"environment": env.to_dict(), "simd_flags": int8_path().to_dict()["flags"], "finished": finished,
            "settings": {"threads": args.threads, "batch": 1, "warmup": args.warmup, "runs": args.runs,
                         "profiled_runs": args.profiled_runs, "spinning": False,
                         "interleaved": "each column once per round, the order rotated", "weights": "random init"},
            "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    _write(args.out.with_suffix(".md"), markdown(rows, env, args, finished))


def markdown(rows: list[dict], env, args, finished: bool) -> str:
    from edgevit.runtime.cpu import int8_path

    flags = ", ".join(int8_path().to_dict()["flags"]) or "?"
    lines = ["# Where onnxruntime spends the time TFLite does not (issue 19)", "",
             f"Machine: {env.summary()}; SIMD flags {flags}. Batch 1, {args.threads} threads, no spinning, "
             f"random-init weights, {args.runs} rounds after {args.warmup} warm-up, each running every column once "
             f"(edgevit's ONNX fp32 file in onnxruntime, its TFLite fp32 file in LiteRT, a 1024x1024 matmul in "
             f"onnxruntime), the order rotated; then {args.profiled_runs} runs of the ONNX file with onnxruntime's "
             "profiler in the same settings. Written by `benchmarks/onnx_gap.py` (its docstring says how)."
             + ("" if finished else " **Not finished; rows are added as they are measured.**"), "",
             "| model | ONNX p50 ms | TFLite p50 ms | ONNX / TFLite | matrix ops (share, GFLOP/s) | matrix ops / TFLite "
             "| TFLite whole model GFLOP/s | matmul GFLOP/s | layout ops (share, nodes) | other ops (share, nodes) "
             "| between kernels | profiled run ms | error ONNX / TFLite | load avg |",
             "|---|---:|---:|---:|---|---:|---:|---:|---|---|---:|---:|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error']} |" + " |" * 12)
            continue
        g = r["profile"]["groups"]
        lines.append(
            f"| {r['model']} | {r['p50_ms']['onnx']:.2f} | {r['p50_ms']['tflite']:.2f} | "
            f"{r['onnx_over_tflite']:.2f} ({r['onnx_over_tflite_paired']:.2f}) | "
            f"{g['matrix']['share']:.0%}, {g['matrix']['gflops']:.0f} | {r['onnx_matrix_over_tflite']:.2f} | "
            f"{r['tflite_gflops']:.0f} | {r['matmul_gflops']:.0f} | "
            f"{g['layout']['share']:.0%}, {g['layout']['nodes']} | {g['other']['share']:.0%}, {g['other']['nodes']} | "
            f"{g['between']['share']:.0%} | {r['profile']['run_ms']:.2f} | "
            f"{r['max_rel_err']['onnx']:.1e} / {r['max_rel_err']['tflite']:.1e} | "
            f"{r['load_average'][0]}-{r['load_average'][1]} |")
    lines += ["", "ONNX / TFLite: ratio of p50s, in brackets the median of per-round ratios. Shares are of the "
              "profiled run. Matrix ops: Gemm, MatMul, FusedMatMul, Conv (multiply-adds from the recorded shapes; "
              "NCHWc convolutions count their padded channels). Matrix ops / TFLite: the profiled time of "
              "onnxruntime's matrix kernels alone over the TFLite file's whole p50. TFLite whole model GFLOP/s: "
              "2 x the model's GMACs over the TFLite p50 (everything included). Layout ops: NCHWc reorders, Transpose, Reshape, "
              "Split, Concat, Gather and the like.", "", "The eight costliest op types of each profiled run (ms per run, nodes):", ""]
    for r in rows:
        if "error" in r:
            continue
        top = list(r["profile"]["ops"].items())[:8]
        lines.append(f"* {r['model']}: " + ", ".join(f"{op} {e['ms']:.2f} ({e['nodes']})" for op, e in top))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
