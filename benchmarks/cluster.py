"""Split plans measured on an emulated fleet: latency, throughput, failures, degraded accuracy, load.

Not a test. The plans are the ViT-Tiny digits plans of ``benchmarks/edvit.py`` (class-wise
K = 2, 3, 4, in its ``--work`` folder) plus pipelines (K = 2, 3) and the unsplit model (a
one-stage pipeline) cut from the same trained weights here. Every device is an `edgevit serve`
process (``edgevit.cluster.fleet``) behind a link emulator in a process of its own (1 ms one way,
100 Mbit/s), with a
CPU quota of 0.25 core when this machine allows cgroups (root and the v1 ``cpu`` controller;
the results say whether it did). The coordinator is this process.

1. **Latency and throughput** per plan: ``--requests`` images one after another (end-to-end
   p50/p99 as the coordinator sees them), then the same images streamed with several in flight
   (frames per second). Each against the unsplit model served the same way (one device).
2. **Predicted against measured**: ``edgevit.partition.predict.predict_plan`` with the fleet's
   device file, each device's speed measured as a device profile would be, ``request_ms`` (one
   request that computes nothing, its round trip minus the modelled link) and ``fanout_ms``
   (what each further concurrent request adds), both measured on the same fleet with a model
   that computes nothing, so the prediction has no free parameter fitted to the plans.
3. **Failure** (class-wise K = 4, deadline 250 ms): ``--failure-requests`` at a fixed rate; one
   agent SIGKILLed after 30% of them and restarted after 70%; every answer's latency, and how many
   were hedged, failed over, degraded. Then again with one standby per piece.
4. **Degraded accuracy**: the K = 4 plan on the digits validation split with each single
   sub-model missing (``run_in_process(missing=...)``), against the full split.
5. **Load**: 64 client threads through one coordinator session.

Usage::

    python benchmarks/edvit.py --work /tmp/edvit-bench        # the class-wise plans, first
    python benchmarks/cluster.py --work /tmp/edvit-bench       # writes benchmarks/results/cluster.md/.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GOALS = {"classwise_k4_ratio": 0.4, "pipeline_k2_throughput": 1.6, "prediction_error": 0.15,
         "degraded_drop_points": 3.0, "failure_deadline_ms": 250.0}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        save(json.loads((RESULTS / "cluster.json").read_text()))
        return 0
    work = Path(args.work)
    from edgevit.cluster.fleet import cgroups_available

    quota = args.quota if args.quota and cgroups_available() else None
    results: dict[str, Any] = {"environment": environment(), "settings": {**vars(args), "quota_applied": quota},
                               "goals": GOALS, "plans": {}}
    plans = prepare_plans(work, args)
    images = validation_images(plans["unsplit"], args.requests)
    for name, folder in plans.items():
        log(f"== {name}")
        results["plans"][name] = measure_plan(folder, images, quota, args)
        save(results)
    classwise = sorted((name for name in plans if name.startswith("classwise-K")), key=lambda n: int(n[11:]))
    k4 = plans[classwise[-1]] if classwise else None  # K = 4 from benchmarks/edvit.py; the largest K present
    if k4 is not None:
        results["failure_plan"] = classwise[-1]
        results["degraded_accuracy"] = degraded_accuracy(k4)
        save(results)
        for replicas in (0, 1):
            log(f"== failure, {replicas} standby per piece")
            results.setdefault("failure", {})[f"replicas={replicas}"] = failure(k4, quota, args, replicas)
            save(results)
        log("== 64 clients")
        results["load"] = load_test(k4, quota, args)
        save(results)
    results["environment"]["load_average_end"] = list(os.getloadavg())
    save(results)
    return 0


# -- plans ---------------------------------------------------------------------------------------


def prepare_plans(work: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The class-wise plans of benchmarks/edvit.py, and pipelines + the unsplit model made here."""
    from edgevit.devices import equal_devices
    from edgevit.split import SplitOptions, split

    weights = sorted(work.glob(f"{args.model}-digits-{args.image_size}px-*ep.safetensors"),
                     key=lambda p: int(p.stem.rsplit("-", 1)[1][:-2]))
    if not weights:
        raise SystemExit(f"no trained weights in {work}: run benchmarks/edvit.py --work {work} first")
    plans = {}
    for k in (1, 2, 3):
        folder = work / ("unsplit-stage" if k == 1 else f"pipeline-K{k}")
        if not (folder / "plan.json").exists():
            log(f"cutting a {k}-stage pipeline from {weights[-1].name}")
            split(args.model, None, equal_devices(k, memory_mb=512), folder,
                  SplitOptions(strategy="pipeline", measure_rounds=50, threads=1), weights=weights[-1],
                  image_size=args.image_size, progress=False)
        plans["unsplit" if k == 1 else f"pipeline-K{k}"] = folder
    for k in (2, 3, 4):
        folder = work / f"plan-K{k}"
        if (folder / "plan.json").exists():
            plans[f"classwise-K{k}"] = folder
        else:
            log(f"no {folder}: class-wise K={k} skipped (benchmarks/edvit.py makes it)")
    return plans


