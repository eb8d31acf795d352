"""edgevit's default ONNX file against a plain ``torch.onnx.export`` (not a test): the ONNX path's first claim.

For each 224-px zoo model (random-init weights, one instance for every file), in one process and
one interleaved run:

* ``edgevit``: ``edgevit.export(model, target="onnx")`` (the default opset, 20: GELU is one
  ``Gelu`` op) in edgevit's onnxruntime backend (``ORT_ENABLE_ALL``, sequential, no spinning);
* ``edgevit-spin``: the same file and session options with intra-op spinning on (onnxruntime's
  default), to show when edgevit's choice of turning it off wins;
* ``opset18``: edgevit's export at opset 18, its default before (GELU as Div/Erf/Add/Mul/Mul);
* ``plain``: what a user writes without edgevit, ``torch.onnx.export(model.eval(), (x,),
  dynamo=True)`` on the model as built (not reparameterized), run in an
  ``onnxruntime.InferenceSession`` with default options but the same thread count;
* ``plain-edgevit``: that plain file in edgevit's backend (separates the file from the session);
* ``tflite``: edgevit's TFLite fp32 in LiteRT (issue 19's bar: ONNX fp32 within 1.15x of it).

Every output is checked against PyTorch's on the same input (fp32 artifact tolerance). All
columns are warmed up, then timed in rounds, each running every column once, the order rotated.
Claims are ratios to ``edgevit`` (below 1: faster than edgevit's default); the paired ratio is
the median of the per-round ratios. The results name the CPU and the load average.

Usage::

    python benchmarks/onnx_path.py                       # five models, 2 threads
    python benchmarks/onnx_path.py cas_vit_xs --runs 20

Writes ``benchmarks/results/onnx_path.md`` and ``onnx_path.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import _write, log  # noqa: E402 - the latency benchmark's helpers

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("cas_vit_xs", "efficientformer_l1", "efficientformerv2_s0", "tiny_vit_5m_224", "vit_tiny_patch16_224")
COLUMNS = ("edgevit", "edgevit-spin", "opset18", "plain", "plain-edgevit", "tflite")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgevit.environment import environment
    from edgevit.runtime.cpu import int8_path

    env = environment()
    machine = {"int8_path": int8_path().to_dict()}
    log(f"{len(args.models)} models; {env.summary()}")
    each_model(args.models, lambda name: measure(name, args),
               lambda rows, finished: write_results(rows, env, machine, args, finished=finished))
    log(f"wrote {args.out}.md and .json")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(MODELS), help="zoo model names (default: five 224-px models)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40, help="timed rounds (each column once per round)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-onnx-path")
    parser.add_argument("--out", type=Path, default=RESULTS / "onnx_path")
    return parser.parse_args(argv)


def build_files(name: str, args: argparse.Namespace) -> tuple[dict[str, Path], np.ndarray, np.ndarray, dict]:
    """Export every file of one model from one instance; PyTorch's output on one random input."""
    import torch

    from edgevit.export import export
    from edgevit.export.options import DEFAULT_OPSET

    model, x_array, reference = reference_input(name)
    x = torch.from_numpy(x_array)
    folder = args.cache / name
    folder.mkdir(parents=True, exist_ok=True)
    files, seconds = {}, {}
    start = time.perf_counter()
    plain = folder / "plain.onnx"
    torch.onnx.export(copy.deepcopy(model).eval(), (x,), dynamo=True).save(str(plain))
    files["plain"], seconds["plain"] = plain, time.perf_counter() - start
    for key, target, extra in (("edgevit", "onnx", {}), ("opset18", "onnx", {"opset": 18}),
                               ("tflite", "tflite", {})):
        start = time.perf_counter()
        artifact = export(copy.deepcopy(model), target=target, out=folder / key, verify=False, quiet=True, **extra)
        files[key], seconds[key] = Path(artifact.path), time.perf_counter() - start
    log(f"  {name}: exported in " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()))
    return files, x.numpy(), reference, {"default_opset": DEFAULT_OPSET}


def each_model(models: list[str], measure: Callable[[str], dict],
               write: Callable[[list[dict], bool], None]) -> list[dict]:
    """``measure`` every model in turn, the results written after each (``write(rows, finished)``).

    A model that fails gets a row with its error: one model failing must not lose the others.
    """
    rows: list[dict] = []
    for name in models:
        try:
            rows.append(measure(name))
        except Exception as exc:  # noqa: BLE001 - one model failing must not lose the others
            log(f"  {name}: failed: {type(exc).__name__}: {exc}")
            rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
        write(rows, False)
    write(rows, True)
    return rows


