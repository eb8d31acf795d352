"""Latency of every zoo model: PyTorch eager fp32 against its exported artifacts (not a test).

For every zoo model at its default size, batch 1, 2 threads:

* PyTorch eager fp32 (``create_model(name).eval()``, ``torch.inference_mode()``): what a user
  has before edgevit;
* each artifact ``edgevit.export`` writes: ONNX in onnxruntime and TFLite in LiteRT (XNNPACK),
  at fp32 and fp16 (and int8 when that precision is registered);

all timed by :func:`edgevit.bench.benchmark`, interleaved round-robin in one process so
that the load of this shared machine hits every column alike. The table gives p50 latency,
the ratio to PyTorch eager, and achieved GFLOP/s (2 x MACs / p50) against this machine's
float32 matmul peak at the same thread count, measured in the same run (best of a torch
and a numpy square matmul, before and after the models).

Usage::

    python benchmarks/latency.py                      # every zoo model (about an hour)
    python benchmarks/latency.py cas_vit_xs vit_*     # some models (glob patterns)
    python benchmarks/latency.py --reuse              # reuse artifacts already in --cache

Writes ``benchmarks/results/latency.md`` and ``latency.json`` (each model's row is written as
soon as it is measured, so an interrupted run keeps what it has).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = ("onnx", "tflite", "executorch")
#: ONNX columns also timed in these backends (the same file), as column ``<column>@<backend>``
ONNX_ALSO = ("openvino",)
#: export variants besides the defaults: (column, target, precision, extra export options)
VARIANTS = (("onnx-fp32-opset18", "onnx", "fp32", {"opset": 18}),)
#: the reference column: one 1024x1024 @ 1024x1024 float32 matmul in onnxruntime, timed with the models
MATMUL, MATMUL_SIZE = "matmul", 1024
MATMUL_FLOP = 2 * MATMUL_SIZE**3
#: models above this many GMACs get half the timed rounds (PyTorch eager at 2 threads takes seconds per call)
BIG_GMACS = 8.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgevit.environment import environment
    from edgevit.models import list_models

    names = [n for n in list_models(include_test=False) if any(fnmatch.fnmatchcase(n, p) for p in args.models)]
    precisions = available_precisions(args.precisions)
    env = environment()
    log(f"{len(names)} models x {TARGETS} x {precisions}; {env.summary()}")
    peaks = [matmul_peak(args.threads, args.cache)]
    log(f"float32 matmul peak at {args.threads} threads: {peaks[0]['gflops']:.1f} GFLOP/s ({peaks[0]['how']})")
    rows = []
    if args.export_only:
        for name in names:
            export_cells(name, precisions, args)
        return 0
    for name in names:
        try:
            rows.append(measure_model(name, precisions, args))
        except Exception as exc:  # noqa: BLE001 - one model failing must not lose the others
            traceback.print_exc()
            rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
        peaks.append(matmul_peak(args.threads, args.cache))
        write_results(rows, env, peaks, args)
    peaks.append(matmul_peak(args.threads, args.cache))
    write_results(rows, env, peaks, args, finished=True)
    log(f"wrote {args.out}.md and .json")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["*"], help="zoo model names or glob patterns (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40, help="timed rounds per model (every column once per round)")
    parser.add_argument("--precisions", default="fp32,fp16,int8", help="those not registered are skipped")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-latency")
    parser.add_argument("--targets", type=lambda text: text.split(","), default=list(TARGETS),
                        help=f"comma-separated targets (default: {','.join(TARGETS)}); with --export-only, "
                             "to export some columns while another job exports the rest")
    parser.add_argument("--reuse", action="store_true", help="reuse artifacts already exported to --cache")
    parser.add_argument("--export-only", action="store_true",
                        help="only export into --cache (heavy but not timing-sensitive); time later with --reuse")
    parser.add_argument("--int8-calib-size", type=int, default=128,
                        help="calibration images for the int8 exports (the export default is 128)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency")
    return parser.parse_args(argv)


def available_precisions(wanted: str) -> list[str]:
    from edgevit.export import PRECISIONS

    return [p for p in wanted.split(",") if p in PRECISIONS]


def measure_model(name: str, precisions: list[str], args: argparse.Namespace) -> dict:
    """Export ``name`` to every target and precision, then time them all against torch eager."""
    from edgevit.bench import BenchOptions, benchmark
    from edgevit.models import model_info

    info = model_info(name)
    artifacts, keys, export_errors = export_cells(name, precisions, args)
    for path, key in list(zip(artifacts, keys)):
        if key.startswith("onnx-"):
            for backend in ONNX_ALSO:
                artifacts.append((path, backend))
                keys.append(f"{key}@{backend}")
    matmul = matmul_model(args.cache)
    artifacts.append(matmul)
    keys.append(MATMUL)
    load_before = os.getloadavg()[0]
    runs = args.runs if info.gmacs < BIG_GMACS else max(8, args.runs // 2)  # keeps the biggest rows under ~15 min
    log(f"{name}: timing {len(artifacts)} artifacts + torch eager ({runs} rounds, load {load_before:.1f})")
    options = BenchOptions(threads=args.threads, warmup=args.warmup, runs=runs, memory=False)
    torch_threads = [args.threads] + ([1] if args.threads != 1 else [])
    report = benchmark(artifacts, options, torch_model=name, torch_threads=torch_threads, progress=False)
    flops = 2 * info.gmacs * 1e9
    torch_p50 = report.baseline().latency.p50_ms  # the fastest PyTorch eager setting
    matmul_result = report.results[keys.index(MATMUL)]  # artifacts come first, in the order given
    peak = MATMUL_FLOP / (matmul_result.latency.p50_ms / 1e3) / 1e9
    columns = {}
    for index, result in enumerate(report.results):
        key = f"torch@{result.threads}t" if result.kind == "torch" else keys[index]
        if key == MATMUL:
            continue
        p50 = result.latency.p50_ms
        gflops = flops / (p50 / 1e3) / 1e9
        columns[key] = {
            "backend": f"{result.backend} {result.backend_version}",
            "p50_ms": round(p50, 3),
            "p90_ms": round(result.latency.p90_ms, 3),
            "min_ms": round(result.latency.min_ms, 3),
            "speedup_vs_torch": round(torch_p50 / p50, 3),
            "gflops": round(gflops, 2),
            "pct_of_matmul": round(100 * gflops / peak, 1),
            "overhead_pct": None if result.overhead_pct is None else round(result.overhead_pct, 3),
            "file_mb": None if result.file_bytes is None else round(result.file_bytes / 2**20, 2),
        }
    fastest = min((k for k in columns if not k.startswith("torch")), key=lambda k: columns[k]["p50_ms"], default=None)
    torch_main = columns[f"torch@{args.threads}t"]["p50_ms"]
    row = {
        "model": name,
        "image_size": info.input_size[-1],
        "gmacs": info.gmacs,
        "columns": columns,
        "runs": runs,
        "matmul_gflops": round(peak, 2),
        "matmul_p50_ms": round(matmul_result.latency.p50_ms, 3),
        "fastest": fastest,
        "torch_best": report.baseline().name,
        "fastest_speedup": columns[fastest]["speedup_vs_torch"] if fastest else None,
        "fastest_speedup_vs_torch_at_threads": round(torch_main / columns[fastest]["p50_ms"], 3) if fastest else None,
        "export_errors": export_errors,
        "int8_calib_size": int8_calib_size(artifacts),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    log(f"  {name}: torch best {torch_p50:.2f} ms; fastest {fastest} {columns[fastest]['p50_ms'] if fastest else '-'} ms "
        f"({row['fastest_speedup']}x)")
    return row


def int8_calib_size(artifacts: list) -> int | None:
    """How many calibration images the row's int8 exports used (from their manifests)."""
    from edgevit.artifact import read_manifest

    for path in artifacts:
        if not isinstance(path, tuple) and str(path).endswith("-int8"):
            return read_manifest(path).extra["quantization"]["calibration"]["used"]
    return None


