"""Predicted against measured latency: device profiles and the kernel predictor (issue 15), with
today's single-number GMACs model beside them (not a test).

Devices are ``edgevit serve`` agents on loopback (:mod:`edgevit.cluster.fleet`):

* ``here``: this machine, 2 threads, no quota;
* ``slow``: 1 thread in a cgroup with a CPU quota (0.5 core, 20 ms period: a short period
  slows every call alike, where the default 100 ms runs short calls at full speed; of 2, 5, 10
  and 20 ms, 20 ms agreed with itself best in ``benchmarks/results/slow_device.md``), when this
  machine allows cgroups (root and the v1 ``cpu`` controller); the results say if it did not.

For each device and backend (onnxruntime for ``.onnx``, LiteRT for ``.tflite``):

1. **Probe**: :func:`edgevit.probe.probe_remote` times the calibration set (``--preset``, fp32
   and int8; each kernel alone and, where its kind chains, in a chain of ``--chain`` copies)
   through the agent, device-side, one sweep at a time (``--probe-passes`` of them, each in its
   own order); :func:`edgevit.predict.merge_profiles` makes the profile of them. The
   calibration files are exported once per backend and reused for the second device.
2. **Measure**: every selected zoo model at 224 px x {onnx, tflite} x {fp32, int8} (random-init
   weights: timing does not depend on them; int8 calibrated on 8 images) with
   :func:`edgevit.bench.benchmark` through the same agent: the p50 of the agent's device-side
   ``compute_ns``, the four cells of a model interleaved, in ``--passes`` passes over all the
   models; a cell's measured time is the median of its passes. Each probe sweep runs just
   before a measurement pass, so that a device drifting over minutes (this VM does, by 10-30%)
   shows in the profile and the measurements alike instead of pricing the kernels in one phase
   and the models in another; the **drift** table gives each pass's speed against the median.
   Each pass against the median of the others is the **noise floor**: how often the device
   agrees with itself within ±10%, which bounds what any predictor can score against one
   measurement. The probe also timed each measured artifact (step 3: it is a reference model),
   its way (back to back, the mean over a window; the measurement is one request at a time, the
   p50): that timing against the measured one is the best a predictor fitted on the probe's
   timings could do, even with every kernel priced exactly.
3. **Predict**: :func:`edgevit.predict.predict` with the device's profile. The kernels are fitted
   on the calibration models only (generic sizes); the probe also timed every measured cell's
   artifact as a **reference model** (in the same sweeps), and the fit scales a prediction's
   kernels by two factors fitted to the references of its precision, one for the token kinds and
   one for the rest, damped toward the references' median measured / predicted ratio (since
   predictor version 10; one median factor before), ``fit(profile, leave_out=family)``: the predicted model's family contributes nothing
   (leave-one-family-out). The kernels' sum alone (no scale) is reported beside it.
4. **Baseline**: today's model, ``ms = GMACs x (ms per GMAC)``, one number per device, target and
   precision, fitted on the *measured* cells of the other families (leave-one-family-out): the
   best a single number can do, and better than a hand-typed ``speed``.

Usage::

    python benchmarks/predictor.py --work /tmp/predbench                 # the default models
    python benchmarks/predictor.py --work /tmp/predbench --models '*'    # every 224-px zoo model
    python benchmarks/predictor.py --work /tmp/predbench --reuse         # reuse profiles and artifacts
    python benchmarks/predictor.py --work /tmp/predbench --repredict     # the same measurements, predicted again

``--repredict`` times nothing: it reads the results file, the saved profiles and the artifacts
(the reference models' kernels mapped again, so that a change to the fusion rules reaches the scale),
and recomputes every prediction with the predictor as it is now (the results say which version
predicted, and that the measurements are older).

Writes ``benchmarks/results/predictor.md`` and ``predictor.json``.
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CELLS = (("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8"))
BACKEND_OF = {"onnx": "onnxruntime", "tflite": "litert"}
#: two models of each family, small and medium (--models '*' for every 224-px model)
DEFAULT_MODELS = ("cas_vit_xs", "cas_vit_s", "efficientformer_l1", "efficientformerv2_s0", "efficientformerv2_s1",
                  "tiny_vit_5m_224", "vit_tiny_patch16_224", "vit_small_patch16_224")
WITHIN = 0.10


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 1 <= args.probe_passes <= args.passes:
        print(f"--probe-passes must be 1 to --passes ({args.passes}), got {args.probe_passes}", file=sys.stderr)
        return 2
    if args.repredict:
        return repredict(args)
    from edgevit.cluster.fleet import Fleet, FleetDevice, cgroups_available
    from edgevit.environment import environment

    names = select_models(args.models)
    env = environment()
    log(f"{len(names)} models x {len(CELLS)} cells; {env.summary()}")
    for backend in BACKEND_OF.values():  # every export first, so that the timings run close together
        export_calibration(backend, args)
    artifacts = {(n, t, p): export_cell(n, t, p, args) for n in names for t, p in CELLS}
    devices = [FleetDevice("here", threads=2)]
    if args.quota and cgroups_available():
        devices.append(FleetDevice("slow", threads=1, cpu_quota=args.quota, cpu_period_ms=args.period_ms))
    elif args.quota:
        log("no cgroups here (needs root and the v1 cpu controller): the slow device is left out")
    results: dict = {"environment": env.to_dict(), "models": names, "preset": args.preset, "devices": {}}
    with Fleet(args.work / "fleet", devices) as fleet:
        for device in devices:
            url = f"127.0.0.1:{fleet.ports[device.name]}"
            results["devices"][device.name] = run_device(device, url, artifacts, args)
            write_results(results, args)
    write_results(results, args, finished=True)
    log(f"wrote {args.out}.md and .json")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="zoo models (glob patterns)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgevit-predictor")
    parser.add_argument("--reuse", action="store_true", help="reuse profiles already in --work")
    parser.add_argument("--preset", default="standard", help="calibration preset (quick, standard)")
    parser.add_argument("--probe-rounds", type=int, default=20)
    parser.add_argument("--probe-passes", type=int, default=3,
                        help="sweeps over the calibration set, one before each of the first measurement passes "
                             "(at most --passes)")
    parser.add_argument("--chain", type=int, default=4, help="copies in a chained calibration model (1: none)")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per model cell and pass")
    parser.add_argument("--passes", type=int, default=3,
                        help="measurement passes over every model (each cell's measured time is their median; "
                             "pass against pass is the noise floor)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quota", type=float, default=0.5, help="the slow device's cores (0: no slow device)")
    parser.add_argument("--period-ms", type=float, default=20.0, help="the slow device's quota period")
    parser.add_argument("--no-references", dest="references", action="store_false",
                        help="probe without reference models (predictions are then the kernels' sum alone)")
    parser.add_argument("--out", type=Path, default=RESULTS / "predictor")
    parser.add_argument("--repredict", action="store_true",
                        help="predict the measured cells of --out again with the saved profiles (times nothing)")
    return parser.parse_args(argv)


def select_models(patterns: list[str]) -> list[str]:
    from edgevit.models import list_models, model_info

    names = [n for n in list_models(include_test=False) if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return [n for n in names if model_info(n).input_size[-1] == 224]


def export_cell(name: str, target: str, precision: str, args) -> Path:
    """One model cell's artifact under ``--work/artifacts`` (exported once, reused after)."""
    from edgevit.export import export

    folder = artifact_path(args.work, name, target, precision)
    out = folder.parent
    if (folder / "manifest.json").exists():
        return folder
    start = time.perf_counter()
    extra = {"calib_size": 8} if precision == "int8" else {}  # timing does not depend on the calibration
    export(name, target=target, precision=precision, out=out, verify=False, quiet=True, progress=False, **extra)
    log(f"  exported {folder.name} in {time.perf_counter() - start:.0f} s")
    return folder


