"""onnxruntime against OpenVINO on the same edgevit ONNX files (not a test): what ``backend="auto"`` is based on.

For a few 224-px zoo models (random-init weights: speed does not depend on them), each ONNX
artifact ``edgevit.export`` writes is opened in one process with edgevit's ``onnxruntime`` and
``openvino`` backends at 2 threads, batch 1, and once more with OpenVINO's CPU pinning flipped
(``ENABLE_CPU_PINNING``, which the latency hint turns on: threads bound to cores), the one
OpenVINO setting measured to matter on this shared machine. Their outputs on one random input are
checked against onnxruntime's (fp32 within the fp32 artifact tolerance; int8 by SQNR and cosine,
reported), then all are warmed up and timed in interleaved rounds (the order rotating each round),
so that the load of this shared machine hits them alike. Cold start (load including the backend's
import, first run) and peak memory come from ``edgevit.bench.probe``: one fresh process per
artifact and backend.

Claims are ratios: ``openvino p50 / onnxruntime p50`` over the run, and the median of the per-round
ratios (each round's two timings taken back to back). The results file names the CPU, its SIMD
flags, what OpenVINO reports about it and the load average.

Usage::

    python benchmarks/openvino_speed.py            # four models at fp32, two of them at int8 too, two passes
    python benchmarks/openvino_speed.py cas_vit_xs --int8 '' --passes 1 --reuse

Artifacts are exported (or, with ``--reuse``, reused) with the latency benchmark's helper into
the same cache (``--cache``, layout ``<cache>/onnx-<precision>/<model>-onnx-<precision>``).
Writes ``benchmarks/results/openvino_speed.md`` and ``openvino_speed.json``. (Not ``openvino.py``: run as a
script, its folder comes first on ``sys.path`` and a file of that name would be imported as OpenVINO.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import _write, export_artifact, log  # noqa: E402 - the latency benchmark's helpers

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("cas_vit_xs", "efficientformerv2_s0", "tiny_vit_5m_224", "vit_tiny_patch16_224")
#: also at int8: a conv-heavy and a GEMM-heavy model
INT8_MODELS = ("cas_vit_xs", "vit_tiny_patch16_224")
BACKENDS = ("onnxruntime", "openvino")
#: the column of the OpenVINO variant with CPU pinning flipped from edgevit's setting
FLIPPED = "openvino-pinning-flipped"
#: CPU flags that decide the float kernels (the int8-relevant ones come with edgevit.runtime.cpu.int8_path)
FLOAT_FLAGS = ("avx", "f16c", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "fphp", "asimdhp", "sve")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgevit.environment import environment

    env = environment()
    machine = describe_machine()
    cells = [(name, "fp32") for name in args.models] + [(name, "int8") for name in args.int8 if name]
    log(f"{len(cells)} artifacts x {args.passes} passes; {env.summary()}; {machine['openvino_capabilities']}")
    rows = []
    for index in range(args.passes):  # the load of a shared machine changes: each pass meets another
        for name, precision in cells:
            try:
                rows.append({"pass": index + 1, **measure(name, precision, args)})
            except Exception as exc:  # noqa: BLE001 - one cell failing must not lose the others
                log(f"  {name} {precision}: failed: {type(exc).__name__}: {exc}")
                rows.append({"pass": index + 1, "model": name, "precision": precision,
                             "error": f"{type(exc).__name__}: {exc}"})
            write_results(rows, env, machine, args)
    write_results(rows, env, machine, args, finished=True)
    log(f"wrote {args.out}.md and .json")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(MODELS), help="zoo model names (default: four 224-px models)")
    parser.add_argument("--int8", type=lambda text: text.split(","), default=list(INT8_MODELS),
                        help="models also timed at int8, comma-separated (exporting one takes minutes; '' for none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40, help="timed rounds per artifact (each column once per round)")
    parser.add_argument("--passes", type=int, default=2, help="times every artifact is measured, a pass at a time")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-latency")
    parser.add_argument("--reuse", action="store_true", help="reuse artifacts already exported to --cache")
    parser.add_argument("--int8-calib-size", type=int, default=128, help="calibration images for int8 exports")
    parser.add_argument("--out", type=Path, default=RESULTS / "openvino_speed")
    return parser.parse_args(argv)


def describe_machine() -> dict:
    """The CPU's SIMD flags (float and int8), onnxruntime's int8 kernel path, and OpenVINO's view of the CPU."""
    import openvino as ov

    from edgevit.runtime.cpu import _cpu_flags, int8_path

    flags = _cpu_flags()
    core = ov.Core()
    return {"float_flags": [f for f in FLOAT_FLAGS if f in flags], "int8_path": int8_path().to_dict(),
            "openvino_cpu": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
            "openvino_capabilities": [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]}


