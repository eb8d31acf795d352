"""The ONNX export's rewrites (edgevit.export.targets.onnx_forms) against the file without them (not a test).

For each model: edgevit's ONNX fp32 export as it is (a convolution split on its channels
written as one convolution per part), and the same export with the rewrite step turned off;
onnxruntime's NCHWc reorders in each (from its own optimised graph), the largest output
difference between the two, and their p50 latency in edgevit's onnxruntime session (2 threads,
no spinning), timed alternately in one process, with the median of the paired per-round ratios.

Usage::

    python benchmarks/onnx_forms.py                       # cas_vit_xs and cas_vit_s
    python benchmarks/onnx_forms.py cas_vit_t --rounds 300

Writes ``benchmarks/results/onnx_forms.md`` and ``onnx_forms.json``.
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["cas_vit_xs", "cas_vit_s"])
    parser.add_argument("--rounds", type=int, default=200, help="timed rounds (each runs both files once)")
    parser.add_argument("--out", type=Path, default=RESULTS / "onnx_forms")
    args = parser.parse_args(argv)
    from edgevit.environment import environment

    env = environment()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevit-onnx-forms-") as work:
        for name in args.models:
            rows.append(measure(name, Path(work), args.rounds))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    data = {"environment": env.to_dict(), "rounds": args.rounds, "rows": rows}
    from edgevit._files import write_json, write_text

    write_json(args.out.with_suffix(".json"), data)
    write_text(args.out.with_suffix(".md"), markdown(data, env.summary()))
    return 0


def measure(name: str, work: Path, rounds: int) -> dict:
    import torch

    import edgevit.export.targets.onnx as onnx_target
    from edgevit.export import export
    from edgevit.models import create_model
    from edgevit.runtime import load

    torch.manual_seed(0)
    model = create_model(name).eval()  # one instance: both files hold the same weights
    paths = {}
    rewrite = onnx_target.faster_forms
    for label, step in (("rewritten", rewrite), ("plain", lambda path: {})):
        onnx_target.faster_forms = step
        try:
            artifact = export(model, target="onnx", out=work / label, verify=False, quiet=True)
        finally:
            onnx_target.faster_forms = rewrite
        paths[label] = Path(artifact.path)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sessions = {label: load(path, threads=2) for label, path in paths.items()}
    outputs = {label: next(iter(s.run({"input": x}).values())) for label, s in sessions.items()}
    for session in sessions.values():
        for _ in range(5):
            session.run({"input": x})
    times: dict[str, list[float]] = {label: [] for label in sessions}
    for r in range(rounds):
        for label in (("plain", "rewritten") if r % 2 else ("rewritten", "plain")):
            start = time.perf_counter()
            sessions[label].run({"input": x})
            times[label].append(time.perf_counter() - start)
    ratios = np.array(times["rewritten"]) / np.array(times["plain"])
    reference = outputs["plain"]
    return {
        "model": name, "load_average": os.getloadavg()[0],
        "reorders": {label: reorders(path) for label, path in paths.items()},
        "max_rel_diff": float(np.abs(outputs["rewritten"] - reference).max() / np.abs(reference).max()),
        "p50_ms": {label: float(np.median(t)) * 1e3 for label, t in times.items()},
        "paired_ratio": float(np.median(ratios)), "ratio_iqr": [float(v) for v in np.percentile(ratios, [25, 75])],
    }


def reorders(folder: Path) -> dict[str, int]:
    """ReorderInput / ReorderOutput nodes in onnxruntime's optimised graph of the artifact's file."""
    from edgevit.artifact import read_manifest
    from edgevit.predict.layout import onnxruntime_reorders

    nodes = onnxruntime_reorders(folder / read_manifest(folder).model_file)
    return {"in": nodes["ReorderInput"], "out": nodes["ReorderOutput"]}


def markdown(data: dict, machine: str) -> str:
    lines = ["# ONNX rewrites: the export with and without them", "",
             f"Written by `benchmarks/onnx_forms.py`. {machine}. edgevit's onnxruntime session (2 threads, no "
             f"spinning), {data['rounds']} rounds, the two files alternating in one process; ratio = rewritten / "
             "plain (below 1: the rewrite is faster), the median of the per-round ratios and its quartiles.", "",
             "| model | reorders in/out, plain | rewritten | max rel diff | p50 ms plain | rewritten | paired ratio | "
             "quartiles | load |", "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in data["rows"]:
        plain, new = r["reorders"]["plain"], r["reorders"]["rewritten"]
        lines.append(f"| {r['model']} | {plain['in']} / {plain['out']} | {new['in']} / {new['out']} | "
                     f"{r['max_rel_diff']:.1e} | {r['p50_ms']['plain']:.2f} | {r['p50_ms']['rewritten']:.2f} | "
                     f"{r['paired_ratio']:.3f} | {r['ratio_iqr'][0]:.3f}-{r['ratio_iqr'][1]:.3f} | "
                     f"{r['load_average']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