def artifact_path(work: Path, name: str, target: str, precision: str) -> Path:
    """Where one model cell's artifact lives under ``--work`` (written by :func:`export_cell`, read by ``--repredict``)."""
    return work / "artifacts" / f"{target}-{precision}" / f"{name}-{target}-{precision}"


def export_calibration(backend: str, args) -> None:
    """Export the calibration set into the folder the probes reuse (the probe's own order and names)."""
    from edgevit.predict.calibration import calibration_kernels
    from edgevit.predict.fusion import RULES
    from edgevit.probe.calibrate import calibration_models, export_calibration_model

    kernels = tuple(k for dtype in ("fp32", "int8") for k in calibration_kernels(args.preset, dtype))
    models = calibration_models(kernels, args.chain)
    start = time.perf_counter()
    for index, kernel, copies in models:
        if kernel.kind not in RULES.get(backend).absent:
            export_calibration_model(kernel, index, backend, args.work / f"calibration-{backend}", copies)
    log(f"calibration set for {backend}: {len(models)} models of {len(kernels)} kernels ready in "
        f"{time.perf_counter() - start:.0f} s")


def run_device(device, url: str, artifacts: dict, args) -> dict:
    """Probe and measure one device: each probe pass followed by a measurement pass over every model."""
    row: dict = {"quota": device.cpu_quota, "period_ms": device.cpu_period_ms if device.cpu_quota else None,
                 "threads": device.threads, "probes": {}, "cells": [], "drift": []}
    backends = ("onnxruntime", "litert")
    reused = {b: reused_profile(device.name, b, args) for b in backends}
    pass_results: dict[str, list] = {b: [] for b in backends}
    names = sorted({n for n, _, _ in artifacts})
    passes: dict[str, list] = {name: [] for name in names}
    failed: dict[str, str] = {}
    for done in range(args.passes):  # probe pass, then every model once: drift reaches profile and models alike
        for backend in backends:
            if reused[backend] is None and done < args.probe_passes:
                pass_results[backend].append(probe_pass(device.name, url, backend, done, artifacts, args))
        log(f"{device.name}: measurement pass {done + 1}/{args.passes}")
        for name in names:
            if name in failed:
                continue
            try:
                passes[name].append(measure_model(name, url, artifacts, args))
            except Exception as exc:  # noqa: BLE001 - one model failing must not lose the others
                traceback.print_exc()
                failed[name] = f"{type(exc).__name__}: {exc}"
    models = {}
    for backend in backends:
        profile, info = reused[backend] or save_probe(device.name, backend, pass_results[backend], args)
        row["probes"][backend] = info
        models[backend] = CostModels(profile)
    for name in names:
        if name in failed:
            row["cells"].append({"model": name, "error": failed[name]})
        else:
            row["cells"] += predict_model(name, passes[name], artifacts, models)
    row["drift"] = drift({b: [r.profile for r in results] for b, results in pass_results.items()}, row["cells"])
    add_baseline(row["cells"])
    return row


