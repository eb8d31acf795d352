"""Cold start and peak memory of one model, measured in a fresh Python process.

Peak resident memory is a per-process high-water mark, so it can only be attributed to one
model in a process that holds nothing else: :func:`probe` starts one per artifact
(``python -m edgevit.bench.probe SPEC``), which imports numpy and the runtime, notes the
resident memory, then loads the model (timed: this includes importing the backend library,
as an app starting on a device would), runs it once (timed) and twice more, and reports
the high-water mark. It prints one JSON line.

Example:
    >>> probe({"kind": "artifact", "path": "test_vit-onnx-fp32", "backend": "auto", "threads": 2, "batch": 1})
    {'load_s': 0.21, 'first_run_s': 0.004, 'baseline_rss_bytes': ..., 'peak_rss_bytes': ...}
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgevit.errors import EdgeVitError


def probe(spec: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Run the probe for ``spec`` in a fresh interpreter and return its measurements."""
    command = [sys.executable, "-m", "edgevit.bench.probe", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise EdgeVitError(f"measuring memory of {spec.get('path') or spec.get('model')} took over {timeout:.0f}s") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeVitError(f"the memory probe for {spec.get('path') or spec.get('model')} failed: {last}")
    return json.loads(lines[-1])


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """The measurements, taken in this process (which must hold nothing else)."""
    import numpy as np

    import edgevit.runtime  # noqa: F401 - part of the baseline, as on a device

    baseline = _peak_rss()
    start = time.perf_counter()
    if spec["kind"] == "torch":
        call, close = _open_torch(spec)
    else:
        call, close = _open_artifact(spec, np)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    call()
    first_run_s = time.perf_counter() - start
    call()
    call()
    result = {"load_s": load_s, "first_run_s": first_run_s, "baseline_rss_bytes": baseline, "peak_rss_bytes": _peak_rss()}
    close()
    return result


def _open_artifact(spec: dict[str, Any], np):
    from edgevit.bench.inputs import random_feeds
    from edgevit.runtime import load, options_for

    extra = options_for(spec["path"], spec["backend"], spin=spec.get("spin"))
    session = load(spec["path"], backend=spec["backend"], threads=spec["threads"], **extra)
    feeds = random_feeds(session.input_specs, spec["batch"])
    return (lambda: session.run(feeds)), session.close


def _open_torch(spec: dict[str, Any]):
    from edgevit.bench.torch_eager import TorchEager

    model = TorchEager(spec["model"], threads=spec["threads"], batch=spec["batch"])
    return model.call, model.close


def _peak_rss() -> int | None:
    """This process's resident-memory high-water mark in bytes.

    On Linux this is ``VmHWM`` from /proc/self/status: ``getrusage``'s ``ru_maxrss`` is
    inherited from the parent across fork and exec, so a small child of a big parent would
    report the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil
        except ImportError:
            return None
        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