def export_cells(name: str, precisions: list[str], args) -> tuple[list[Path], list[str], dict[str, str]]:
    """Export (or reuse) every column's artifact: paths, their columns (in order) and ``{column: error}``."""
    from edgevit.export.targets import TARGETS as REGISTRY

    cells = [(f"{t}-{p}", t, p, {}) for t in TARGETS for p in precisions
             if p in REGISTRY.get(t)().all_precisions] + list(VARIANTS)
    cells = [cell for cell in cells if cell[1] in args.targets]
    artifacts, keys, export_errors = [], [], {}
    for key, target, precision, extra in cells:
        try:
            path = export_artifact(name, key, target, precision, extra, args)
        except Exception as exc:  # noqa: BLE001 - report the cell, keep going
            export_errors[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            log(f"  {name} {key}: export failed: {export_errors[key]}")
            continue
        artifacts.append(path)
        keys.append(key)
    return artifacts, keys, export_errors


def export_artifact(name: str, key: str, target: str, precision: str, extra: dict, args) -> Path:
    """Export one cell into ``--cache/<column>/`` (or reuse it there)."""
    from edgevit.export import export

    out = args.cache / key
    folder = out / f"{name}-{target}-{precision}"
    if args.reuse and (folder / "manifest.json").exists():
        return folder
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    start = time.perf_counter()
    if precision == "int8":  # the sensitivity pass runs the model calib_size times per group: costly at 384-512 px
        extra = {"calib_size": args.int8_calib_size, **extra}
    artifact = export(name, target=target, precision=precision, out=out, verify=False, quiet=True, **extra)
    log(f"  exported {key} in {time.perf_counter() - start:.0f}s")
    return Path(artifact.path)


def matmul_model(cache: Path) -> Path:
    """A bare ONNX file computing ``x @ W`` (1 x 1024 x 1024 @ 1024 x 1024, fp32): the matmul column.

    Timed inside every model's interleaved run, it gives the matmul rate under the same load as
    the models, which is what their GFLOP/s are compared with (``pct_of_matmul``).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = cache / f"matmul{MATMUL_SIZE}.onnx"
    if path.exists():
        return path
    n = MATMUL_SIZE
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n, n])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    cache.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def matmul_peak(threads: int, cache: Path, repeats: int = 20) -> dict:
    """Best float32 GFLOP/s of the reference matmul run alone: torch, numpy and onnxruntime, best of each."""
    import numpy as np
    import torch

    from edgevit.runtime import load

    n = MATMUL_SIZE
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    x = np.random.default_rng(0).standard_normal((1, n, n)).astype(np.float32)
    with load(matmul_model(cache), threads=threads) as session:
        ways = {"torch": lambda: torch.mm(a, b), "numpy": lambda: np.matmul(a.numpy(), b.numpy()),
                "onnxruntime": lambda: session.run({"x": x})}
        rates = {}
        for way, call in ways.items():
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                best = min(best, time.perf_counter() - start)
            rates[way] = MATMUL_FLOP / best / 1e9
    how = ", ".join(f"{way} {rate:.0f}" for way, rate in rates.items())
    return {"gflops": max(rates.values()), **rates, "how": f"best of {repeats}: {how} GFLOP/s"}


def write_results(rows: list[dict], env, peaks: list[dict], args, finished: bool = False) -> None:
    """Write both files; the peak is the best matmul rate seen in any of the measurements."""
    peak = max(p["gflops"] for p in peaks)
    data = {
        "environment": env.to_dict(),
        "settings": {"threads": args.threads, "batch": 1, "warmup": args.warmup, "runs": args.runs,
                     "interleaved": True, "verify": False},
        "matmul_peak": {"gflops": peak, "measurements": peaks},
        "finished": finished,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    _write(args.out.with_suffix(".md"), markdown(rows, env, peak, peaks, args, finished))


def markdown(rows, env, peak, peaks, args, finished) -> str:
    keys = []
    for row in rows:
        for key in row.get("columns", {}):
            if not key.startswith("torch") and key not in keys:
                keys.append(key)
    order = [f"{t}-{p}{at}" for t in TARGETS for at in ("", *(f"@{b}" for b in ONNX_ALSO if t == "onnx"))
             for p in args.precisions.split(",")] + [v[0] for v in VARIANTS]
    keys.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
    threads = [args.threads] + ([1] if args.threads != 1 else [])
    lines = [
        "# Latency: PyTorch eager fp32 vs exported artifacts",
        "",
        f"Machine: {env.summary()}. Batch 1, {args.threads} threads, {args.runs} timed rounds after "
        f"{args.warmup} warm-up (half as many, at least 8, for models above {BIG_GMACS:g} GMACs). All columns of one model (PyTorch eager, every artifact, and a reference "
        f"{MATMUL_SIZE}x{MATMUL_SIZE} float32 matmul in onnxruntime) are timed interleaved round-robin in one "
        "process, so the load of this shared machine hits them alike."
        + ("" if finished else " **The run is not finished; rows are added as models are measured.**"),
        "",
        "* Artifact cells: **p50 ms** / speed-up over the faster PyTorch eager setting / achieved GFLOP/s "
        "(2 x MACs / p50) and, in brackets, its share of the reference matmul's GFLOP/s in the same run.",
        f"* PyTorch eager (`create_model(name).eval()`, not reparameterized, `torch.inference_mode()`) runs at "
        f"{' and '.join(str(t) for t in threads)} thread(s): on this machine its OpenMP threads stall whenever "
        "another process holds a core, so under load 1 thread can be faster than 2. Speed-ups are against the "
        f"faster of the two; the last column is against PyTorch at {args.threads} threads.",
        "* ONNX runs in onnxruntime (CPU EP, ORT_ENABLE_ALL, 2 intra-op threads, sequential, no spinning) and, "
        "as the `@openvino` columns, the same file in edgevit's OpenVINO backend (latency hint, 2 threads, f32); "
        "TFLite in LiteRT with XNNPACK (num_threads 2); ExecuTorch `.pte` (XNNPACK delegate) in ExecuTorch's "
        "runtime (2 threads). Artifacts come from `edgevit.export(..., verify=False)` "
        "(the export matrix verifies the same exports). The default ONNX export is at opset 20, where GELU is "
        "one `Gelu` op; `onnx-fp32-opset18` is the export at opset 18 (edgevit's default before), where it is "
        "Div/Erf/Add/Mul/Mul, which onnxruntime does not fuse back and which breaks its NCHWc layout into "
        "extra reorders.",
        f"* Float32 matmul peak, the same {MATMUL_SIZE}x{MATMUL_SIZE} matmul run alone (best of 20 in torch, "
        f"numpy and onnxruntime; measured {len(peaks)} times over the run): best **{peak:.1f} GFLOP/s**, worst "
        f"{min(p['gflops'] for p in peaks):.1f}. The `matmul GF/s` column is the p50 rate of the reference "
        "matmul timed with that row's models, the fair yardstick for that row.",
        "",
        "| model | size | GMACs | " + " | ".join(f"torch eager {t}t" for t in threads) + " | " + " | ".join(keys)
        + f" | matmul GF/s | fastest | speed-up (vs best torch) | vs torch {args.threads}t |",
        "|---|---:|---:|" + "---:|" * len(threads) + "---:|" * len(keys) + "---:|---|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | | | failed: {row['error'][:120]} |" + " |" * (len(keys) + len(threads) + 3))
            continue
        cols = row["columns"]
        torch_cells = [f"{cols[f'torch@{t}t']['p50_ms']:.1f}" for t in threads]
        cells = []
        for key in keys:
            if key in cols:
                c = cols[key]
                cells.append(f"**{c['p50_ms']:.1f}** / {c['speedup_vs_torch']:.1f}x / {c['gflops']:.0f} ({c['pct_of_matmul']:.0f}%)")
            else:
                cells.append("export failed" if key in row["export_errors"] else "-")
        speedup = row["fastest_speedup"]
        mark = "" if speedup is None or speedup >= 2 else " (< 2x)"
        lines.append(f"| {row['model']} | {row['image_size']} | {row['gmacs']:.2f} | " + " | ".join(torch_cells) + " | "
                     + " | ".join(cells) + f" | {row['matmul_gflops']:.0f} | {row['fastest'] or '-'} | "
                     f"{speedup:.2f}x{mark} | {row['fastest_speedup_vs_torch_at_threads']:.1f}x |")
    lines += ratio_lines(rows)
    overheads = [c["overhead_pct"] for r in rows if "columns" in r for k, c in r["columns"].items()
                 if not k.startswith("torch") and c["overhead_pct"] is not None and r["image_size"] == 224]
    if overheads:
        lines += ["", f"Runtime overhead per `Session.run` call (validation and renaming, timed with a stub backend) "
                  f"on the 224-pixel models: at most {max(overheads):.3f}% of the backend's run time "
                  f"(median {sorted(overheads)[len(overheads) // 2]:.3f}%); the target is under 5%."]
    calibs = {r["model"]: r.get("int8_calib_size") for r in rows if r.get("int8_calib_size")}
    if calibs:
        few = sorted(m for m, n in calibs.items() if n < max(calibs.values()))
        lines += ["", f"int8 columns: the default recipe (sensitivity pass, measured fragile-op rule) calibrated on "
                  f"{max(calibs.values())} digits images"
                  + (f"; {min(calibs.values())} for {', '.join(few)} (exported last, with fewer images to fit the run in "
                     "the time: the sensitivity pass builds and runs one candidate model per group, 14 minutes for "
                     "tiny_vit_21m_512 even at 32 images; the recipe, not the image count, decides the speed)" if few else "")
                  + ". Their accuracy is in int8.md (these are random-init models)."]
    errors = [(r["model"], k, v) for r in rows for k, v in r.get("export_errors", {}).items()]
    if errors:
        lines += ["", "Export failures:", ""] + [f"* {m} {k}: {v}" for m, k, v in errors]
    loads = [la for r in rows for la in r.get("load_average", [])]
    if loads:
        lines += ["", f"1-minute load average during the run: {min(loads):.1f} to {max(loads):.1f} on "
                  f"{env.cores_usable} cores (the machine is shared; p50 is robust to this, p90 is not)."]
    return "\n".join(lines) + "\n"


#: (name, numerator column, denominator column, goal): the ratios issue 19 judges, per 224-px model
RATIOS = (("ONNX fp32 / TFLite fp32", "onnx-fp32", "tflite-fp32", 1.15),
          ("ONNX int8 / ONNX fp32", "onnx-int8", "onnx-fp32", 0.6),
          ("OpenVINO / onnxruntime on the ONNX fp32 file", "onnx-fp32@openvino", "onnx-fp32", None),
          ("ExecuTorch fp32 / TFLite fp32", "executorch-fp32", "tflite-fp32", None),
          ("opset 18 / opset 20 (the default)", "onnx-fp32-opset18", "onnx-fp32", None))


def ratio_lines(rows: list[dict]) -> list[str]:
    """Per 224-px model, the ratios of p50s issue 19 judges (and a few more), with the goal where it has one."""
    done = [r for r in rows if "columns" in r and r["image_size"] == 224]
    if not done:
        return []
    lines = ["", "Ratios of p50s on the 224-px models (same rounds):", "",
             "| ratio | goal | " + " | ".join(r["model"] for r in done) + " | met |",
             "|---|---:|" + "---:|" * len(done) + "---|"]
    for label, top, bottom, goal in RATIOS:
        values = [r["columns"][top]["p50_ms"] / r["columns"][bottom]["p50_ms"]
                  if top in r["columns"] and bottom in r["columns"] else None for r in done]
        cells = ["-" if v is None else (f"**{v:.2f}**" if goal is not None and v > goal else f"{v:.2f}") for v in values]
        known = [v for v in values if v is not None]
        met = "-" if goal is None or not known else f"{sum(v <= goal for v in known)}/{len(known)}"
        lines.append(f"| {label} | {'-' if goal is None else f'<= {goal:g}'} | " + " | ".join(cells) + f" | {met} |")
    return lines


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