def reference_input(name: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """A random-init (seed 0) zoo model in eval mode, one random input at its size, and PyTorch's output on it."""
    import torch

    from edgevit.models import create_model, model_info

    torch.manual_seed(0)
    model = create_model(name).eval()
    size = model_info(name).input_size[-1]
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    return model, x, reference


class RawOrt:
    """An ``onnxruntime.InferenceSession`` with the run signature of an edgevit Session."""

    def __init__(self, path: Path, threads: int, spin: bool | None, edgevit_options: bool) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        if edgevit_options:  # edgevit's backend settings, spinning as asked
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.inter_op_num_threads = 1
        if spin is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]


class EdgevitSession:
    """An edgevit runtime session fed an NCHW array (transposed for an NHWC file)."""

    def __init__(self, path: Path, threads: int, backend: str = "auto") -> None:
        from edgevit.runtime import load

        self.session = load(path, backend=backend, threads=threads)
        spec = self.session.input_specs[0]
        self.input, self.nhwc = spec.name, spec.shape[-1] == 3

    def run(self, x: np.ndarray) -> np.ndarray:
        feed = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if self.nhwc else x
        return next(iter(self.session.run({self.input: feed}).values()))


def measure(name: str, args: argparse.Namespace) -> dict:
    from edgevit.formats.onnx import read_ops
    from edgevit.precision import TOLERANCES

    files, x, reference, meta = build_files(name, args)
    columns = {
        "edgevit": EdgevitSession(files["edgevit"], args.threads),
        "edgevit-spin": RawOrt(_model_file(files["edgevit"]), args.threads, spin=True, edgevit_options=True),
        "opset18": EdgevitSession(files["opset18"], args.threads),
        "plain": RawOrt(files["plain"], args.threads, spin=None, edgevit_options=False),
        "plain-edgevit": RawOrt(files["plain"], args.threads, spin=False, edgevit_options=True),
        "tflite": EdgevitSession(files["tflite"], args.threads),
    }
    limit = TOLERANCES["fp32"].max_rel_err
    scale = max(float(np.abs(reference).max()), 1e-12)
    agreement = {}
    for key, column in columns.items():
        rel = float(np.abs(column.run(x).astype(np.float64) - reference).max() / scale)
        agreement[key] = {"max_rel_err": rel, "within": rel <= limit}
    ops = {key: dict(read_ops(_model_file(files[key])).counts().most_common(6))
           for key in ("edgevit", "opset18", "plain")}
    load_before = os.getloadavg()[0]
    samples = time_interleaved(columns, x, args.warmup, args.runs)
    row = summarize(name, samples, agreement, ops, meta)
    row["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    log(f"  {name}: edgevit {row['p50_ms']['edgevit']:.1f} ms; ratios " +
        ", ".join(f"{k} {v:.2f}" for k, v in row["ratio_p50"].items()) + f"; load {row['load_average']}")
    return row


def _model_file(path: Path) -> Path:
    """The model file of an artifact folder (or the file itself)."""
    if path.is_file():
        return path
    return next(p for p in sorted(path.iterdir()) if p.suffix in (".onnx", ".tflite"))


def time_interleaved(columns: dict, x: np.ndarray, warmup: int, runs: int) -> dict[str, list[float]]:
    for _ in range(warmup):
        for column in columns.values():
            column.run(x)
    samples: dict[str, list[float]] = {key: [] for key in columns}
    order = list(columns)
    for index in range(runs):
        shift = index % len(order)
        for key in order[shift:] + order[:shift]:
            start = time.perf_counter_ns()
            columns[key].run(x)
            samples[key].append((time.perf_counter_ns() - start) / 1e6)
    return samples