def validation_images(plan_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    from edgevit.cluster.plans import load_plan
    from edgevit.data.datasets import load_dataset
    from edgevit.data.preprocess import PreprocessSpec

    plan = load_plan(plan_dir)
    x, y = load_dataset("digits", "val").arrays(PreprocessSpec.from_dict(plan.preprocessing))
    return np.ascontiguousarray(x[:count]), y[:count]


# -- fleets --------------------------------------------------------------------------------------


def fleet_for(plan_dir: Path, quota: float | None, args: argparse.Namespace, root: Path):
    from edgevit.cluster.emulate import LinkSpec
    from edgevit.cluster.fleet import Fleet
    from edgevit.cluster.plans import load_plan

    plan = load_plan(plan_dir)
    names = sorted({p.device for p in plan.pieces})
    link = LinkSpec(latency_ms=args.latency_ms, mbps=args.mbps)
    return Fleet(root, [fleet_device(n, quota, args, link=link) for n in names], links_in_processes=True)


def fleet_device(name: str, quota: float | None, args: argparse.Namespace, **fields: Any):
    """One emulated device as every fleet of these benchmarks has it: 512 MB, 1 thread, ``quota`` cores
    with ``--period-ms`` (the Fleet's default period when not given)."""
    from edgevit.cluster.fleet import FleetDevice

    period = {"cpu_period_ms": args.period_ms} if args.period_ms else {}
    return FleetDevice(name, memory_mb=512, cpu_quota=quota, threads=1, **period, **fields)


def compute_p50_ms(client, name: str, feeds: list[dict[str, np.ndarray]], warmup: int = 10) -> float:
    """The median device-side compute time (the agent's ``compute_ns``) of one request per feed, one at a
    time, the first ``warmup`` left out."""
    times = [client.infer(name, one).timings["compute_ns"] / 1e6 for one in feeds]
    return float(np.median(times[warmup:]))


def request_overhead(fleet, cluster, root: Path) -> tuple[float, float]:
    """What one request costs besides compute and the modelled link, on the path plans use: a model
    that computes nothing, called through the coordinator's gRPC transport from its event-loop
    thread and through each device's link, minus the link model's transfer times (the
    prediction's ``request_ms``); and what each further concurrent request adds when the
    coordinator sends one to every device at once (``fanout_ms``: the time until the last
    answer, minus one request's, over K - 1). Measured on the fleet, not fitted to the plans."""
    from edgevit.agent.client import AgentClient
    from edgevit.cluster.deploy import endpoints
    from edgevit.cluster.session import _Loop
    from edgevit.cluster.transport import GrpcTransport
    from edgevit.partition.cost import transfer_ms

    folder = noop_artifact(root / "noop-onnx-fp32")
    x = np.zeros((1, 3, 64, 64), np.float32)
    for name in fleet.devices:
        with AgentClient(f"127.0.0.1:{fleet.ports[name]}") as client:
            client.upload(folder)
    transport, loop = GrpcTransport(endpoints(cluster)), _Loop()
    costs = []
    try:
        singles = []
        for device in cluster.devices:
            link = transfer_ms(x.nbytes, device) + transfer_ms(3 * 4, device)
            for index in range(60):
                start = time.perf_counter()
                answer = loop.run(transport.infer(device.name, folder.name, {"input": x}, 10.0))
                if index >= 10:
                    singles.append((time.perf_counter() - start) * 1000)
                    costs.append(singles[-1] - link - (answer.compute_ms or 0.0))
        fanout = 0.0
        if len(cluster.devices) > 1:
            async def everyone() -> None:
                await asyncio.gather(*(transport.infer(d.name, folder.name, {"input": x}, 10.0)
                                       for d in cluster.devices))

            together = []
            for index in range(60):
                start = time.perf_counter()
                loop.run(everyone())
                if index >= 10:
                    together.append((time.perf_counter() - start) * 1000)
            fanout = (float(np.median(together)) - float(np.median(singles))) / (len(cluster.devices) - 1)
        loop.run(transport.close())
    finally:
        loop.close()
    return float(np.median(costs)), fanout


def measure_plan(plan_dir: Path, images: tuple[np.ndarray, np.ndarray], quota: float | None,
                 args: argparse.Namespace, profile: Path | None = None) -> dict[str, Any]:
    """One plan on its fleet: latency, throughput, and the prediction from measured device speeds
    (and, given a device ``profile``, from that profile for every device: ``predicted_profiled``)."""
    from edgevit.cluster.deploy import deploy_plan
    from edgevit.cluster.plans import load_plan
    from edgevit.cluster.policy import Policy
    from edgevit.cluster.session import connect
    from edgevit.devices import load_devices
    from edgevit.partition.predict import predict_plan

    x, y = images
    root = Path(args.work) / f"fleet-{plan_dir.name}"
    plan = load_plan(plan_dir)
    with fleet_for(plan_dir, quota, args, root) as fleet:
        devices = fleet.write_devices(root / "devices.toml")
        cluster = load_devices(devices)
        deploy_plan(plan_dir, cluster)
        overhead, fanout = request_overhead(fleet, cluster, root)
        speeds = device_speeds(fleet, Path(args.work) / "unsplit-stage", x)
        measured_devices = load_devices(fleet.write_devices(root / "devices-measured.toml", speed=speeds))
        profiled = None if profile is None else load_devices(
            fleet.write_devices(root / "devices-profiled.toml", profiles=dict.fromkeys(fleet.devices, profile)))
        with connect(plan_dir, cluster, policy=Policy(deadline_ms=10_000, hedge=False)) as session:
            for frame in x[:20]:
                list(session.stream([frame]))
            latencies, correct, computes = [], 0, {}
            for frame, label in zip(x, y):
                (answer,) = list(session.stream([frame]))
                latencies.append(answer.latency_ms)
                correct += int(np.argmax(answer.logits) == label)
                for piece, timing in answer.pieces.items():
                    computes.setdefault(piece, []).append(timing["compute_ms"])
            start = time.perf_counter()
            streamed = list(session.stream(x))
            fps = len(streamed) / (time.perf_counter() - start)
            stats = session.stats()
    predicted = predict_plan(plan, measured_devices, request_ms=overhead, fanout_ms=fanout)
    out = {"pieces": len(plan.pieces), "strategy": plan.strategy, "requests": len(x),
           "p50_ms": float(np.median(latencies)), "p99_ms": float(np.percentile(latencies, 99)),
           "mean_ms": float(np.mean(latencies)), "frames_per_s": fps, "top1": 100.0 * correct / len(x),
           "device_compute_p50_ms": {p: float(np.median(v)) for p, v in computes.items()},
           "request_overhead_ms": overhead, "fanout_ms": fanout, "predicted": predicted, "device_speeds": speeds,
           "policy": stats["policy"], "link": {"latency_ms": args.latency_ms, "mbps": args.mbps}, "quota": quota}
    out["prediction_error"] = predicted["end_to_end_ms"] / out["p50_ms"] - 1
    if profiled is not None:
        from edgevit.split.profiles import profile_plan

        by_profile = predict_plan(profile_plan(plan_dir, profiled), profiled, request_ms=overhead, fanout_ms=fanout)
        out["predicted_profiled"] = by_profile
        out["prediction_error_profiled"] = by_profile["end_to_end_ms"] / out["p50_ms"] - 1
        log(f"{plan_dir.name}: from the profile {by_profile['end_to_end_ms']:.2f} ms "
            f"({out['prediction_error_profiled']:+.1%})")
    log(f"{plan_dir.name}: p50 {out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms, {fps:.1f} frames/s; predicted "
        f"{predicted['end_to_end_ms']:.2f} ms ({out['prediction_error']:+.1%}); request overhead {overhead:.2f} ms, "
        f"fan-out {fanout:.2f} ms per further request")
    return out


def device_speeds(fleet, calibration_plan: Path, images: np.ndarray) -> dict[str, float]:
    """Each device's speed relative to the planning machine, measured as a device profile would be:
    the unsplit model (``calibration_plan``'s one stage) run on the device at one request at a time,
    its compute time (reported by the agent) against the time the plan measured on this machine.
    A CPU quota slows a device only once it is busy for more than its share of the time, so a
    speed assumed from the quota would mispredict a device answering one request at a time."""
    from edgevit.agent.client import AgentClient
    from edgevit.cluster.plans import load_plan

    plan = load_plan(calibration_plan)
    stage = plan.pieces[0]
    reference = float(stage.cost["measured_ms"])
    speeds = {}
    for name in fleet.devices:
        with AgentClient(fleet.address(name)) as client:
            upload = client.upload(calibration_plan / stage.artifact, name="calibration")
            compute = compute_p50_ms(client, upload.name, [{stage.input_name: frame[None]} for frame in images[:60]])
        speeds[name] = reference / compute
    return speeds


def noop_artifact(folder: Path) -> Path:
    """A 64-px ONNX model that computes (almost) nothing: the cost of a request itself."""
    if (folder / "manifest.json").exists():
        return folder
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgevit.artifact import Manifest, TensorSpec

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input", "axes"], ["output"], keepdims=0)], "noop",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(np.array([2, 3]), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    Manifest(model={"name": "noop"}, target="onnx", precision="fp32", model_file="model.onnx",
             inputs=(TensorSpec("input", (1, 3, 64, 64)),), outputs=(TensorSpec("output", (1, 3)),),
             preprocessing={"size": 64}, files={"model.onnx": (folder / "model.onnx").stat().st_size}).write(folder)
    return folder


