"""edgevit's artifacts against what users would pick instead (not a test): issue 19's standing comparison.

For each 224-px zoo model (random-init weights, seed 0, one instance for every file), in one
process and one interleaved run at batch 1 and ``--threads`` threads:

edgevit's artifacts, each in edgevit's runtime:

* ``edgevit-onnx``: ``edgevit.export(model, target="onnx")`` in edgevit's onnxruntime backend;
* ``edgevit-onnx-ov``: the same ONNX file in edgevit's openvino backend;
* ``edgevit-tflite``: ``target="tflite"`` in LiteRT (XNNPACK);
* ``edgevit-pte``: ``target="executorch"`` (XNNPACK delegate) in ExecuTorch's runtime;

and the peers, each the way its documentation shows it:

* ``plain-onnx``: ``torch.onnx.export(model, (x,), dynamo=True)`` in an onnxruntime session with
  default options (threads set);
* ``plain-litert``: ``litert_torch.convert(model, (x,))`` in ``ai_edge_litert``'s Interpreter
  (``num_threads`` set, its default XNNPACK delegate);
* ``plain-pte``: ``torch.export`` -> ``to_edge_transform_and_lower([XnnpackPartitioner()])`` ->
  ``to_executorch`` (no edgevit rewrites), in ExecuTorch's runtime;
* ``openvino``: ``openvino.convert_model(model, example_input=x)`` compiled for CPU with the
  latency hint, the thread count and f32 inference precision (OpenVINO's default on a CPU with
  AVX512-BF16 is bf16, 6e-3 off PyTorch on test_vit: not an fp32 comparison);
* ``torch``: PyTorch eager, ``torch.set_num_threads``, under ``torch.inference_mode``;
* ``matmul``: a bare 1 x 1024 x 1024 @ 1024 x 1024 fp32 ONNX matmul in onnxruntime, the
  machine's rate under the same load (achieved GFLOP/s are compared with it).

Every column's output is compared with PyTorch's on the same input. Warm-up, then rounds in
which every column runs once, the order rotated. The claim: edgevit's fastest artifact against
each peer, as the ratio of p50s and the median of per-round ratios (edgevit's fastest in that
round / the peer), below 1 = edgevit faster. The results name the CPU and the load average.

Usage::

    python benchmarks/peers.py                       # five models
    python benchmarks/peers.py cas_vit_xs --runs 20

Writes ``benchmarks/results/peers.md`` and ``peers.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from latency import _write, log, matmul_model  # noqa: E402 - the latency benchmark's helpers
from onnx_path import EdgevitSession, RawOrt, each_model, time_interleaved  # noqa: E402

RESULTS = HERE / "results"
MODELS = ("cas_vit_xs", "efficientformer_l1", "efficientformerv2_s0", "tiny_vit_5m_224", "vit_tiny_patch16_224")
EDGEVIT = ("edgevit-onnx", "edgevit-onnx-ov", "edgevit-tflite", "edgevit-pte")
PEERS = ("plain-onnx", "plain-litert", "plain-pte", "openvino", "torch")
MATMUL_GFLOP = 2 * 1024 ** 3 / 1e9


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from edgevit.environment import environment
    from edgevit.runtime.cpu import int8_path

    torch.set_num_threads(args.threads)
    env = environment()
    machine = {"int8_path": int8_path().to_dict(), "versions": versions()}
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
    parser.add_argument("--runs", type=int, default=30, help="timed rounds (each column once per round)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-peers")
    parser.add_argument("--out", type=Path, default=RESULTS / "peers")
    return parser.parse_args(argv)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "onnxruntime", "ai-edge-litert", "litert-torch", "executorch", "openvino", "edgevit"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def build(name: str, args: argparse.Namespace):
    """Every file of one model from one instance, and PyTorch's output on one random input."""
    import torch

    from edgevit._quiet import quiet
    from edgevit.export import export
    from edgevit.models import create_model, model_info

    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, *model_info(name).input_size)).astype(np.float32))
    with torch.inference_mode():
        reference = model(x).numpy()
    folder = args.cache / name
    folder.mkdir(parents=True, exist_ok=True)
    files, seconds = {}, {}

    def timed(key, make):
        start = time.perf_counter()
        files[key] = make()
        seconds[key] = round(time.perf_counter() - start, 1)

    for key, target in (("edgevit-onnx", "onnx"), ("edgevit-tflite", "tflite"), ("edgevit-pte", "executorch")):
        timed(key, lambda t=target, k=key: Path(export(copy.deepcopy(model), target=t, out=folder / k,
                                                        verify=False, quiet=True).path))
    timed("plain-onnx", lambda: _save_onnx(copy.deepcopy(model), x, folder / "plain.onnx"))
    with quiet():
        timed("plain-litert", lambda: _save_litert(copy.deepcopy(model), x, folder / "plain.tflite"))
        timed("plain-pte", lambda: _save_pte(copy.deepcopy(model), x, folder / "plain.pte"))
    log(f"  {name}: built in " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()))
    return model, files, x, reference, seconds