def summarize(name: str, samples: dict, agreement: dict, ops: dict, meta: dict) -> dict:
    from edgevit.bench.stats import latency_stats

    stats = {key: latency_stats(values) for key, values in samples.items()}
    base = np.asarray(samples["edgevit"])
    others = [key for key in samples if key != "edgevit"]
    return {
        "model": name,
        **meta,
        "p50_ms": {key: round(s.p50_ms, 3) for key, s in stats.items()},
        "min_ms": {key: round(s.min_ms, 3) for key, s in stats.items()},
        "ratio_p50": {key: round(stats[key].p50_ms / stats["edgevit"].p50_ms, 3) for key in others},
        "ratio_paired_median": {key: round(float(np.median(np.asarray(samples[key]) / base)), 3) for key in others},
        "agreement": agreement,
        "top_ops": ops,
        "samples_ms": {key: [round(v, 3) for v in values] for key, values in samples.items()},
    }


def write_results(rows: list[dict], env, machine: dict, args, finished: bool = False) -> None:
    data = {"environment": env.to_dict(), "machine": machine, "finished": finished,
            "settings": {"threads": args.threads, "batch": 1, "warmup": args.warmup, "runs": args.runs,
                         "interleaved": "each column once per round, the order rotated", "weights": "random init"},
            "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    _write(args.out.with_suffix(".md"), markdown(rows, env, machine, args, finished))


def markdown(rows: list[dict], env, machine: dict, args, finished: bool) -> str:
    done = [r for r in rows if "error" not in r]
    others = COLUMNS[1:]
    lines = [
        "# edgevit's default ONNX file against a plain torch.onnx.export",
        "",
        f"Machine: {env.summary()}; SIMD flags {', '.join(machine['int8_path']['flags']) or '?'}. Batch 1, "
        f"{args.threads} threads, random-init weights (one instance per model for every file), {args.runs} "
        f"timed rounds after {args.warmup} warm-up, each round running every column once, the order rotated. "
        "The claims are ratios measured in the same rounds; absolute milliseconds depend on the machine's load "
        "(load average per row, on 2 cores)."
        + ("" if finished else " **The run is not finished; rows are added as they are measured.**"),
        "",
        "* **edgevit**: edgevit's default export (opset "
        f"{done[0]['default_opset'] if done else '?'}) in edgevit's onnxruntime backend (no spinning).",
        "* **edgevit-spin**: the same file and settings with intra-op spinning on (onnxruntime's default).",
        "* **opset18**: edgevit's export at opset 18 (its default before; GELU as Div/Erf/Add/Mul/Mul).",
        "* **plain**: `torch.onnx.export(model.eval(), (x,), dynamo=True)` of the model as built, in an "
        "onnxruntime session with default options and the same thread count.",
        "* **plain-edgevit**: the plain file in edgevit's session settings.",
        "* **tflite**: edgevit's TFLite fp32 in LiteRT (XNNPACK).",
        "* **Caveat** (found after this run): all columns share one process, and the spinning columns "
        "(edgevit-spin, plain) keep their threads busy into the next column's call. The ratios among the "
        "blocking ONNX columns (opset18, plain-edgevit against edgevit) are fair; the tflite column is slowed "
        "by its spinning neighbours, and spinning's own gain is measured cleanly in `alone.md` (each column "
        "alone in its own process).",
        "* Each ratio is that column's p50 over edgevit's (below 1: faster than edgevit's default file); in "
        "brackets the median of the per-round ratios. Every column's output is checked against PyTorch "
        "(fp32 limit: relative error 1e-4 of the largest logit).",
        "",
        "| model | edgevit p50 ms | " + " | ".join(others) + " | all outputs within fp32 | load avg |",
        "|---|---:|" + "---:|" * len(others) + "---|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | failed: {row['error'][:150]} |" + " |" * (len(others) + 2))
            continue
        cells = [f"{row['ratio_p50'][k]:.2f} ({row['ratio_paired_median'][k]:.2f})" for k in others]
        worst = max(a["max_rel_err"] for a in row["agreement"].values())
        within = all(a["within"] for a in row["agreement"].values())
        lines.append(f"| {row['model']} | {row['p50_ms']['edgevit']:.1f} | " + " | ".join(cells)
                     + f" | {'yes' if within else '**no**'} (worst {worst:.1e}) | "
                     f"{row['load_average'][0]:.1f}-{row['load_average'][1]:.1f} |")
    if done:
        lines += ["", "Op counts (six most common) of the three ONNX files:", ""]
        for row in done:
            lines.append(f"* {row['model']}: " + "; ".join(
                f"{key}: " + ", ".join(f"{op} {n}" for op, n in counts.items()) for key, counts in row["top_ops"].items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
