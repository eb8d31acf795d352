"""Does a LiteRT call cost more after a gap than back to back? The probe's calibration calls, in-process (issue 15).

Not a test. Through an agent every call of a calibration model comes after a gap (the request's
round trip), and a one-layer model pays whatever a call after a gap costs for its one layer; inside
a model the layers run back to back. Here the probe's own one-layer ``FULLY_CONNECTED`` models
(fp32, from ``benchmarks/predictor.py --work W``'s ``W/calibration-litert``) are called in this
process, the whole call as the runtime makes it (input copied in, ``invoke()``, output copied out),
back to back and after a busy-wait gap of each ``--gaps-ms``, on 1 and 2 threads, interleaved over
passes. With ``--profile`` the profile's figure for the same kernel (timed through the agent) is
shown beside.

Usage::

    python benchmarks/litert_call_gap.py --calibration /tmp/predbench/calibration-litert \\
        --profile /tmp/predbench/profiles/here-litert.json     # writes benchmarks/results/litert_call_gap.md/.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, settings, stamp, write  # noqa: E402


def linear_models(folder: Path, tokens: int) -> dict[tuple[int, int, int], Path]:
    """The single-layer fp32 linear calibration models of ``tokens`` rows in ``folder``, by (M, K, N)."""
    found = {}
    for model in sorted(folder.glob("calib*-linear-fp32-*")):
        if "x" in model.name.split("-", 1)[0]:  # calib001x4: a chain, not one layer
            continue
        manifest = json.loads((model / "manifest.json").read_text())
        m, k = manifest["inputs"][0]["shape"][-2:]
        n = manifest["outputs"][0]["shape"][-1]
        if m == tokens:
            found[(m, k, n)] = model / manifest.get("model_file", "model.tflite")
    return found


def p50_ms(call, calls: int, gap_s: float) -> float:
    for _ in range(10):
        call()
    times = []
    for _ in range(calls):
        if gap_s:
            end = time.perf_counter() + gap_s
            while time.perf_counter() < end:
                pass
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def caller(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    x = np.random.default_rng(0).random(inp["shape"], dtype=np.float32)

    def call():
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        interpreter.get_tensor(out["index"])
    return call


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=Path, required=True, help="a probe's calibration-litert folder")
    parser.add_argument("--profile", type=Path, help="a LiteRT profile of this machine, for its figures beside")
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--gaps-ms", type=float, nargs="+", default=[0.0, 0.3, 2.0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "litert_call_gap")
    args = parser.parse_args(argv)

    models = linear_models(args.calibration, args.tokens)
    if not models:
        raise SystemExit(f"no single-layer fp32 linear models of {args.tokens} tokens in {args.calibration}: "
                         "run benchmarks/predictor.py --work W first and pass W/calibration-litert")
    profile = {}
    if args.profile:
        for t in json.loads(args.profile.read_text())["timings"]:
            if t["kind"] == "linear" and t["dtype"] == "fp32" and not any(e["kind"] == "linear" for e in t["extra"]):
                profile[(t["dims"]["M"], t["dims"]["K"], t["dims"]["N"])] = t["ms"]
    callers = {(dims, th): caller(path, th) for dims, path in models.items() for th in args.threads}
    start = stamp()
    timings: dict[str, list[float]] = {}
    for p in range(args.passes):
        for (dims, th), call in callers.items():  # interleaved: every model, thread count and gap in each pass
            for gap in args.gaps_ms:
                key = f"{dims[0]}x{dims[1]}x{dims[2]}|{th}|{gap:g}"
                timings.setdefault(key, []).append(p50_ms(call, args.calls, gap / 1e3))
        print(f"pass {p + 1}/{args.passes} done", flush=True)
    rows = []
    for dims in models:
        for th in args.threads:
            ms = {gap: statistics.median(timings[f"{dims[0]}x{dims[1]}x{dims[2]}|{th}|{gap:g}"]) for gap in args.gaps_ms}
            rows.append({"dims": list(dims), "threads": th, "p50_ms": {f"{g:g}": v for g, v in ms.items()},
                         "passes_ms": {f"{g:g}": timings[f"{dims[0]}x{dims[1]}x{dims[2]}|{th}|{g:g}"] for g in args.gaps_ms},
                         "profile_ms": profile.get(dims)})
    write(args.out, {"environment": stamp(start), "settings": settings(args), "rows": rows}, markdown)
    return 0



def markdown(results: dict) -> str:
    env, s = results["environment"], results["settings"]
    gaps = [f"{g:g}" for g in s["gaps_ms"]]
    lines = ["# LiteRT calls back to back and after a gap", "",
             f"Written by `benchmarks/litert_call_gap.py`. Machine: {env['cpu']}; load average at the start "
             f"{', '.join(f'{x:.2f}' for x in env['load_average_start'])}, at the end "
             f"{', '.join(f'{x:.2f}' for x in env['load_average_end'])}; {env['date']}.", "",
             f"The probe's one-layer fp32 FULLY_CONNECTED calibration models, called in-process (copy in, `invoke()`, "
             f"copy out), p50 of {s['calls']} calls, median of {s['passes']} interleaved passes; a gap is a busy wait "
             "before each call. `profile`: the same kernel in the profile, timed through the agent.", "",
             "| M, K, N | threads | " + " | ".join(f"gap {g} ms" for g in gaps) + f" | gap {gaps[-1]} / 0 | profile ms |",
             "|---|---:|" + "---:|" * (len(gaps) + 2)]
    for row in results["rows"]:
        ms = [row["p50_ms"][g] for g in gaps]
        prof = f"{row['profile_ms']:.3f}" if row["profile_ms"] is not None else "-"
        lines.append(f"| {', '.join(map(str, row['dims']))} | {row['threads']} | " + " | ".join(f"{v:.3f}" for v in ms)
                     + f" | x{ms[-1] / ms[0]:.2f} | {prof} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