# -- failure, degraded accuracy, load --------------------------------------------------------------


def failure(plan_dir: Path, quota: float | None, args: argparse.Namespace, replicas: int) -> dict[str, Any]:
    from edgevit.cluster.deploy import deploy_plan
    from edgevit.cluster.plans import load_plan
    from edgevit.cluster.policy import Policy
    from edgevit.cluster.session import connect
    from edgevit.devices import load_devices

    x, _ = validation_images(plan_dir, 64)
    root = Path(args.work) / f"fleet-failure-{replicas}"
    plan = load_plan(plan_dir)
    victim = plan.pieces[1].device
    total = args.failure_requests
    kill_at, restart_at = int(total * 0.3), int(total * 0.7)
    policy = Policy(deadline_ms=GOALS["failure_deadline_ms"], probe_initial_ms=100, probe_max_ms=1000)
    with fleet_for(plan_dir, quota, args, root) as fleet:
        cluster = load_devices(fleet.write_devices(root / "devices.toml"))
        deploy_plan(plan_dir, cluster, replicas=replicas)
        with connect(plan_dir, cluster, policy=policy) as session:
            for frame in x[:30]:
                list(session.stream([frame]))  # learn each piece's p95 before the clock starts
            answers, events = [], {}
            period = 1.0 / args.rate
            start = time.monotonic()
            futures = []
            for index in range(total):
                due = start + index * period
                time.sleep(max(0.0, due - time.monotonic()))
                if index == kill_at:
                    fleet.kill(victim)
                    events["killed_at_request"] = index
                if index == restart_at:
                    restart = threading.Thread(target=fleet.restart, args=(victim,), daemon=True)
                    restart.start()
                    events["restarted_at_request"] = index
                futures.append(session._loop.submit(session._request(x[index % len(x)][None])))
            for future in futures:
                answers.append(future.result(60))
            restart.join(120)
            for _ in range(100):  # the breaker's probe takes the device back (no coordinator restart)
                if not session.stats()["down"]:
                    break
                time.sleep(0.1)
            stats = session.stats()
    latencies = [a.latency_ms for a in answers]
    late = sum(1 for a in answers if not a.ok or a.latency_ms > policy.deadline_ms)
    after_restart = answers[restart_at + 50:]
    out = {"requests": total, "rate_per_s": args.rate, "replicas": replicas, "victim": victim, **events,
           "answered": sum(a.ok for a in answers), "within_deadline": total - late,
           "within_deadline_pct": 100.0 * (total - late) / total,
           "degraded": sum(a.degraded for a in answers),
           "hedged": sum(any(t["hedged"] for t in a.pieces.values()) for a in answers),
           "failed_over": sum(any(t["failed_over"] for t in a.pieces.values()) for a in answers),
           "p50_ms": float(np.median(latencies)), "p99_ms": float(np.percentile(latencies, 99)),
           "max_ms": float(max(latencies)),
           "degraded_after_restart_plus_50": sum(a.degraded for a in after_restart),
           # the device's pieces answered again from here on: the last degraded answer after the restart
           "last_degraded_s_after_restart": max(((i - restart_at) * period for i, a in enumerate(answers)
                                                 if a.degraded and i >= restart_at), default=None),
           "policy": stats["policy"], "down_at_end": stats["down"]}
    log(f"replicas={replicas}: {out['within_deadline']}/{total} within {policy.deadline_ms:g} ms, degraded "
        f"{out['degraded']}, hedged {out['hedged']}, failed over {out['failed_over']}, max {out['max_ms']:.1f} ms")
    return out