def reused_profile(device: str, backend: str, args):
    """With --reuse, the saved profile and its probe facts (None: probe again)."""
    from edgevit.predict import load_profile

    path = args.work / "profiles" / f"{device}-{backend}.json"
    info_path = path.with_suffix(".probe.json")
    if args.reuse and path.exists() and info_path.exists():
        return load_profile(path), json.loads(info_path.read_text())
    return None


def probe_pass(device: str, url: str, backend: str, done: int, artifacts: dict, args):
    """One sweep over the calibration set and the reference models (every measured cell of the
    backend's target) through the device's agent, in its own shuffled order."""
    from edgevit.probe import probe_remote

    log(f"probing {device} with {backend} ({args.preset}), pass {done + 1}/{args.probe_passes}")
    references = tuple(path for (_, target, _), path in sorted(artifacts.items()) if BACKEND_OF[target] == backend)
    return probe_remote(url, backend, preset=args.preset, precisions=("fp32", "int8"), rounds=args.probe_rounds,
                        passes=1, seed=done + 1, chain=args.chain, workdir=args.work / f"calibration-{backend}",
                        references=references if args.references else (), progress=True)


def save_probe(device: str, backend: str, results: list, args):
    """The probe passes merged into the device's profile (saved with the passes and the probe's facts)."""
    from edgevit.predict import merge_profiles, save_profile

    profiles = [r.profile for r in results]
    profile = merge_profiles(profiles)
    path = save_profile(profile, args.work / "profiles" / f"{device}-{backend}.json")
    for i, one in enumerate(profiles):
        save_profile(one, path.with_name(f"{path.stem}.pass{i + 1}.json"))
    info = {"seconds": round(sum(r.seconds for r in results), 1), "timings": len(profile.timings),
            "passes": len(profiles), "skipped": len(results[0].skipped), "profile_bytes": path.stat().st_size, "load_average": list(os.getloadavg())}
    path.with_suffix(".probe.json").write_text(json.dumps(info))
    log(f"  {device} {backend}: {info}")
    return profile, info


