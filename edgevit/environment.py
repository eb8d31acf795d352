"""What machine a measurement came from: the stamp every benchmark result and every device
agent's record carries (imports the standard library and numpy only).

Numbers without their machine are not worth keeping; the stamp records the CPU, how many
cores this process may use, the OS and Python, and the 1-minute load average when the run
started (on a shared machine a high load explains slow numbers).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Environment:
    """The machine and software a benchmark ran on. ``None`` means unknown, never zero."""

    cpu_model: str
    cores_logical: int | None
    cores_physical: int | None
    cores_usable: int | None
    machine: str
    os: str
    python: str
    numpy: str
    edgevit: str
    load_average_1m: float | None
    memory_total_bytes: int | None
    started_utc: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for table headers and plot titles."""
        cores = f"{self.cores_usable or self.cores_logical} cores"
        load = f", load {self.load_average_1m:.1f}" if self.load_average_1m is not None else ""
        return f"{self.cpu_model} ({cores}{load}), {self.os}, Python {self.python}"


def environment() -> Environment:
    """Describe this machine now."""
    import numpy as np

    from edgevit import __version__

    return Environment(
        cpu_model=cpu_model(),
        cores_logical=os.cpu_count(),
        cores_physical=_physical_cores(),
        cores_usable=usable_cores(),
        machine=platform.machine(),
        os=platform.platform(terse=False),
        python=platform.python_version(),
        numpy=np.__version__,
        edgevit=__version__,
        load_average_1m=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        memory_total_bytes=_memory_total(),
        started_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def usable_cores() -> int | None:
    """The cores this process may run on (its CPU affinity; the logical cores where that is unknown)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def is_macos() -> bool:
    """True on macOS, where Core ML runs (elsewhere the reference interpreter stands in)."""
    return platform.system() == "Darwin"


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo, sysctl or platform (best effort)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                value = line.split(":", 1)[1].strip()
                if value and not value.isdigit():
                    return value
    if is_macos():
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.cpu_count(logical=False)


def _memory_total() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def cpu_flags() -> tuple[str, ...]:
    """The CPU's feature flags (``avx2``, ``avx512_vnni``, ``asimddp``...), sorted; empty when
    they cannot be read (best effort: Linux ``/proc/cpuinfo``, macOS ``sysctl``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("flags", "features")) and ":" in line:
                return tuple(sorted(set(line.split(":", 1)[1].split())))
        return ()
    if is_macos():
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                                 capture_output=True, text=True, timeout=5)
            return tuple(sorted({flag.lower() for flag in out.stdout.split()}))
        except OSError:
            return ()
    return ()
