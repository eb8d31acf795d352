"""What one call pays per byte of its input, device-side, on each backend (issue 15; not a test).

The predictor's fit estimates a call's copying cost per byte (``io_cost`` in
:mod:`edgevit.predict.fit`) from the calibration models, where it is tangled with the kernels'
own memory traffic; this script measures the input side directly. Each model takes ``E`` floats
and does one element's work (``x[:, :1] + 1``), so its time is the runtime's fixed cost plus
whatever it does per input byte. They are exported once under ``--work``, run through
``edgevit serve`` agents on loopback (``here``: 2 threads; ``slow``: 1 thread in a 0.5-core
quota with a 20 ms period, as ``benchmarks/predictor.py`` has it, where cgroups allow) and
timed the probe's way (:class:`edgevit.probe.timers.AgentTimer`: the agent's device-side mean
over back-to-back runs in a 100 ms window), every size of a device and backend in each of
``--passes`` interleaved passes, the order reversed every other pass. The slope of a
least-squares line through the medians is the cost per MB of input. With ``--profiles`` the
fitted ``io_cost`` of the saved profiles (``DEVICE-BACKEND.json``, charged per byte of input
*and* output) is shown beside.

Usage::

    python benchmarks/call_copy.py --work /tmp/callcopy --profiles /tmp/predbench/profiles
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, settings, stamp, write  # noqa: E402

SIZES = (1024, 8192, 32768, 100352, 301056, 602112, 1204224)
TARGETS = {"onnxruntime": "onnx", "litert": "tflite"}


def export_models(work: Path) -> dict[tuple[str, int], Path]:
    """One artifact per backend and input size under ``work`` (reused when there)."""
    import torch

    from edgevit.export import Piece, export

    class OneElement(torch.nn.Module):
        def forward(self, x):
            return x[:, :1] + 1.0

    paths = {}
    for backend, target in TARGETS.items():
        for size in SIZES:
            name = f"input{size}"
            folder = work / f"{name}-{target}-fp32"
            if not (folder / "manifest.json").is_file():
                x = np.random.default_rng(size).standard_normal((1, size)).astype(np.float32)
                export(Piece(OneElement().eval(), x, calibration=x, name=name, classifies=False,
                             note="a call's input copying"), target=target, precision="fp32", out=work, verify=False,
                       quiet=True, progress=False)
            paths[(backend, size)] = folder
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgevit-callcopy"))
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--profiles", type=Path, help="a folder of saved profiles (benchmarks/predictor.py --work W: W/profiles)")
    parser.add_argument("--out", type=Path, default=RESULTS / "call_copy")
    args = parser.parse_args(argv)

    from edgevit.cluster.fleet import Fleet, FleetDevice, cgroups_available
    from edgevit.probe.timers import AgentTimer

    paths = export_models(args.work)
    devices = [FleetDevice("here", threads=2)]
    if cgroups_available():
        devices.append(FleetDevice("slow", threads=1, cpu_quota=0.5, cpu_period_ms=20.0))
    start = stamp()
    samples: dict[str, dict[int, list[float]]] = {}
    with Fleet(args.work / "fleet", devices) as fleet:
        for p in range(args.passes):
            for device in devices:
                url = f"127.0.0.1:{fleet.ports[device.name]}"
                for backend in TARGETS:
                    with AgentTimer(backend, url) as timer:
                        for size in (SIZES if p % 2 == 0 else SIZES[::-1]):
                            x = np.random.default_rng(size).standard_normal((1, size)).astype(np.float32)
                            ms = timer.time(paths[(backend, size)], {"x": x}, 20, 3, window_ms=100.0)
                            samples.setdefault(f"{device.name}-{backend}", {}).setdefault(size, []).append(ms)
            print(f"pass {p + 1}/{args.passes} done", flush=True)
    rows = []
    for key, by_size in samples.items():
        medians = [statistics.median(by_size[s]) for s in SIZES]
        slope, intercept = np.polyfit([4.0 * s for s in SIZES], medians, 1)
        device, backend = key.split("-", 1)
        rows.append({"device": device, "backend": backend, "ms": dict(zip(map(str, SIZES), medians, strict=True)),
                     "passes_ms": {str(s): by_size[s] for s in SIZES}, "ms_per_mb": slope * 1e6,
                     "intercept_ms": intercept, "profile_io_ms_per_mb": profile_io(args.profiles, key)})
    results = {"environment": stamp(start), "settings": settings(args), "sizes": list(SIZES),
               "devices": {d.name: {"threads": d.threads, "quota": d.cpu_quota, "period_ms": d.cpu_period_ms if d.cpu_quota else None}
                           for d in devices}, "rows": rows}
    write(args.out, results, markdown)
    return 0


def profile_io(folder: Path | None, key: str) -> float | None:
    """The per-byte copying cost the predictor fits to the saved profile ``key`` (ms per MB), or None."""
    if folder is None or not (folder / f"{key}.json").is_file():
        return None
    from edgevit.predict import fit, load_profile

    return fit(load_profile(folder / f"{key}.json")).io_ms_per_byte * 1e6


def markdown(results: dict) -> str:
    env, s = results["environment"], results["settings"]
    devices = "; ".join(f"`{name}` {d['threads']} thread(s)" + (f", {d['quota']} core per {d['period_ms']:g} ms" if d["quota"] else "")
                        for name, d in results["devices"].items())
    lines = ["# A call's cost per byte of input, device-side", "",
             f"Written by `benchmarks/call_copy.py`. Machine: {env['cpu']}; load average at the start "
             f"{', '.join(f'{x:.2f}' for x in env['load_average_start'])}, at the end "
             f"{', '.join(f'{x:.2f}' for x in env['load_average_end'])}; {env['date']}. Agents: {devices}.", "",
             f"Models of one float input of E elements that do one element's work (`x[:, :1] + 1`), timed through the agent "
             f"as the probe times (device-side mean over back-to-back runs in a 100 ms window), median of {s['passes']} "
             "interleaved passes. `slope`: least squares over the sizes, ms per MB of input. `profile io`: the per-byte "
             "copying cost the predictor fitted to that device's saved profile (charged per byte of input and output).", "",
             "| device | backend | " + " | ".join(f"{int(e) * 4 / 1e6:.3g} MB" for e in results["sizes"]) +
             " | slope ms/MB | profile io ms/MB |", "|---|---|" + "---:|" * (len(results["sizes"]) + 2)]
    for row in results["rows"]:
        fitted = row["profile_io_ms_per_mb"]
        lines.append(f"| {row['device']} | {row['backend']} | " + " | ".join(f"{v:.4f}" for v in row["ms"].values()) +
                     f" | {row['ms_per_mb']:.3f} | {'-' if fitted is None else f'{fitted:.3f}'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
