"""ExecuTorch ``.pte`` on the XNNPACK delegate: what edgevit's rewrites change (not a test).

For each zoo model (random init, batch 1, 2 threads, and 1 thread where asked):

* **plain**: the flow ExecuTorch's documentation shows (``torch.export`` ->
  ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`` -> ``to_executorch``),
  i.e. :func:`edgevit.quantize.executorch.to_pte` with ``rewrite=False``;
* **edgevit**: ``edgevit.export(name, target="executorch")`` (the same flow after edgevit's
  graph rewrites), verified against PyTorch by the export;
* **tflite**: ``edgevit.export(name, target="tflite")``, edgevit's fastest fp32 artifact so far.

For each ``.pte``: delegated subgraphs, XNNPACK nodes and the ops left outside the delegate
(read back with :mod:`edgevit.formats.pte`) and the relative error against PyTorch on the
export's verification inputs (the plain file on one random input). Then the three files are
timed by :func:`edgevit.bench.benchmark`, interleaved round-robin in one process, so that the
load of this shared machine hits them alike; the table gives p50 and the ratio of each
``.pte`` to the TFLite file timed in the same rounds.

Usage::

    python benchmarks/executorch_speed.py                               # tiny_vit_5m_224, vit_tiny_patch16_224
    python benchmarks/executorch_speed.py tiny_vit_5m_224 vit_tiny_patch16_224 cas_vit_xs --threads 2,1 --passes 2

Writes ``benchmarks/results/executorch.md`` and ``executorch.json`` (each model's row as soon
as it is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_MODELS = ("tiny_vit_5m_224", "vit_tiny_patch16_224")
COLUMNS = ("plain", "edgevit", "tflite")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgevit.environment import environment

    env = environment()
    log(f"{len(args.models)} models; {env.summary()}")
    rows, rates = [], [matmul_gflops()]
    for name in args.models:
        rows.append(measure_model(name, args))
        rates.append(matmul_gflops())
        write_results(rows, env, args, rates)
    log(f"wrote {args.out}.md and .json")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS), help="zoo model names")
    parser.add_argument("--threads", default="2", help="thread counts, each timed in its own passes (e.g. 2,1)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30, help="timed rounds per pass (every file once per round)")
    parser.add_argument("--passes", type=int, default=2, help="timing passes per model (the table shows each)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-executorch")
    parser.add_argument("--reuse", action="store_true", help="reuse files already in --cache")
    parser.add_argument("--out", type=Path, default=RESULTS / "executorch")
    return parser.parse_args(argv)


def measure_model(name: str, args: argparse.Namespace) -> dict:
    """Lower ``name`` both ways, export TFLite, describe the ``.pte`` files and time all three."""
    files = {"plain": plain_pte(name, args), "edgevit": exported(name, "executorch", args),
             "tflite": exported(name, "tflite", args)}
    row = {"model": name, "files": {"plain": describe_plain(name, files["plain"]),
                                    "edgevit": describe_artifact(files["edgevit"])}, "passes": []}
    for threads in thread_counts(args):
        for index in range(args.passes):
            row["passes"].append(time_files(name, files, args, index, threads))
    return row


def plain_pte(name: str, args: argparse.Namespace) -> Path:
    """The ``.pte`` ExecuTorch's documented flow writes for the zoo model (no edgevit rewrites)."""
    path = args.cache / f"{name}-plain.pte"
    if args.reuse and path.exists():
        return path
    from edgevit._quiet import quiet
    from edgevit.quantize.executorch import export_program, to_pte

    model, example = reparameterized(name)
    start = time.perf_counter()
    with quiet():
        data = to_pte(export_program(model, example, rewrite=False), rewrite=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    log(f"  {name}: plain .pte lowered in {time.perf_counter() - start:.0f} s")
    return path


def exported(name: str, target: str, args: argparse.Namespace) -> Path:
    """``edgevit.export`` of ``name`` to ``target`` at fp32, verified (or reused from --cache)."""
    from edgevit.export import export

    folder = args.cache / f"{name}-{target}-fp32"
    if args.reuse and (folder / "manifest.json").exists():
        return folder
    start = time.perf_counter()
    artifact = export(name, target=target, out=args.cache, quiet=True)
    log(f"  {name}: {target} exported and verified in {time.perf_counter() - start:.0f} s")
    return Path(artifact.path)


def reparameterized(name: str):
    """The random-init model as the export prepares it (seed 0 for the weights) and one input."""
    import torch

    from edgevit.models import create_model, model_info

    torch.manual_seed(0)
    model = create_model(name).eval().reparameterize()
    example = torch.randn(1, *model_info(name).input_size, generator=torch.Generator().manual_seed(0))
    return model, example


def describe_plain(name: str, path: Path) -> dict:
    """Delegation of the plain file, and its error against PyTorch on one random input."""
    import numpy as np
    import torch

    from edgevit.runtime import load

    model, example = reparameterized(name)
    with torch.no_grad():
        reference = model(example).numpy()
    with load(path, backend="executorch", threads=2) as session:
        got = session.run({session.input_specs[0].name: example.numpy()})
    logits = next(iter(got.values()))
    return {**delegation(path), "max_rel_err": float(np.abs(logits - reference).max() / np.abs(reference).max()),
            "bytes": path.stat().st_size}


def describe_artifact(folder: Path) -> dict:
    """Delegation and verification of an exported ``.pte`` artifact (from its file and manifest)."""
    from edgevit.artifact import read_manifest

    manifest = read_manifest(folder)
    logits = manifest.verification["outputs"]["logits"]
    return {**delegation(folder / manifest.model_file), "max_rel_err": logits["max_rel_err"],
            "verification": manifest.verification["status"], "bytes": sum(manifest.files.values())}


def delegation(path: Path) -> dict:
    from edgevit.formats.pte import delegated_subgraphs, outside_delegates, read_ops

    graph = read_ops(path)
    outside = outside_delegates(graph)
    return {"delegated_subgraphs": delegated_subgraphs(graph), "xnnpack_nodes": sum(
        1 for op in graph.ops if op.graph != graph.main), "outside": dict(outside.most_common()),
        "outside_total": sum(outside.values())}


def thread_counts(args: argparse.Namespace) -> list[int]:
    return [int(n) for n in str(args.threads).split(",")]


def time_files(name: str, files: dict[str, Path], args: argparse.Namespace, index: int, threads: int) -> dict:
    """One interleaved timing pass of the three files; p50 each and the ratios to TFLite."""
    from edgevit.bench import BenchOptions, benchmark

    order = list(COLUMNS[index % len(COLUMNS):] + COLUMNS[:index % len(COLUMNS)])  # rotate the start per pass
    paths = [files[key] for key in order]
    load_before = os.getloadavg()[0]
    log(f"  {name}: {threads} thread(s), pass {index + 1}, {args.runs} rounds, load {load_before:.1f}")
    options = BenchOptions(threads=threads, warmup=args.warmup, runs=args.runs, memory=False)
    report = benchmark(paths, options, progress=False)
    by_path = {result.path: result for result in report.results}
    p50 = {key: by_path[str(files[key])].latency.p50_ms for key in COLUMNS}
    fastest = {key: by_path[str(files[key])].latency.min_ms for key in COLUMNS}
    return {"p50_ms": {k: round(v, 3) for k, v in p50.items()},
            "min_ms": {k: round(v, 3) for k, v in fastest.items()},
            "ratio_to_tflite": {k: round(p50[k] / p50["tflite"], 3) for k in ("plain", "edgevit")},
            "min_ratio_to_tflite": {k: round(fastest[k] / fastest["tflite"], 3) for k in ("plain", "edgevit")},
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "runs": args.runs,
            "threads": threads}


def matmul_gflops(size: int = 1024, repeats: int = 10) -> float:
    """This machine's float32 rate now: the best of ``repeats`` single-threaded numpy ``size``-square matmuls."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return round(2 * size**3 / best / 1e9, 1)


def write_results(rows: list[dict], env, args: argparse.Namespace, rates: list[float]) -> None:
    data = {"environment": env.to_dict(), "matmul_gflops_1_thread": rates, "settings": {"threads": thread_counts(args), "batch": 1, "warmup": args.warmup,
                                                       "runs": args.runs, "passes": args.passes, "interleaved": True},
            "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (args.out.with_suffix(".json")).write_text(json.dumps(data, indent=2) + "\n")
    (args.out.with_suffix(".md")).write_text(markdown(rows, env, args, rates))


def markdown(rows: list[dict], env, args: argparse.Namespace, rates: list[float]) -> str:
    from edgevit.quantize.executorch import REWRITES

    lines = [
        "# ExecuTorch `.pte` (XNNPACK delegate): ExecuTorch's documented flow vs edgevit's export",
        "",
        f"Machine: {env.summary()}. Random-init weights, batch 1, {' and '.join(map(str, thread_counts(args)))} thread(s). `plain` is "
        "`torch.export` -> `to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])` -> `to_executorch` "
        "as ExecuTorch documents it; `edgevit` is `edgevit export --target executorch` (the same flow after "
        "edgevit's rewrites, verified against PyTorch); `tflite` is `edgevit export --target tflite` (LiteRT, "
        "XNNPACK). Both `.pte` files run in the executorch wheel's runtime (`edgevit.runtime`, backend "
        "`executorch`), the TFLite file in LiteRT.",
        "",
        "## Delegation and agreement with PyTorch",
        "",
        "| model | file | delegated subgraphs | XNNPACK nodes | ops outside the delegate | max rel err vs PyTorch |",
        "|---|---|---:|---:|---|---:|",
    ]
    for row in rows:
        for key in ("plain", "edgevit"):
            info = row["files"][key]
            outside = ", ".join(f"{op} x{n}" for op, n in info["outside"].items()) or "none"
            lines.append(f"| {row['model']} | {key} | {info['delegated_subgraphs']} | {info['xnnpack_nodes']} | "
                         f"{info['outside_total']}: {outside} | {info['max_rel_err']:.1e} |")
    lines += [
        "",
        "The plain file's error is on one random input; the edgevit file's is the export's verification (random "
        "inputs and photos). The rewrites (`edgevit.quantize.executorch.REWRITES`):",
        "",
        *[f"* `{name}`: {what}" for name, what in REWRITES],
        "",
        "## Latency (ms; ratios to the TFLite file timed in the same rounds)",
        "",
        "p50 (and, after the slash, the fastest call of the pass: on a machine this busy the fastest call "
        "is the closest to the files' own speed).",
        "",
        "| model | threads | pass | load avg (before, after) | plain | edgevit | tflite | plain / tflite | edgevit / tflite |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for index, timing in enumerate(row["passes"], 1):
            index = (index - 1) % args.passes + 1
            p50, ratio = timing["p50_ms"], timing["ratio_to_tflite"]
            low, low_ratio = timing.get("min_ms", {}), timing.get("min_ratio_to_tflite", {})

            def cell(values, key, digits=1):
                return f"{values[key]:.{digits}f}" if key in values else "-"

            lines.append(f"| {row['model']} | {timing.get('threads', 2)} | {index} | {timing['load_average'][0]:.1f}, {timing['load_average'][1]:.1f} "
                         + "".join(f"| {cell(p50, k)} / {cell(low, k)} " for k in COLUMNS)
                         + "".join(f"| {cell(ratio, k, 2)} / {cell(low_ratio, k, 2)} " for k in ("plain", "edgevit"))
                         + "|")
    lines += ["", f"Each pass: {args.warmup} warm-up calls, then {args.runs} rounds in which every file runs once, "
              "in an order rotated every round (`edgevit.bench.benchmark`); the passes start from different files. "
              "The machine is shared with other work (the load averages above), so absolute times move between "
              "passes; the ratios within a pass are the comparison. A single-threaded 1024x1024 float32 matmul in numpy "
              f"ran at {min(rates):.0f}-{max(rates):.0f} GFLOP/s over the run (best of 10, before and after each "
              "model); absolute times here are only comparable with other results at a similar rate."]
    return "\n".join(lines) + "\n"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