def drift(pass_profiles: dict[str, list], cells: list[dict]) -> list[dict]:
    """How fast the device was in each pass, against its own median: the probe pass (median over the
    calibration models of the pass's time / the merged time) and the measurement pass after it
    (median over the cells of the pass's p50 / the cell's median). Above 1: a slow phase."""
    import numpy as np

    from edgevit.predict import merge_profiles

    merged = {backend: {(t.kernel, t.extra): t.ms for t in merge_profiles(profiles).timings}
              for backend, profiles in pass_profiles.items() if profiles}
    rows = []
    count = max([len(v) for v in pass_profiles.values()] + [len(c.get("passes_ms", [])) for c in cells] + [0])
    for i in range(count):
        row: dict = {"pass": i + 1}
        for backend, profiles in pass_profiles.items():
            if i < len(profiles):
                ms = merged[backend]
                row[f"probe {backend}"] = float(np.median([t.ms / ms[t.kernel, t.extra] for t in profiles[i].timings
                                                           if ms[t.kernel, t.extra] > 0]))
        for target in sorted({c["target"] for c in cells if "passes_ms" in c}):
            ratios = [c["passes_ms"][i] / c["measured_ms"] for c in cells
                      if c.get("target") == target and i < len(c.get("passes_ms", []))]
            if ratios:
                row[f"models {target}"] = float(np.median(ratios))
        rows.append(row)
    return rows