def degraded_accuracy(plan_dir: Path) -> dict[str, Any]:
    from edgevit.cluster.local import run_in_process
    from edgevit.cluster.plans import load_plan
    from edgevit.data.datasets import load_dataset
    from edgevit.data.preprocess import PreprocessSpec

    plan = load_plan(plan_dir)
    x, y = load_dataset("digits", "val").arrays(PreprocessSpec.from_dict(plan.preprocessing))
    full = float((run_in_process(plan_dir, x, backend="onnxruntime").predictions == y).mean() * 100)
    missing = {}
    for piece in plan.pieces:
        result = run_in_process(plan_dir, x, backend="onnxruntime", missing=[piece.name])
        missing[piece.name] = float((result.predictions == y).mean() * 100)
    out = {"images": int(len(y)), "full_top1": full, "missing_top1": missing,
           "worst_drop_points": full - min(missing.values()), "recorded_in_plan": plan.accuracy.get("degraded")}
    log(f"degraded accuracy: full {full:.2f}%, one missing {missing}")
    return out


def load_test(plan_dir: Path, quota: float | None, args: argparse.Namespace) -> dict[str, Any]:
    from edgevit.cluster.deploy import deploy_plan
    from edgevit.cluster.policy import Policy
    from edgevit.cluster.session import connect
    from edgevit.devices import load_devices

    x, _ = validation_images(plan_dir, 64)
    root = Path(args.work) / "fleet-load"
    errors, answered = [], []
    with fleet_for(plan_dir, quota, args, root) as fleet:
        cluster = load_devices(fleet.write_devices(root / "devices.toml"))
        deploy_plan(plan_dir, cluster)
        with connect(plan_dir, cluster, policy=Policy(deadline_ms=60_000)) as session:
            def client(seed: int) -> None:
                for i in range(args.load_requests):
                    try:
                        result = session.run(x[(seed + i) % len(x)][None])
                        answered.append(not result.degraded)
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        errors.append(repr(exc))

            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - start
    out = {"clients": 64, "requests": 64 * args.load_requests, "errors": len(errors), "first_error": errors[:1],
           "degraded": answered.count(False), "seconds": seconds, "requests_per_s": len(answered) / seconds}
    log(f"64 clients: {len(answered)} answered, {len(errors)} errors, {out['requests_per_s']:.1f} req/s")
    return out