def measure(name: str, precision: str, args: argparse.Namespace) -> dict:
    """Export (or reuse) one ONNX artifact, check both backends agree, probe their cold start, time them."""
    from edgevit.bench.probe import probe

    folder = export_artifact(name, f"onnx-{precision}", "onnx", precision, {}, args)
    load_before = os.getloadavg()[0]
    cold = {b: probe({"kind": "artifact", "path": str(folder), "backend": b, "threads": args.threads, "batch": 1})
            for b in BACKENDS}
    sessions, loads = open_sessions(folder, args.threads)
    try:
        pinning = {b: bool(m.backend_model.compiled.get_property("ENABLE_CPU_PINNING"))
                   for b, m in sessions.items() if b != "onnxruntime"}
        agreement = compare_outputs(sessions, precision)
        samples = time_interleaved(sessions, args.warmup, args.runs)
        versions = {b: s.backend_version for b, s in sessions.items() if b in BACKENDS}
    finally:
        for session in sessions.values():
            session.close()
    row = summarize(name, precision, samples, cold, loads, agreement, versions)
    row["openvino_cpu_pinning"] = pinning
    row["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    log(f"  {name} {precision}: onnxruntime {row['p50_ms']['onnxruntime']:.1f} ms, openvino "
        f"{row['p50_ms']['openvino']:.1f} ms: ratio {row['ratio_p50']:.2f} (paired {row['ratio_paired_median']:.2f}); "
        f"pinning flipped {row['p50_ms'][FLIPPED]:.1f} ms; load {row['load_average']}")
    return row


def open_sessions(folder: Path, threads: int) -> tuple[dict, dict]:
    """A session per backend (their loads timed: the library is already imported here), and one of
    the OpenVINO variant with CPU pinning flipped."""
    import openvino as ov

    from edgevit.runtime import BACKENDS as REGISTRY
    from edgevit.runtime import Session, load
    from edgevit.runtime.backends.openvino import DEVICE, OpenVINOModel, compile_config, read_onnx

    sessions, loads = {}, {}
    for backend in BACKENDS:
        start = time.perf_counter()
        sessions[backend] = load(folder, backend=backend, threads=threads)
        loads[backend] = time.perf_counter() - start
    edgevit_pinning = bool(sessions["openvino"].backend_model.compiled.get_property("ENABLE_CPU_PINNING"))
    path, manifest = sessions["openvino"].model_path, sessions["openvino"].manifest
    model = read_onnx(path)
    compiled = ov.Core().compile_model(model, DEVICE, {**compile_config(threads), "ENABLE_CPU_PINNING": not edgevit_pinning})
    sessions[FLIPPED] = Session(OpenVINOModel(compiled, model, threads), REGISTRY.get("openvino"), path, manifest, threads)
    return sessions, loads


def compare_outputs(sessions: dict, precision: str) -> dict:
    """openvino's output against onnxruntime's on one random input (seed 0)."""
    from edgevit.bench.inputs import random_feeds
    from edgevit.precision import TOLERANCES
    from edgevit.quantize.metrics import sqnr_db

    reference_session = sessions["onnxruntime"]
    feeds = random_feeds(reference_session.input_specs, 1)
    name = reference_session.output_specs[0].name
    reference = reference_session.run(feeds)[name].astype(np.float64)
    got = sessions["openvino"].run(feeds)[name].astype(np.float64)
    rel = float(np.abs(got - reference).max() / max(np.abs(reference).max(), 1e-12))
    cosine = float(np.dot(got.ravel(), reference.ravel()) / (np.linalg.norm(got) * np.linalg.norm(reference)))
    limit = TOLERANCES[precision].max_rel_err
    return {"max_rel_err": rel, "cosine": cosine, "sqnr_db": round(sqnr_db(reference, got), 1),
            "same_top1": bool(got.argmax() == reference.argmax()), "limit": limit,
            "within": None if limit is None else rel <= limit}


