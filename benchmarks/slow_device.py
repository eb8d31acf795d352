"""How steady an emulated slower device is: an agent in a CPU quota, by quota period and pinning (issue 15).

The predictor benchmark's ``slow`` device is an ``edgevit serve`` agent (1 thread) in a cgroup
with a CPU quota. On some days it agreed with itself (one measurement pass against the median of
the others within ±10% in 99% of cells), on others it did not (67%), with the same settings, and
a predictor cannot score better against it than it agrees with itself. This script asks which
quota settings give the steadiest device, in one interleaved run:

* devices (all 1 thread, all running at once as agents on loopback, asked one at a time): ``free``
  (no quota: the same process as fast as this machine lets it), and for each ``--periods`` value
  an agent with ``--quota`` cores per period, once free to move between CPUs and once pinned to
  one CPU (``FleetDevice.cpus``);
* cells: a few exported zoo models of different lengths (``--cells``), timed with
  :func:`edgevit.bench.benchmark` through the agent (device-side ``compute_ns`` p50 of ``--runs``
  calls), as ``benchmarks/predictor.py`` measures;
* ``--passes`` passes, each over every device in a fresh shuffled order.

Per device and cell: the median p50 over the passes, its slow-down against ``free``, and the
**noise floor** as the predictor benchmark computes it: each pass's p50 against the median of
the other passes, within ±10% and ±5%, and the worst. Beside it, the same noise floor of
each pass's p50 divided by ``free``'s in the same pass: what is left of the quota's own noise
once whatever slowed the whole machine in that pass (the host, other work) is divided out.

Usage::

    python benchmarks/slow_device.py --work /tmp/predbench     # reuses benchmarks/predictor.py's artifacts

Writes ``benchmarks/results/slow_device.md`` and ``.json``; needs root and the cgroup v1 ``cpu``
controller (it says so and stops otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predictor import BACKEND_OF, RESULTS, export_cell, log, pass_errors  # noqa: E402

DEFAULT_CELLS = ("efficientformerv2_s0:onnx:int8", "cas_vit_xs:onnx:fp32", "vit_tiny_patch16_224:tflite:fp32",
                 "vit_small_patch16_224:onnx:fp32")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgevit.cluster.fleet import Fleet, FleetDevice, cgroups_available, shortest_period_ms
    from edgevit.environment import environment

    if not cgroups_available():
        print("slow_device.py needs root and the cgroup v1 cpu controller (/sys/fs/cgroup/cpu)", file=sys.stderr)
        return 2
    periods = [p for p in args.periods if p >= shortest_period_ms(args.quota)]
    cells = [tuple(c.split(":")) for c in args.cells]
    paths = {c: export_cell(c[0], c[1], c[2], args) for c in cells}
    pin = max(os.sched_getaffinity(0))
    devices = [FleetDevice("free", threads=1)]
    for period in periods:
        devices.append(FleetDevice(f"p{period:g}", threads=1, cpu_quota=args.quota, cpu_period_ms=period))
        devices.append(FleetDevice(f"p{period:g}-pinned", threads=1, cpu_quota=args.quota, cpu_period_ms=period,
                                   cpus=(pin,)))
    env = environment()
    results = {"environment": env.to_dict(), "quota": args.quota, "periods": periods, "pinned_cpu": pin,
               "runs": args.runs, "warmup": args.warmup, "passes": args.passes,
               "cells": [":".join(c) for c in cells], "load_average_start": list(os.getloadavg()),
               "p50_ms": {d.name: {":".join(c): [] for c in cells} for d in devices}}
    shuffle = random.Random(0)
    log(f"{len(devices)} devices x {len(cells)} cells x {args.passes} passes; {env.summary()}")
    with Fleet(args.work / "slow-device-fleet", devices) as fleet:
        for done in range(args.passes):
            order = [d.name for d in devices]
            shuffle.shuffle(order)
            start = time.perf_counter()
            for name in order:
                for cell, p50 in zip(cells, measure(fleet, name, [paths[c] for c in cells], args), strict=True):
                    results["p50_ms"][name][":".join(cell)].append(p50)
            log(f"pass {done + 1}/{args.passes} in {time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.2f}")
    results["load_average_end"] = list(os.getloadavg())
    results["summary"] = summarise(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    log(f"wrote {args.out}.md and .json")
    return 0


def measure(fleet, name: str, paths: list[Path], args) -> list[float]:
    """One pass of ``name``'s agent over the cells: each cell's device-side p50 (ms)."""
    from edgevit.bench import BenchOptions, benchmark

    report = benchmark(paths, BenchOptions(runs=args.runs, warmup=args.warmup, memory=False), progress=False,
                       remote={"url": f"127.0.0.1:{fleet.ports[name]}"})
    return [r.latency.p50_ms for r in report.results]


def summarise(results: dict) -> dict:
    """Per device and cell: median, slow-down against ``free``, and the noise floors (raw and against ``free``)."""
    free = results["p50_ms"]["free"]
    out = {}
    for name, cells in results["p50_ms"].items():
        rows = {}
        for cell, p50s in cells.items():
            relative = [v / f for v, f in zip(p50s, free[cell], strict=True)]
            rows[cell] = {"median_ms": float(np.median(p50s)), "slowdown": float(np.median(p50s) / np.median(free[cell])),
                          "pass_errors": pass_errors(p50s), "relative_pass_errors": pass_errors(relative)}
        every = [e for r in rows.values() for e in r["pass_errors"]]
        against = [e for r in rows.values() for e in r["relative_pass_errors"]]
        out[name] = {"cells": rows, "noise": _floor(every), "noise_against_free": _floor(against) if name != "free" else None}
    return out


def _floor(errors: list[float]) -> dict:
    e = np.abs(np.asarray(errors))
    return {"within_10": float(np.mean(e <= 0.10)), "within_5": float(np.mean(e <= 0.05)),
            "median": float(np.median(e)), "worst": float(e.max()), "count": int(e.size)}


def markdown(results: dict) -> str:
    env = results["environment"]
    cells = results["cells"]
    start, end = results["load_average_start"], results["load_average_end"]
    lines = ["# An emulated slower device: how steady, by quota period and pinning (issue 15)", "",
             f"Written by `benchmarks/slow_device.py`. Machine: {env.get('cpu_model', '?')}, "
             f"{env.get('cores_usable', '?')} usable cores; load average at the start {start[0]:.2f}, at the end {end[0]:.2f}.",
             f"Every device is an `edgevit serve` agent with 1 thread; `pN`: a quota of {results['quota']:g} core per "
             f"N ms period (cgroup v1 `cpu`), `-pinned`: its process pinned to CPU {results['pinned_cpu']}; `free`: no "
             f"quota. Each pass asks every device in a shuffled order for the p50 of {results['runs']} calls of each "
             f"cell (device-side `compute_ns`, after {results['warmup']} warm-up calls); {results['passes']} passes.", "",
             "Noise floor: each pass's p50 against the median of the other passes (as `benchmarks/predictor.py` "
             "computes it), over every cell and pass; *against free*: the same of each pass's p50 divided by "
             "`free`'s p50 of the same cell in the same pass.", "",
             "| device | within ±10% | within ±5% | median | worst | against free: within ±10% | within ±5% | worst | "
             + " | ".join(f"{c} ms (x free)" for c in cells) + " |",
             "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(cells)]
    for name, row in results["summary"].items():
        n, r = row["noise"], row["noise_against_free"]
        against = (f"{r['within_10']:.0%} | {r['within_5']:.0%} | {r['worst']:.1%}" if r else "- | - | -")
        per_cell = " | ".join(f"{row['cells'][c]['median_ms']:.2f} (x{row['cells'][c]['slowdown']:.2f})" for c in cells)
        lines.append(f"| {name} | {n['within_10']:.0%} | {n['within_5']:.0%} | {n['median']:.1%} | {n['worst']:.1%} | "
                     f"{against} | {per_cell} |")
    lines += ["", "Each pass's p50 (ms), by device and cell:", ""]
    for name, by_cell in results["p50_ms"].items():
        lines.append(f"- {name}: " + "; ".join(f"{c} " + " / ".join(f"{v:.1f}" for v in p50s)
                                             for c, p50s in by_cell.items()))
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-predictor",
                        help="where the artifacts are exported (benchmarks/predictor.py's --work: reused)")
    parser.add_argument("--cells", nargs="+", default=list(DEFAULT_CELLS), help="MODEL:TARGET:PRECISION")
    parser.add_argument("--quota", type=float, default=0.5, help="cores per period")
    parser.add_argument("--periods", type=float, nargs="+", default=[2.0, 5.0, 10.0, 20.0],
                        help="quota periods (ms); those below the kernel's shortest for --quota are left out")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--out", type=Path, default=RESULTS / "slow_device")
    args = parser.parse_args(argv)
    bad = [c for c in args.cells if len(c.split(":")) != 3 or c.split(":")[1] not in BACKEND_OF]
    if bad:
        parser.error(f"--cells are MODEL:TARGET:PRECISION with TARGET one of {', '.join(BACKEND_OF)}, got {bad}")
    return args


if __name__ == "__main__":
    sys.exit(main())