# -- output --------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    from edgevit.environment import environment as stamp

    env = stamp()
    return {"summary": env.summary(), "load_average_start": list(os.getloadavg()), **env.to_dict()}


def save(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (RESULTS / "cluster.md").write_text(markdown(results))


def fleet_header(results: dict[str, Any], period_ms: float | None = None, machine: str = "Machine") -> list[str]:
    """The results' machine line and fleet line (the quota's period named when ``period_ms`` is given)."""
    env, settings = results["environment"], results["settings"]
    quota = settings.get("quota_applied")
    if quota:
        applied = f"{quota:g} core per device" + (f", period {period_ms:g} ms" if period_ms else "") + " (cgroup v1 cpu)"
    elif settings.get("quota") == 0:
        applied = "none (`--quota 0`: every device runs at this machine's speed)"
    else:
        applied = "NOT applied (needs root and the cgroup v1 cpu controller)"
    return [f"{machine}: {env['summary']}; load average at the start "
            f"{', '.join(f'{x:.1f}' for x in env['load_average_start'])}"
            + (f", at the end {', '.join(f'{x:.1f}' for x in env['load_average_end'])}"
               if "load_average_end" in env else "") + ".",
            f"Fleet: one `edgevit serve` process per device (`--threads 1`), behind a link emulator of "
            f"{settings['latency_ms']:g} ms one way and {settings['mbps']:g} Mbit/s; CPU quota {applied}; "
            "the coordinator is the benchmark process."]


def markdown(results: dict[str, Any]) -> str:
    from edgevit._table import format_table

    lines = ["# Split plans on an emulated fleet", "", *fleet_header(results), "",
             "## Latency and throughput (digits validation images, 64 px)", "",
             "`ratio` = p50 over the unsplit model's p50 on one such device; `fps ratio` = frames per second over the "
             "unsplit model's; `predicted` = `predict_plan` on the fleet's device file with `request_ms` measured by "
             "a request that computes nothing through the coordinator's transport (the `overhead` column), `fanout_ms` "
             "measured by sending one such request to every device of the plan at once (the `fan-out` column: what each "
             "further concurrent request adds; class-wise plans only), and each "
             "device's speed measured as a device profile would be (the unsplit model's compute time on the device "
             "against the planning machine's; `device speed`, the median over the plan's devices).", ""]
    plans = results["plans"]
    base = plans.get("unsplit")
    rows = []
    for name, row in plans.items():
        ratio = row["p50_ms"] / base["p50_ms"] if base else None
        fps_ratio = row["frames_per_s"] / base["frames_per_s"] if base else None
        rows.append((name, row["pieces"], f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}",
                     f"{ratio:.2f}" if ratio else "-", f"{row['frames_per_s']:.1f}",
                     f"{fps_ratio:.2f}" if fps_ratio else "-", f"{row['predicted']['end_to_end_ms']:.2f}",
                     f"{row['prediction_error']:+.1%}", f"{row['request_overhead_ms']:.2f}",
                     f"{row['fanout_ms']:.2f}" if row["strategy"] == "classwise" and "fanout_ms" in row else "-",
                     f"{np.median(list(row.get('device_speeds', {}).values()) or [float('nan')]):.2f}",
                     f"{row['top1']:.1f}"))
    lines.append(format_table(["plan", "pieces", "p50 ms", "p99 ms", "ratio", "frames/s", "fps ratio",
                               "predicted ms", "error", "overhead ms", "fan-out ms", "device speed", "top-1 %"],
                              rows, align="lrrrrrrrrrrrr"))
    if base and "classwise-K4" in plans:
        ratio = plans["classwise-K4"]["p50_ms"] / base["p50_ms"]
        lines += ["", f"Class-wise K = 4: {ratio:.2f}x the unsplit model (goal <= {GOALS['classwise_k4_ratio']}): "
                  f"{'met' if ratio <= GOALS['classwise_k4_ratio'] else 'NOT met'}."]
    if base and "pipeline-K2" in plans:
        ratio = plans["pipeline-K2"]["frames_per_s"] / base["frames_per_s"]
        lines += [f"Pipeline K = 2 throughput: {ratio:.2f}x (goal >= {GOALS['pipeline_k2_throughput']}): "
                  f"{'met' if ratio >= GOALS['pipeline_k2_throughput'] else 'NOT met'}."]
    worst = max((abs(r["prediction_error"]) for r in plans.values()), default=None)
    if worst is not None:
        lines += [f"Prediction within +-{GOALS['prediction_error']:.0%} of the measured p50: "
                  f"{'met' if worst <= GOALS['prediction_error'] else 'NOT met'} (worst {worst:.1%})."]
    if base:
        lines += time_breakdown(plans)
    if "degraded_accuracy" in results:
        acc = results["degraded_accuracy"]
        lines += ["", f"## Degraded answers ({results.get('failure_plan', 'classwise-K4')}, digits validation split)", "",
                  f"Full split {acc['full_top1']:.2f}% on {acc['images']} images; with one sub-model missing: "
                  + ", ".join(f"{k} {v:.2f}%" for k, v in acc["missing_top1"].items())
                  + f"; worst drop {acc['worst_drop_points']:.2f} points (goal <= {GOALS['degraded_drop_points']:g})."]
    if "failure" in results:
        lines += ["", f"## Failure: one agent SIGKILLed and restarted ({results.get('failure_plan', 'classwise-K4')}, "
                  f"deadline {GOALS['failure_deadline_ms']:g} ms)", ""]
        rows = []
        for name, row in results["failure"].items():
            rows.append((name, row["requests"], f"{row['rate_per_s']:g}/s", row["victim"],
                         f"{row['killed_at_request']}/{row['restarted_at_request']}",
                         f"{row['within_deadline']} ({row['within_deadline_pct']:.1f}%)", row["degraded"],
                         row["hedged"], row["failed_over"], f"{row['p99_ms']:.1f}", f"{row['max_ms']:.1f}",
                         row["degraded_after_restart_plus_50"], ", ".join(row["down_at_end"]) or "none"))
        lines.append(format_table(["", "requests", "rate", "killed", "kill/restart at", "within deadline",
                                   "degraded", "hedged", "failed over", "p99 ms", "max ms",
                                   "degraded 50+ after restart", "down at end"], rows, align="lrrlllrrrrrrl"))
    if "load" in results:
        load = results["load"]
        lines += ["", "## Load", "", f"{load['clients']} client threads, {load['requests']} requests through one "
                  f"coordinator session: {load['errors']} errors, {load['degraded']} degraded, "
                  f"{load['requests_per_s']:.1f} requests/s."]
    lines += ["", "Raw numbers: cluster.json. Walk-through: docs/edvit.md, \"Running a plan on devices\".", ""]
    return "\n".join(lines)