def repredict(args) -> int:
    """Recompute every cell's prediction from the saved profiles and artifacts; the measurements stay."""
    from edgevit.predict import load_profile

    results = json.loads(args.out.with_suffix(".json").read_text())
    for device, row in results["devices"].items():
        models = {b: CostModels(remapped(load_profile(args.work / "profiles" / f"{device}-{b}.json"), args.work))
                  for b in row["probes"]}
        cells = [c for c in row["cells"] if "error" in c]
        for cell in cells:
            path = artifact_path(args.work, cell["model"], cell["target"], cell["precision"])
            cell.update(predicted_fields(path, models[BACKEND_OF[cell["target"]]], cell["family"], cell["measured_ms"],
                                         cell["model"], cell["precision"]))
    results["repredicted_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_results(results, args, finished=True)
    log(f"predicted {args.out}.md and .json again")
    return 0


def remapped(profile, work: Path):
    """``profile`` with its reference models' kernels mapped again by this predictor (the probe recorded
    them with the fusion rules of its day; their measured times stay)."""
    from dataclasses import replace

    from edgevit.predict import kernel_counts
    from edgevit.probe.calibrate import TARGETS

    return replace(profile, references=tuple(
        replace(r, kernels=kernel_counts(artifact_path(work, r.model, TARGETS[profile.backend], r.precision),
                                         profile.backend, profile.cpu_flags))
        for r in profile.references))


class CostModels:
    """A profile's fits: one per family left out of the scale (leave-one-family-out), and one
    without reference models (the kernels' sum alone), each fitted once."""

    def __init__(self, profile) -> None:
        self.profile, self.fits = profile, {}

    def __call__(self, family: str | None):
        from dataclasses import replace

        from edgevit.predict import fit

        if family not in self.fits:
            self.fits[family] = (fit(self.profile, leave_out=family) if family is not None
                                 else fit(replace(self.profile, references=())))
        return self.fits[family]


def predicted_fields(path: Path, models: CostModels, family: str, measured: float, model: str, precision: str) -> dict:
    """A cell's prediction fields for the artifact at ``path``: the profile fitted with ``family``'s
    reference models left out, and the kernels' sum alone beside it; and the probe's own timing of
    the cell's artifact (``model`` in ``precision``), when the profile holds it as a reference model."""
    from edgevit.predict import predict

    prediction, alone = predict(path, models(family)), predict(path, models(None))
    own = [r.ms for r in models.profile.references if (r.model, r.precision) == (model, precision)]
    probed = {"probe_ms": own[0], "probe_error": own[0] / measured - 1} if own else {}
    return {**probed, "predicted_ms": prediction.total_ms, "error": prediction.total_ms / measured - 1,
            "scale": prediction.scale, "scale_references": prediction.scale_references,
            "group_scale": list(prediction.group_scale) if prediction.group_scale else None,
            "range_ms": list(prediction.range_ms) if prediction.range_ms else None,
            "kernels_ms": alone.total_ms, "kernels_error": alone.total_ms / measured - 1,
            "complete": prediction.complete, "unknown": dict(prediction.unknown),
            "uncalibrated": dict(prediction.uncalibrated), "approximated": dict(prediction.approximated),
            "by_kind": prediction.by_kind(), "predictor_version": prediction.predictor_version}


def measure_model(name: str, url: str, artifacts: dict, args) -> list[dict]:
    """One pass over the four cells of ``name``, timed together on the device: each cell's latency fields."""
    from edgevit.bench import BenchOptions, benchmark

    paths = [artifacts[(name, t, p)] for t, p in CELLS]
    load = os.getloadavg()[0]
    report = benchmark(paths, BenchOptions(runs=args.runs, warmup=args.warmup, memory=False), progress=False,
                       remote={"url": url})
    return [{"p50_ms": r.latency.p50_ms, "min_ms": r.latency.min_ms, "p90_ms": r.latency.p90_ms, "load_average": load}
            for r in report.results]


def predict_model(name: str, passes: list[list[dict]], artifacts: dict, models: dict) -> list[dict]:
    """The four cells of ``name``: measured (the median of the passes' p50s), predicted, and pass against pass."""
    import numpy as np

    from edgevit.models import model_info

    cells = []
    for i, (target, precision) in enumerate(CELLS):
        runs = [one[i] for one in passes]
        p50s = [r["p50_ms"] for r in runs]
        measured = float(np.median(p50s))
        cells.append({
            "model": name, "family": model_info(name).family, "gmacs": model_info(name).gmacs,
            "target": target, "precision": precision, "measured_ms": measured, "passes_ms": p50s,
            "pass_errors": pass_errors(p50s), "measured_min_ms": min(r["min_ms"] for r in runs),
            "measured_p90_ms": float(np.median([r["p90_ms"] for r in runs])),
            "load_average": float(np.mean([r["load_average"] for r in runs])),
            **predicted_fields(artifacts[(name, target, precision)], models[BACKEND_OF[target]],
                               model_info(name).family, measured, name, precision),
        })
        log(f"  {name} {target}-{precision}: measured {measured:.2f} ms (passes {', '.join(f'{v:.2f}' for v in p50s)}), "
            f"predicted {cells[-1]['predicted_ms']:.2f} ms ({cells[-1]['error']:+.1%})")
    return cells


def pass_errors(p50s: list[float]) -> list[float]:
    """Each pass's p50 as a prediction of the median of the other passes: the error a perfect
    predictor would show against one pass (the measurement's own noise floor)."""
    import numpy as np

    if len(p50s) < 2:
        return []
    return [v / float(np.median(p50s[:i] + p50s[i + 1:])) - 1 for i, v in enumerate(p50s)]


def add_baseline(cells: list[dict]) -> None:
    """Today's single-number model, fitted leave-one-family-out on the measured cells."""
    import numpy as np

    ok = [c for c in cells if "error" in c]
    for cell in ok:
        others = [c for c in ok if c["family"] != cell["family"] and (c["target"], c["precision"]) ==
                  (cell["target"], cell["precision"])]
        if not others:
            continue
        rate = float(np.median([c["measured_ms"] / c["gmacs"] for c in others]))
        cell["gmacs_ms"] = cell["gmacs"] * rate
        cell["gmacs_error"] = cell["gmacs_ms"] / cell["measured_ms"] - 1


def write_results(results: dict, args, finished: bool = False) -> None:
    from edgevit._files import write_json, write_text

    write_json(args.out.with_suffix(".json"), results)
    write_text(args.out.with_suffix(".md"), markdown(results, finished))


def markdown(results: dict, finished: bool) -> str:
    env = results["environment"]
    lines = ["# Latency predictor: predicted against measured (issue 15)", "",
             f"{'Finished' if finished else 'Partial (still running)'}; written by `benchmarks/predictor.py`. "
             f"Machine: {env.get('cpu_model', '?')}, {env.get('cores_usable', '?')} usable cores, load average at "
             f"start {env.get('load_average_1m', '?')} (a shared machine; each cell records its own). Calibration preset `{results['preset']}`, fp32 and "
             "int8. Measured: the median over passes of the p50 of the agent's device-side `compute_ns` "
             "(the passes go over every model in turn). Predicted: `edgevit.predict` with the "
             "device's profile: kernels fitted on the calibration models (generic sizes), scaled by factors "
             "fitted to the profile's reference models of the same precision (since predictor version 10 one for "
             "the token kinds and one for the rest, damped toward the references' median measured/predicted "
             "ratio; that median alone before), the "
             "predicted model's own family left out (leave-one-family-out). Kernels alone: the same without the "
             "scale. "
             "GMACs: one ms-per-GMAC number per device, target and precision, fitted on the other families' "
             f"measured cells. Within: |predicted / measured - 1| <= {WITHIN:.0%}.", ""]
    if results.get("repredicted_utc"):
        versions = sorted({c.get("predictor_version") for row in results["devices"].values() for c in row["cells"]
                           if "error" in c} - {None})
        lines += [f"Predictions recomputed on {results['repredicted_utc']} with predictor version "
                  f"{', '.join(map(str, versions))} from the saved profiles (their reference models' kernels mapped again by this version); the measurements are the run's own.", ""]
    for device, row in results["devices"].items():
        cells = [c for c in row["cells"] if "error" in c]
        quota = f"{row['quota']} core quota, {row['period_ms']} ms period" if row["quota"] else "no quota"
        lines += [f"## {device}: {row['threads']} thread(s), {quota}", ""]
        lines += ["| backend | probe time | timings | skipped | profile size |", "|---|---:|---:|---:|---:|"]
        for backend, probe in row["probes"].items():
            lines.append(f"| {backend} | {probe['seconds']:.0f} s | {probe['timings']} | {probe['skipped']} | "
                         f"{probe['profile_bytes'] / 1024:.0f} KB |")
        if row.get("drift"):
            keys = [k for k in row["drift"][0] if k != "pass"]
            lines += ["", "Drift: each pass's time against the median of the passes (probe: the median over the "
                      "calibration models; models: the median over the cells), in the order they ran, a probe sweep "
                      "just before each measurement pass. Above 1: a slow phase.", "",
                      "| pass | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
            lines += [f"| {d['pass']} | " + " | ".join(f"{d[k]:.3f}" if k in d else "-" for k in keys) + " |"
                      for d in row["drift"]]
        lines += ["", summary_line("predictor", [c["error"] for c in cells]),
                  summary_line("kernels alone (no reference scale)", [c["kernels_error"] for c in cells
                                                                      if "kernels_error" in c]),
                  summary_line("GMACs model", [c["gmacs_error"] for c in cells if "gmacs_error" in c]),
                  summary_line("noise floor (one pass against the others' median)",
                               [e for c in cells for e in c.get("pass_errors", [])], "passes"),
                  summary_line("the probe's own timing of the same artifact (a perfect kernel model's best)",
                               [c["probe_error"] for c in cells if "probe_error" in c]),
                  range_line([c for c in cells if c.get("range_ms")]), "",
                  "| model | cell | measured ms | passes ms | predicted ms | error | scale (token / rest, refs) | kernels alone ms "
                  "| error | GMACs model ms | error | complete |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for c in row["cells"]:
            if "error" not in c:
                lines.append(f"| {c['model']} | failed: {c.get('error')} | | | | | | | | | | |")
                continue
            spread = " / ".join(f"{v:.2f}" for v in c.get("passes_ms", []))
            lines.append(f"| {c['model']} | {c['target']}-{c['precision']} | {c['measured_ms']:.2f} | {spread} | "
                         f"{c['predicted_ms']:.2f} | {c['error']:+.1%} | {c.get('scale', 1.0):.3f} "
                         f"({_groups(c)}{c.get('scale_references', 0)}) | {c.get('kernels_ms', float('nan')):.2f} | "
                         f"{c.get('kernels_error', float('nan')):+.1%} | {c.get('gmacs_ms', float('nan')):.2f} | "
                         f"{c.get('gmacs_error', float('nan')):+.1%} | {'yes' if c['complete'] else _missing(c)} |")
        worst = sorted(cells, key=lambda c: -abs(c["error"]))[:5]
        lines += ["", "Worst predictions, with the predicted time by kernel kind (ms):", ""]
        for c in worst:
            kinds = ", ".join(f"{k} {v:.2f}" for k, v in list(c["by_kind"].items())[:6])
            lines.append(f"- {c['model']} {c['target']}-{c['precision']}: {c['error']:+.1%} "
                         f"(measured {c['measured_ms']:.2f}, predicted {c['predicted_ms']:.2f}): {kinds}")
        lines.append("")
    return "\n".join(lines) + "\n"


def summary_line(label: str, errors: list[float], what: str = "cells") -> str:
    if not errors:
        return f"**{label}**: no {what}."
    import numpy as np

    errors_abs = np.abs(errors)
    within = float(np.mean(errors_abs <= WITHIN))
    return (f"**{label}**: {within:.0%} of {len(errors)} {what} within ±{WITHIN:.0%}; median |error| "
            f"{np.median(errors_abs):.1%}, worst {np.max(errors_abs):.1%}.")


def range_line(cells: list[dict]) -> str:
    """How often the measured time fell inside the prediction's range (the references' lowest and highest factor)."""
    if not cells:
        return "**the references' range**: no cells."
    import numpy as np

    inside = sum(c["range_ms"][0] <= c["measured_ms"] <= c["range_ms"][1] for c in cells)
    width = float(np.median([(c["range_ms"][1] - c["range_ms"][0]) / c["predicted_ms"] for c in cells]))
    return (f"**the references' range** (the prediction at the lowest and the highest reference factor): the measured "
            f"time inside it in {inside} of {len(cells)} cells; median width {width:.0%} of the prediction.")


def _groups(cell: dict) -> str:
    """``"0.95 / 1.10, "``: a cell's two reference factors (token kinds, the rest), or nothing before version 10."""
    groups = cell.get("group_scale")
    return f"{groups[0]:.2f} / {groups[1]:.2f}, " if groups else ""


def _missing(cell: dict) -> str:
    missing = {**cell["unknown"], **cell["uncalibrated"]}
    approximated = cell.get("approximated", {})
    parts = [f"{k} x{v}" for k, v in missing.items()] + [f"{k} x{v} as float" for k, v in approximated.items()]
    return "no: " + ", ".join(parts)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