def time_interleaved(sessions: dict, warmup: int, runs: int) -> dict[str, list[float]]:
    """Warm-up, then ``runs`` rounds in which each runs once, the order rotated by one every round."""
    from edgevit.bench.inputs import random_feeds

    feeds = {b: random_feeds(s.input_specs, 1) for b, s in sessions.items()}
    for _ in range(warmup):
        for backend, session in sessions.items():
            session.run(feeds[backend])
    samples: dict[str, list[float]] = {b: [] for b in sessions}
    order = list(sessions)
    for index in range(runs):
        shift = index % len(order)
        for backend in order[shift:] + order[:shift]:
            start = time.perf_counter_ns()
            sessions[backend].run(feeds[backend])
            samples[backend].append((time.perf_counter_ns() - start) / 1e6)
    return samples


def summarize(name, precision, samples, cold, loads, agreement, versions) -> dict:
    from edgevit.bench.stats import latency_stats

    stats = {b: latency_stats(s) for b, s in samples.items()}
    paired = np.asarray(samples["openvino"]) / np.asarray(samples["onnxruntime"])
    return {
        "model": name,
        "precision": precision,
        "versions": versions,
        "p50_ms": {b: round(s.p50_ms, 3) for b, s in stats.items()},
        "min_ms": {b: round(s.min_ms, 3) for b, s in stats.items()},
        "p90_ms": {b: round(s.p90_ms, 3) for b, s in stats.items()},
        "ratio_p50": round(stats["openvino"].p50_ms / stats["onnxruntime"].p50_ms, 3),
        "ratio_min": round(stats["openvino"].min_ms / stats["onnxruntime"].min_ms, 3),
        "ratio_paired_median": round(float(np.median(paired)), 3),
        "openvino_faster_rounds": round(float(np.mean(paired < 1.0)), 3),
        "ratio_flipped_p50": round(stats[FLIPPED].p50_ms / stats["openvino"].p50_ms, 3),
        "cold": {b: {"load_s": round(c["load_s"], 3), "first_run_s": round(c["first_run_s"], 3),
                     "peak_rss_mb": None if c.get("peak_rss_bytes") is None else round(c["peak_rss_bytes"] / 2**20, 1)}
                 for b, c in cold.items()},
        "warm_load_s": {b: round(s, 3) for b, s in loads.items()},
        "agreement": agreement,
        "samples_ms": {b: [round(v, 3) for v in s] for b, s in samples.items()},
    }


