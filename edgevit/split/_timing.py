"""Timing exported artifacts in a clean process: ``python -m edgevit.split._timing FOLDER...``.

Every artifact is loaded with ``edgevit.runtime`` and run on one random input of its own
input shape, in rounds that visit every artifact in turn; the minimum and the median time
per artifact (in ms) are printed as JSON. The minimum is the figure plans use: on a shared
machine, longer runs are preempted by other processes more often than short ones, which
inflates the median of a large model more than that of a small piece (the minimum is what a
dedicated device approaches; ``timeit`` recommends it for the same reason). A fresh interpreter that imports no torch is what a device runs, and
it keeps the timings free of whatever the planning process did before (training leaves
state behind that was seen to slow some pieces several-fold).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def time_artifacts(folders: list[str], backend: str, threads: int | None, rounds: int, warmup: int = 3) -> dict:
    """``{"min_ms": {folder: ms}, "median_ms": {folder: ms}}``."""
    from edgevit.runtime import load

    sessions = {folder: load(folder, backend=backend, threads=threads) for folder in folders}
    rng = np.random.default_rng(0)
    feeds = {}
    for folder, session in sessions.items():
        spec = session.input_specs[0]
        shape = tuple(1 if d is None else d for d in spec.shape)
        feeds[folder] = {spec.name: rng.standard_normal(shape).astype(spec.dtype)}
    times: dict[str, list[float]] = {folder: [] for folder in folders}
    try:
        for round_ in range(warmup + rounds):
            for folder, session in sessions.items():
                start = time.perf_counter()
                session.run(feeds[folder])
                if round_ >= warmup:
                    times[folder].append((time.perf_counter() - start) * 1e3)
    finally:
        for session in sessions.values():
            session.close()
    return {"min_ms": {folder: float(np.min(values)) for folder, values in times.items()},
            "median_ms": {folder: float(np.median(values)) for folder, values in times.items()}}


def measure_in_subprocess(folders: list[str], backend: str, threads: int | None, rounds: int,
                          timeout: float = 900.0) -> dict:
    """Run :func:`time_artifacts` in a fresh interpreter and return what it returns."""
    import subprocess

    from edgevit.errors import EdgeVitError

    command = [sys.executable, "-m", "edgevit.split._timing", "--backend", backend, "--rounds", str(rounds), *folders]
    if threads is not None:
        command += ["--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise EdgeVitError(f"timing the exported pieces failed: {lines[-1] if lines else 'no message'}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgevit.split._timing")
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    try:
        print(json.dumps(time_artifacts(args.folders, args.backend, args.threads, args.rounds)))
    except Exception as exc:  # noqa: BLE001 - one line for the parent
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
