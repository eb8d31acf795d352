"""Split plans on an emulated fleet, predicted from a probed device profile (issue 15).

Not a test. ``benchmarks/cluster.py`` predicts a plan's end-to-end latency from one speed number
per device (the unsplit model's compute time on the device). Here the same fleet is given a
**device profile** instead:

1. One device of the fleet's kind (the same CPU quota, quota period and thread count) is probed
   through its agent, as ``edgevit devices probe --url`` does: the calibration set (onnxruntime,
   fp32, the plans' target and precision) and, as reference models, whole zoo models of the
   *other* families exported at the plans' image size. The plans are ViT-Tiny pieces; no ViT or
   DeiT model is a reference, so the plans' family contributes nothing to the fit.
2. Every device of each plan's fleet points at that profile (``profile = ...`` in the device
   file: the devices are of one kind), and
   ``predict_plan(profile_plan(plan, devices), devices, request_ms, fanout_ms)`` predicts each
   plan from its own ONNX files, torch-free. ``request_ms`` and ``fanout_ms`` are measured on the
   fleet with a model that computes nothing, as in ``cluster.py``: nothing is fitted to the plans.
   The probe also times its references one request at a time after ``--idle-gap-ms`` of idle, so
   each piece is priced as it runs in the fleet, asked once per end-to-end request
   (``Prediction.idle_ms``); the back-to-back figure is reported beside it.
3. Each plan is measured as ``cluster.py`` measures it (end-to-end p50 of one request at a time,
   the agents' device-side compute per piece), with the speed-number prediction beside the
   profile's.

The quota period defaults to the shortest the kernel allows for the quota (1 ms of CPU per
period: 4 ms for 0.25 core), not the kernel's 100 ms. Under a long period a device answering
one request at a time runs each request at full speed until it has used its share, so it is
fast or slow depending on how often it is asked, which no real device does and no profile can
describe (measured: ``edgevit.cluster.fleet.FleetDevice``). With the shortest period a 5 ms model
ran as slowly called back to back as after 30 ms idle; models of a millisecond or two did not (the
results' reading).

Usage::

    python benchmarks/edvit.py --work /tmp/edvit-bench               # the class-wise plans, first
    python benchmarks/cluster_profiled.py --work /tmp/edvit-bench    # writes benchmarks/results/cluster_profiled.md/.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster  # noqa: E402  (benchmarks/cluster.py: the plans, the fleet and the measurement)

RESULTS = cluster.RESULTS
#: reference models: one per family other than the plans' (ViT / DeiT)
REFERENCES = ("cas_vit_xs", "efficientformer_l1", "efficientformerv2_s0", "tiny_vit_5m_224")
GOAL = 0.10


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        save(json.loads((RESULTS / f"{args.name}.json").read_text()), args.name)
        return 0
    from edgevit.cluster.fleet import cgroups_available, shortest_period_ms

    work = Path(args.work)
    quota = args.quota if args.quota and cgroups_available() else None
    if quota and not args.period_ms:
        args.period_ms = shortest_period_ms(quota)
    results: dict[str, Any] = {"environment": cluster.environment(),
                               "settings": {**vars(args), "quota_applied": quota}, "goal": GOAL, "plans": {}}
    plans = cluster.prepare_plans(work, args)
    images = cluster.validation_images(plans["unsplit"], args.requests)
    profile, results["probe"] = probe_device(work, quota, args)
    save(results, args.name)
    results["alone"] = pieces_alone(plans, profile, quota, args)
    save(results, args.name)
    for name, folder in plans.items():
        cluster.log(f"== {name}")
        results["plans"][name] = cluster.measure_plan(folder, images, quota, args, profile=profile)
        save(results, args.name)
    results["environment"]["load_average_end"] = list(os.getloadavg())
    save(results, args.name)
    return 0


def export_references(work: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The reference models, ONNX fp32, random weights (timing does not need trained ones): at the plans'
    image size where the model takes it, else at its own (EfficientFormer's attention biases fix 224 px)."""
    from edgevit.errors import InvalidArgumentError
    from edgevit.export import export

    folders = {}
    for name in args.references:
        folder = work / "references" / f"{name}-onnx-fp32"
        if not (folder / "manifest.json").exists():
            cluster.log(f"exporting the reference {name}")
            common = dict(target="onnx", precision="fp32", out=folder.parent, verify=False, quiet=True, progress=False)
            try:
                export(name, image_size=args.image_size, **common)
            except InvalidArgumentError as exc:
                cluster.log(f"  {exc}; exported at its own size instead")
                export(name, **common)
        folders[name] = folder
    return folders