def _save_onnx(model, x, path: Path) -> Path:
    import torch

    torch.onnx.export(model, (x,), dynamo=True).save(str(path))
    return path


def _save_litert(model, x, path: Path) -> Path:
    import litert_torch

    litert_torch.convert(model, (x,)).export(str(path))
    return path


def _save_pte(model, x, path: Path) -> Path:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = to_edge_transform_and_lower(torch.export.export(model, (x,)), partitioner=[XnnpackPartitioner()])
    path.write_bytes(program.to_executorch().buffer)
    return path


class Litert:
    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def run(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)


class OpenVINOModel:
    def __init__(self, model, x, threads: int) -> None:
        import openvino as ov

        converted = ov.convert_model(model, example_input=x)
        self.compiled = ov.Core().compile_model(converted, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                                     "INFERENCE_NUM_THREADS": threads,
                                                                     "INFERENCE_PRECISION_HINT": "f32"})
        self.request = self.compiled.create_infer_request()

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer([x])[0]


class TorchEager:
    def __init__(self, model) -> None:
        self.model = model

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()


class Matmul(RawOrt):
    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: self.x})[0]


def measure(name: str, args: argparse.Namespace) -> dict:
    from edgevit.models import model_info

    model, files, x, reference, seconds = build(name, args)
    columns = {
        "edgevit-onnx": EdgevitSession(files["edgevit-onnx"], args.threads, "onnxruntime"),
        "edgevit-onnx-ov": EdgevitSession(files["edgevit-onnx"], args.threads, "openvino"),
        "edgevit-tflite": EdgevitSession(files["edgevit-tflite"], args.threads, "litert"),
        "edgevit-pte": EdgevitSession(files["edgevit-pte"], args.threads, "executorch"),
        "plain-onnx": RawOrt(files["plain-onnx"], args.threads, spin=None, edgevit_options=False),
        "plain-litert": Litert(files["plain-litert"], args.threads),
        "plain-pte": EdgevitSession(files["plain-pte"], args.threads, "executorch"),
        "openvino": OpenVINOModel(copy.deepcopy(model), x, args.threads),
        "torch": TorchEager(model),
    }
    matmul = Matmul(matmul_model(args.cache), args.threads, spin=False, edgevit_options=True)
    matmul.x = np.random.default_rng(1).standard_normal((1, 1024, 1024)).astype(np.float32)
    scale = max(float(np.abs(reference).max()), 1e-12)
    x = x.numpy()
    agreement = {key: float(np.abs(column.run(x).astype(np.float64).reshape(reference.shape) - reference).max() / scale)
                 for key, column in columns.items()}
    columns["matmul"] = matmul
    load_before = os.getloadavg()[0]
    samples = time_interleaved(columns, x, args.warmup, args.runs)
    row = summarize(name, samples, agreement, seconds, model_info(name).gmacs)
    row["alone"] = time_alone(columns, x, row, args)
    row["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    log(f"  {name}: fastest edgevit {row['fastest_edgevit']} {row['p50_ms'][row['fastest_edgevit']]:.1f} ms; vs peers "
        + ", ".join(f"{k} {v:.2f}" for k, v in row["vs_peer_p50"].items()) + f"; load {row['load_average']}")
    return row