def write_results(rows: list[dict], env, machine: dict, args, finished: bool = False) -> None:
    data = {"environment": env.to_dict(), "machine": machine, "finished": finished,
            "settings": {"threads": args.threads, "batch": 1, "warmup": args.warmup, "runs": args.runs,
                         "passes": args.passes, "interleaved": "each column once per round, the order rotated",
                         "weights": "random init"},
            "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    _write(args.out.with_suffix(".md"), markdown(rows, env, machine, args, finished))


def markdown(rows: list[dict], env, machine: dict, args, finished: bool) -> str:
    done = [r for r in rows if "error" not in r]
    versions = done[0]["versions"] if done else {}
    int8 = machine["int8_path"]
    lines = [
        "# onnxruntime vs OpenVINO on edgevit's ONNX files",
        "",
        f"Machine: {env.summary()}; SIMD flags {', '.join(int8['flags'] + machine['float_flags']) or '?'} "
        f"(onnxruntime's int8 kernel: {int8['u8s8_kernel']}); OpenVINO sees `{machine['openvino_cpu']}` with "
        f"capabilities {', '.join(machine['openvino_capabilities'])}. "
        + ", ".join(f"{b} {v}" for b, v in versions.items()) + ".",
        "",
        f"Batch 1, {args.threads} threads, random-init weights, {args.passes} passes over the models; per artifact "
        f"{args.runs} timed rounds after {args.warmup} warm-up, each round running every column once, back to back, "
        "the order rotated. **The machine was shared** with other work during the run (load average below, "
        "on 2 cores): absolute milliseconds are not this CPU's best; the claims are the ratios, each measured "
        "under the same load for both backends."
        + ("" if finished else " **The run is not finished; rows are added as they are measured.**"),
        "",
        "* onnxruntime: edgevit's backend (CPU EP, `ORT_ENABLE_ALL`, sequential, 2 intra-op threads, no spinning).",
        "* openvino: edgevit's backend (the ONNX file read directly, CPU, `PERFORMANCE_HINT: LATENCY`, "
        "`INFERENCE_NUM_THREADS: 2`, `INFERENCE_PRECISION_HINT: f32`).",
        "* **ratio** = openvino / onnxruntime (below 1: OpenVINO faster): of the p50s, and the median of the "
        "per-round ratios (paired); *OV faster* is the share of rounds OpenVINO won.",
        "* cold load: a fresh process per backend (`edgevit.bench.probe`), import of the backend library "
        "included, as an app starting on a device; warm load: the same file loaded again in this process.",
        "* agreement: openvino's output against onnxruntime's on one random input (relative to the output's "
        "largest value; fp32 limit 1e-4, the fp32 artifact tolerance).",
        f"* pinning: `ENABLE_CPU_PINNING`, which the latency hint sets to {pinned_word(done)} here; the column is "
        "OpenVINO with it flipped, timed in the same rounds, as a ratio to edgevit's openvino.",
        "",
        "| pass | model | precision | onnxruntime p50 ms | openvino p50 ms | ratio p50 | ratio paired | OV faster | "
        "pinning flipped | cold load ms (ort / ov) | warm load ms (ort / ov) | peak MB (ort / ov) | agreement | "
        "load avg |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['pass']} | {row['model']} | {row['precision']} | failed: {row['error'][:150]} |"
                         + " |" * 10)
            continue
        p50, cold, warm, agree = row["p50_ms"], row["cold"], row["warm_load_s"], row["agreement"]
        agreement = (f"rel {agree['max_rel_err']:.1e}" + (" ok" if agree["within"] else " **over**")
                     if agree["limit"] is not None else f"SQNR {agree['sqnr_db']:.0f} dB, cos {agree['cosine']:.4f}")
        lines.append(
            f"| {row['pass']} | {row['model']} | {row['precision']} | {p50['onnxruntime']:.1f} | {p50['openvino']:.1f} | "
            f"**{row['ratio_p50']:.2f}** | {row['ratio_paired_median']:.2f} | {row['openvino_faster_rounds']:.0%} | "
            f"{row['ratio_flipped_p50']:.2f} | "
            f"{cold['onnxruntime']['load_s'] * 1e3:.0f} / {cold['openvino']['load_s'] * 1e3:.0f} | "
            f"{warm['onnxruntime'] * 1e3:.0f} / {warm['openvino'] * 1e3:.0f} | "
            f"{cold['onnxruntime']['peak_rss_mb']:.0f} / {cold['openvino']['peak_rss_mb']:.0f} | {agreement} | "
            f"{row['load_average'][0]:.1f}-{row['load_average'][1]:.1f} |")
    loads = [value for r in done for value in r["load_average"]]
    if done:
        ratios = [r["ratio_p50"] for r in done]
        lines += ["", f"Ratio of p50s over the {len(done)} rows: {min(ratios):.2f}-{max(ratios):.2f}; 1-minute load "
                  f"average {min(loads):.1f} to {max(loads):.1f} on {env.cores_usable} cores."]
    return "\n".join(lines) + "\n"


def pinned_word(rows: list[dict]) -> str:
    values = {r["openvino_cpu_pinning"]["openvino"] for r in rows}
    return "/".join("on" if v else "off" for v in sorted(values)) or "?"


if __name__ == "__main__":
    sys.exit(main())