def time_breakdown(plans: dict[str, Any]) -> list[str]:
    """Where each plan's median request goes: the device compute the agents report (the slowest
    piece for class-wise, the sum of stages for a pipeline), the link as modelled from the device
    file, and the rest (the coordinator, gRPC, the link emulators and agents sharing this
    machine's cores). With the link as given, ``best ratio`` is what the plan would reach if the
    rest cost nothing: compute plus link over the unsplit model's p50."""
    base = plans["unsplit"]
    rows = []
    for name, row in plans.items():
        pieces = row["predicted"]["pieces"]
        computes = row["device_compute_p50_ms"]
        if row["strategy"] == "pipeline" or name == "unsplit":
            compute = sum(computes.values())
            link = sum(p["input_transfer_ms"] + p["output_transfer_ms"] for p in pieces.values())
        else:
            compute = max(computes.values())
            link = max(p["input_transfer_ms"] + p["output_transfer_ms"] for p in pieces.values())
        rest = row["p50_ms"] - compute - link
        rows.append((name, f"{row['p50_ms']:.2f}", f"{compute:.2f}", f"{link:.2f}", f"{rest:.2f}",
                     f"{(compute + link) / base['p50_ms']:.2f}"))
    from edgevit._table import format_table

    return ["", "## Where the time goes (p50)", "",
            "`compute` = device compute the agents reported (slowest sub-model, or the sum of the stages); `link` = "
            "the transfers as the device file models them; `rest` = p50 - compute - link: the coordinator, gRPC and "
            "the emulated fleet's processes sharing this machine's 2 cores; `best ratio` = (compute + link) over the "
            "unsplit p50, the ratio if `rest` were zero.", "",
            format_table(["plan", "p50 ms", "compute ms", "link ms", "rest ms", "best ratio"], rows,
                         align="lrrrrr")]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fleet_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The plans' and the fleet's options (shared with benchmarks/cluster_profiled.py)."""
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "edgevit" / "edvit-bench"),
                        help="benchmarks/edvit.py's --work (trained weights, plan-K2..4)")
    parser.add_argument("--model", default="vit_tiny_patch16_224")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--quota", type=float, default=0.25, help="CPU cores per device (0: none)")
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--mbps", type=float, default=100.0)
    parser.add_argument("--requests", type=int, default=200, help="images per latency measurement")
    parser.add_argument("--period-ms", type=float, default=None,
                        help="the CPU quota's period, 1 to 1000 ms (default: the kernel's 100 ms in cluster.py; "
                        "the shortest the quota allows, 1 / quota, in cluster_profiled.py)")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = fleet_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--failure-requests", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second in the failure run")
    parser.add_argument("--load-requests", type=int, default=10, help="requests per client in the load run")
    parser.add_argument("--report", action="store_true",
                        help="only re-render cluster.md from the committed cluster.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