def probe_device(work: Path, quota: float | None, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """Probe one device of the fleet's kind through its agent; the saved profile and the probe's facts."""
    from edgevit.cluster.fleet import Fleet
    from edgevit.predict import save_profile
    from edgevit.probe import probe_remote

    path = work / "profiles" / f"fleet-device-quota{quota or 0:g}-period{args.period_ms or 0:g}-onnxruntime.json"
    facts = path.with_suffix(".probe.json")
    if args.reuse and path.exists() and facts.exists():
        cluster.log(f"reusing {path}")
        return path, json.loads(facts.read_text())
    references = export_references(work, args)
    device = cluster.fleet_device("probed", quota, args)
    cluster.log(f"probing one fleet device (quota {quota}, period {device.cpu_period_ms:g} ms, 1 thread)")
    with Fleet(work / "fleet-probe", [device]) as fleet:
        result = probe_remote(f"127.0.0.1:{fleet.ports['probed']}", "onnxruntime", preset=args.preset,
                              precisions=("fp32",), rounds=args.probe_rounds, passes=args.probe_passes,
                              workdir=work / "calibration-onnxruntime", references=tuple(references.values()),
                              idle_gap_ms=args.idle_gap_ms, progress=True)
    save_profile(result.profile, path)
    info = {"seconds": round(result.seconds, 1), "timings": len(result.profile.timings),
            "references": {r.model: r.ms for r in result.profile.references},
            "references_idle": {r.model: r.idle_ms for r in result.profile.references},
            "idle_gap_ms": result.profile.measurement.idle_gap_ms,
            "skipped": len(result.skipped), "profile_bytes": path.stat().st_size,
            "quota": quota, "period_ms": device.cpu_period_ms, "load_average": list(os.getloadavg())}
    facts.write_text(json.dumps(info))
    cluster.log(f"probe: {info['seconds']:.0f} s, {info['timings']} timings, {info['profile_bytes'] // 1024} KB")
    return path, info


def pieces_alone(plans: dict[str, Path], profile: Path, quota: float | None, args: argparse.Namespace) -> dict:
    """Every plan's pieces timed one request at a time on one device of the fleet's kind with no other device
    running, against the profile's prediction: the predictor's own error, without the fleet sharing this
    machine's cores (``{plan/piece: {"measured_ms", "predicted_ms" (one request after idle), "back_to_back_ms"}}``)."""
    from edgevit.agent.client import AgentClient
    from edgevit.artifact import read_manifest
    from edgevit.cluster.fleet import Fleet
    from edgevit.cluster.plans import load_plan
    from edgevit.predict import fit, load_profile, predict

    model = fit(load_profile(profile))
    device = cluster.fleet_device("alone", quota, args)
    rng = np.random.default_rng(0)
    rows: dict[str, dict[str, float]] = {}
    with Fleet(Path(args.work) / "fleet-alone", [device]) as fleet, \
            AgentClient(f"127.0.0.1:{fleet.ports['alone']}") as client:
        for plan_name, folder in plans.items():
            for piece in load_plan(folder).pieces:
                path = folder / piece.artifact
                upload = client.upload(path, name=f"{plan_name}-{piece.name}")
                feeds = {spec.name: rng.standard_normal([d or 1 for d in spec.shape]).astype(spec.dtype)
                         for spec in read_manifest(path).inputs}
                measured = cluster.compute_p50_ms(client, upload.name, [feeds] * (args.alone_requests + 10))
                client.unload(upload.name)
                prediction = predict(path, model)
                rows[f"{plan_name}/{piece.name}"] = {"measured_ms": measured, "predicted_ms": prediction.idle_ms if prediction.idle_ms is not None else prediction.total_ms,
                                                     "back_to_back_ms": prediction.total_ms}
                cluster.log(f"alone: {plan_name}/{piece.name} {rows[f'{plan_name}/{piece.name}']}")
    return rows


def save(results: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(results))


def markdown(results: dict[str, Any]) -> str:
    from edgevit._table import format_table

    settings, probe = results["settings"], results.get("probe", {})
    period = probe.get("period_ms", settings["period_ms"]) if settings.get("quota_applied") else None
    lines = ["# Split plans on an emulated fleet, predicted from a device profile", "",
             *cluster.fleet_header(results, period, "Written by `benchmarks/cluster_profiled.py`. Machine"), ""]
    if results.get("reading"):  # written by hand into the .json after a run; --report keeps it
        lines[1:1] = ["", results["reading"].strip()]
    if probe:
        idle = probe.get("references_idle") or {}
        refs = ", ".join(f"{name} {ms:.1f} ms" + (f" ({idle[name]:.1f} ms after {probe['idle_gap_ms']:g} ms idle)"
                                                   if idle.get(name) else "")
                         for name, ms in probe.get("references", {}).items())
        lines += [f"Profile: one device of this kind probed through its agent (onnxruntime, fp32, preset "
                  f"`{settings['preset']}`, {settings['probe_passes']} passes): {probe['seconds']:.0f} s, "
                  f"{probe['timings']} timings, {probe['skipped']} skipped, {probe['profile_bytes'] / 1024:.0f} KB. "
                  f"Reference models (families other than the plans' ViT; at {settings['image_size']} px where the model "
                  f"takes it, EfficientFormer-L1 at its only size, 224 px): {refs}.", ""]
    lines += ["`predicted (speed)` = `predict_plan` with each device's speed measured from the unsplit model "
              "(benchmarks/cluster.py's way); `predicted (profile)` = `predict_plan(profile_plan(plan, devices))` with "
              "every device pointing at the profile; both with `request_ms` and `fanout_ms` measured on the fleet with a "
              "model that computes nothing. `compute` columns: the slowest piece (class-wise) or the sum of the stages "
              "(pipelines), measured = the agents' device-side p50, predicted = the profile's (one request at an idle "
              "device where the profile timed its references that way). `profile, back to back`: the same prediction "
              "with every piece priced back to back, as before profiles held idle timings.", ""]
    rows, errors, warm_errors = [], [], []
    for name, r in results["plans"].items():
        by_profile = r.get("predicted_profiled")
        if by_profile is None:
            continue
        measured_compute = _compute(r["strategy"], r["device_compute_p50_ms"])
        predicted_compute = _compute(r["strategy"], {p: v["compute_ms"] for p, v in by_profile["pieces"].items()})
        errors.append(r["prediction_error_profiled"])
        warm = back_to_back_end_to_end(r["strategy"], by_profile)
        warm_errors.append(warm / r["p50_ms"] - 1)
        rows.append([name, str(r["pieces"]), f"{r['p50_ms']:.2f}", f"{r['predicted']['end_to_end_ms']:.2f}",
                     f"{r['prediction_error']:+.1%}", f"{by_profile['end_to_end_ms']:.2f}",
                     f"{r['prediction_error_profiled']:+.1%}", f"{warm:.2f}", f"{warm_errors[-1]:+.1%}",
                     f"{measured_compute:.2f}", f"{predicted_compute:.2f}",
                     f"{predicted_compute / measured_compute - 1:+.1%}", f"{r['request_overhead_ms']:.2f}"])
    lines += [format_table(["plan", "pieces", "p50 ms", "predicted (speed)", "error", "predicted (profile)", "error",
                            "profile, back to back", "error", "compute ms", "predicted compute", "error", "request ms"],
                           rows), ""]
    lines += ["", "Per piece (device-side compute p50 against the two predictions):", ""]
    piece_rows = []
    for name, r in results["plans"].items():
        by_profile = r.get("predicted_profiled")
        for piece, measured in (r["device_compute_p50_ms"] if by_profile else {}).items():
            profiled, speed = by_profile["pieces"][piece]["compute_ms"], r["predicted"]["pieces"][piece]["compute_ms"]
            warm = by_profile["pieces"][piece].get("back_to_back_ms", profiled)
            piece_rows.append([name, piece, by_profile["pieces"][piece]["device"], f"{measured:.2f}", f"{speed:.2f}",
                               f"{speed / measured - 1:+.1%}", f"{profiled:.2f}", f"{profiled / measured - 1:+.1%}",
                               f"{warm:.2f}"])
    lines += [format_table(["plan", "piece", "device", "measured ms", "speed", "error", "profile", "error",
                            "back to back"], piece_rows), ""]
    alone = results.get("alone", {})
    if alone:
        ratios = [r["predicted_ms"] / r["measured_ms"] - 1 for r in alone.values()]
        lines += ["Each piece alone on one device of this kind (one request at a time through its agent, no other "
                  "device running; device-side compute p50 against the profile's prediction):", "",
                  format_table(["piece", "measured ms", "predicted ms", "error", "back to back", "error"],
                               [[name, f"{r['measured_ms']:.2f}", f"{r['predicted_ms']:.2f}",
                                 f"{r['predicted_ms'] / r['measured_ms'] - 1:+.1%}",
                                 f"{r.get('back_to_back_ms', r['predicted_ms']):.2f}",
                                 f"{r.get('back_to_back_ms', r['predicted_ms']) / r['measured_ms'] - 1:+.1%}"]
                                for name, r in alone.items()]),
                  "", f"Alone: {sum(abs(e) <= GOAL for e in ratios)} of {len(ratios)} pieces within ±{GOAL:.0%}, "
                  f"median error {float(np.median(ratios)):+.1%}.", ""]
    if errors:
        within = sum(abs(e) <= GOAL for e in errors)
        lines.append(f"Predicted from the profile within ±{GOAL:.0%} of the measured p50: {within} of {len(errors)} "
                     f"plans (worst {max(abs(e) for e in errors):.1%}): " + ("met." if within == len(errors) else "NOT met.")
                     + f" With every piece priced back to back instead: {sum(abs(e) <= GOAL for e in warm_errors)} of "
                     f"{len(warm_errors)} (worst {max(abs(e) for e in warm_errors):.1%}).")
    return "\n".join(lines) + "\n"


def back_to_back_end_to_end(strategy: str, predicted: dict[str, Any]) -> float:
    """The profile's end-to-end prediction with every piece priced back to back (``back_to_back_ms``)
    instead of one request after an idle gap: what ``predict_plan`` gave before profiles held idle timings."""
    totals = [p["total_ms"] - p["compute_ms"] + p.get("back_to_back_ms", p["compute_ms"])
              for p in predicted["pieces"].values()]
    if strategy == "classwise":
        return max(totals) + predicted["fanout_ms"] + predicted["fusion_ms"]
    return sum(totals)


def _compute(strategy: str, by_piece: dict[str, float]) -> float:
    values = [float(v) for v in by_piece.values()]
    return max(values) if strategy == "classwise" else sum(values)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cluster.fleet_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--references", nargs="+", default=list(REFERENCES), help="reference zoo models")
    parser.add_argument("--preset", default="standard", help="calibration preset")
    parser.add_argument("--probe-rounds", type=int, default=20)
    parser.add_argument("--probe-passes", type=int, default=3)
    parser.add_argument("--alone-requests", type=int, default=50, help="timed requests per piece alone")
    parser.add_argument("--idle-gap-ms", type=float, default=20.0,
                        help="the probe also times its references one request after this long idle (0: not)")
    parser.add_argument("--reuse", action="store_true", help="reuse the profile already in --work")
    parser.add_argument("--name", default="cluster_profiled", help="results file name (benchmarks/results/NAME.md/.json)")
    parser.add_argument("--report", action="store_true", help="only re-render the .md from the committed .json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