def time_alone(columns: dict, x: np.ndarray, row: dict, args: argparse.Namespace) -> dict:
    """edgevit's fastest and the fastest peer, each timed back to back with nothing between its calls
    (no other runtime's threads spinning in the gaps), alternating blocks of runs."""
    fastest_peer = min(PEERS, key=row["p50_ms"].__getitem__)
    keys = (row["fastest_edgevit"], fastest_peer)
    samples: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(4):
        for key in keys:
            for _ in range(2):
                columns[key].run(x)
            for _ in range(max(args.runs // 4, 2)):
                start = time.perf_counter_ns()
                columns[key].run(x)
                samples[key].append((time.perf_counter_ns() - start) / 1e6)
    p50 = {key: float(np.median(values)) for key, values in samples.items()}
    return {"peer": fastest_peer, "p50_ms": {k: round(v, 3) for k, v in p50.items()},
            "ratio": round(p50[keys[0]] / p50[fastest_peer], 3)}


def summarize(name: str, samples: dict, agreement: dict, seconds: dict, gmacs: float) -> dict:
    from edgevit.bench.stats import latency_stats

    stats = {key: latency_stats(values) for key, values in samples.items()}
    p50 = {key: s.p50_ms for key, s in stats.items()}
    fastest = min(EDGEVIT, key=p50.__getitem__)
    per_round_best = np.min(np.asarray([samples[key] for key in EDGEVIT]), axis=0)
    matmul_rate = MATMUL_GFLOP / (p50["matmul"] / 1e3)
    return {
        "model": name,
        "gmacs": gmacs,
        "p50_ms": {key: round(v, 3) for key, v in p50.items()},
        "min_ms": {key: round(s.min_ms, 3) for key, s in stats.items()},
        "fastest_edgevit": fastest,
        "vs_peer_p50": {peer: round(p50[fastest] / p50[peer], 3) for peer in PEERS},
        "vs_peer_paired": {peer: round(float(np.median(per_round_best / np.asarray(samples[peer]))), 3)
                           for peer in PEERS},
        "gflops": {key: round(2 * gmacs / (p50[key] / 1e3), 1) for key in (*EDGEVIT, *PEERS)},
        "matmul_gflops": round(matmul_rate, 1),
        "max_rel_err": {key: float(f"{value:.3g}") for key, value in agreement.items()},
        "build_seconds": seconds,
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
    lines = [
        "# edgevit against what users would pick instead",
        "",
        f"Machine: {env.summary()}; SIMD flags {', '.join(machine['int8_path']['flags']) or '?'}. "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        "",
        f"Batch 1, {args.threads} threads, random-init weights (seed 0, one instance per model for every file), "
        f"{args.runs} timed rounds after {args.warmup} warm-up, each round running every column once, the order "
        "rotated, all in one process. Claims are ratios measured in the same rounds; absolute milliseconds depend "
        "on the machine's load (load average per row, on 2 cores)."
        + ("" if finished else " **The run is not finished; rows are added as they are measured.**"),
        "",
        "All columns share one process: a runtime whose threads spin after a call (onnxruntime's default "
        "session in `plain-onnx`, PyTorch's OpenMP) takes cycles from the column that runs next; the rotation "
        "spreads that over every column. The last column checks the claim without it: edgevit's fastest and "
        "the fastest peer timed alone, in alternating blocks of back-to-back calls.",
        "",
        "Columns: see the docstring of `benchmarks/peers.py`. **vs peer** = p50 of edgevit's fastest artifact "
        "/ p50 of the peer (below 1: edgevit faster; **bold** where edgevit is slower), in brackets the median "
        "of the per-round ratios (edgevit's fastest in that round / the peer).",
        "",
        "| model | edgevit's fastest | p50 ms | " + " | ".join(f"vs {p}" for p in PEERS) + " | load avg | alone |",
        "|---|---|---:|" + "---:|" * len(PEERS) + "---:|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | failed: {row['error'][:150]} |" + " |" * (len(PEERS) + 3))
            continue
        fastest = row["fastest_edgevit"]
        cells = []
        for peer in PEERS:
            ratio, paired = row["vs_peer_p50"][peer], row["vs_peer_paired"][peer]
            text = f"{ratio:.2f} ({paired:.2f})"
            cells.append(f"**{text}**" if ratio > 1.0 else text)
        lines.append(f"| {row['model']} | {fastest} | {row['p50_ms'][fastest]:.1f} | " + " | ".join(cells)
                     + f" | {row['load_average'][0]:.1f}-{row['load_average'][1]:.1f} | {_alone(row)} |")
    if done:
        keys = (*EDGEVIT, *PEERS)
        lines += ["", "p50 (ms), achieved GFLOP/s (2 x the model's GMACs / p50) against the matmul timed in the same "
                  "rounds, and the largest error against PyTorch (relative to the largest logit):", "",
                  "| model | " + " | ".join(keys) + " | matmul GFLOP/s |", "|---|" + "---:|" * (len(keys) + 1)]
        for row in done:
            cells = [f"{row['p50_ms'][k]:.1f} / {row['gflops'][k]:.0f} / {row['max_rel_err'][k]:.0e}" for k in keys]
            lines.append(f"| {row['model']} | " + " | ".join(cells) + f" | {row['matmul_gflops']:.0f} |")
    return "\n".join(lines) + "\n"


def _alone(row: dict) -> str:
    alone = row.get("alone")
    if not alone:
        return "-"
    text = f"{alone['ratio']:.2f} vs {alone['peer']}"
    return f"**{text}**" if alone["ratio"] > 1.0 else text


if __name__ == "__main__":
    sys.exit(main())
