"""An emulated fleet on one machine: device agents in their own processes, each behind a link
emulator, and the device file that reaches them. For tests, benchmarks, and rehearsing a
deployment before there are boards.

Each device is ``edgevit serve`` (a real process: kill it with a real signal) with its own
repository, behind a :class:`~edgevit.cluster.emulate.LinkProxy` that adds one-way latency and
a bandwidth limit (this kernel has no netem) and can cut the link. With ``cpu_quota`` (cores)
and root on a machine with the cgroup v1 ``cpu`` controller, the agent runs in its own cgroup
with ``cpu.cfs_quota_us`` set, playing a slower board; without root or cgroups a quota is an
error, and tests use none.

Example:
    >>> devices = [FleetDevice(f"dev{i}", cpu_quota=0.25, link=LinkSpec(1.0, 100)) for i in range(4)]
    >>> with Fleet("fleet/", devices) as fleet:
    ...     fleet.write_devices("fleet/devices.toml")      # addresses are the links' ends
    ...     fleet.kill("dev2"); fleet.restart("dev2")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevit.cluster.emulate import LinkProxy, LinkSpec
from edgevit.errors import InvalidArgumentError

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
CFS_PERIOD_US = 100_000
SERVE = "import sys; from edgevit.cli import main; sys.exit(main(sys.argv[1:]))"
READY = re.compile(r"ready: serving \d+ model\(s\) from .* on 127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class FleetDevice:
    """One emulated device.

    Attributes:
        name: its name in the device file.
        memory_mb: the memory the device file says it has for models.
        cpu_quota: cores it may use (cgroup v1 ``cpu``, needs root); None: unlimited.
        cpu_period_ms: the quota's accounting period. The agent runs at full speed until it has
            used ``cpu_quota * period`` of CPU, then waits for the next period: a model longer than
            the period runs ``1 / cpu_quota`` times slower, a much shorter one at full speed
            unless it meets a throttled moment. The kernel's smallest quota is 1 ms per period, so
            the shortest period is ``1 / cpu_quota`` ms (4 ms for 0.25 core); that one emulates a
            uniformly slower CPU most closely. Measured on this project's machine at 0.25 core, a
            5 ms model called back to back or after 30 ms idle: 21.4 and 21.9 ms with a 4 ms
            period, 21.4 and 11.0 ms with 10 ms, 20.9 and 6.1 ms with 20 ms (a device that is fast
            or slow depending on how often it is asked). 100 ms is the kernel's default.
        threads: the agent's ``--threads``.
        link: latency and bandwidth between the coordinator and it.
        cpus: pin the agent's process to these CPUs (``os.sched_setaffinity``); empty: wherever the
            scheduler puts it. A quota is handed out to each CPU's run queue in slices, so an agent
            that wanders between CPUs can find its period's runtime held on the other one.
    """

    name: str
    memory_mb: float = 512.0
    cpu_quota: float | None = None
    cpu_period_ms: float = CFS_PERIOD_US / 1000
    threads: int = 1
    link: LinkSpec = field(default_factory=LinkSpec)
    cpus: tuple[int, ...] = ()


def shortest_period_ms(cores: float) -> float:
    """The shortest quota period (ms) the kernel allows for a quota of ``cores``: 1 ms of CPU per
    period at least (``cpu.cfs_quota_us >= 1000``), and a period of 1 ms at least (4 ms for 0.25 core)."""
    return max(1.0, 1.0 / cores)


def cgroups_available() -> bool:
    """Whether agents can be given a CPU quota here (root and the cgroup v1 ``cpu`` controller)."""
    return os.geteuid() == 0 and (CGROUP_CPU / "cpu.cfs_quota_us").exists()


class _LinkProcess:
    """A link emulator in a process of its own (``python -m edgevit.cluster.emulate``): for
    measurements, so that forwarding bytes does not take the coordinator's CPU and GIL. Its link
    is fixed while it runs (no cut or set_link)."""

    def __init__(self, upstream: str, spec: LinkSpec, log: Path) -> None:
        command = [sys.executable, "-m", "edgevit.cluster.emulate", "--upstream", upstream,
                   "--latency-ms", str(spec.latency_ms)] + (["--mbps", str(spec.mbps)] if spec.mbps else [])
        self.spec = spec
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=open(log, "a"), text=True)  # noqa: SIM115
        line = self.process.stdout.readline()
        match = re.search(r"on 127\.0\.0\.1:(\d+) ->", line)
        if not match:
            self.stop()
            raise RuntimeError(f"the link emulator for {upstream} did not start: {line!r}; see {log}")
        self.address = f"127.0.0.1:{match.group(1)}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.stdout.close()

    def _fixed(self, *args: Any) -> None:
        raise InvalidArgumentError("this fleet's links run in their own processes (links_in_processes=True); "
                                   "they cannot be cut or changed while running")

    cut = restore = set_link = _fixed


class Fleet:
    """Agents and links for a list of :class:`FleetDevice` (see the module docstring).

    ``links_in_processes``: each link emulator in a process of its own instead of a thread of
    this one (for measurements: forwarding then costs this process nothing; links are fixed)."""

    def __init__(self, root: str | Path, devices: list[FleetDevice], agent_args: tuple[str, ...] = (),
                 links_in_processes: bool = False) -> None:
        names = [d.name for d in devices]
        if len(set(names)) != len(names) or not names:
            raise InvalidArgumentError(f"a fleet needs devices with distinct names, got {names}")
        for d in devices:
            if d.cpu_quota is None:
                continue
            if not 1 <= d.cpu_period_ms <= 1000:
                raise InvalidArgumentError(f"{d.name}: cpu_period_ms is {d.cpu_period_ms:g}; the kernel allows "
                                           "1 to 1000 ms (cpu.cfs_period_us)")
            if not d.cpu_quota > 0:
                raise InvalidArgumentError(f"{d.name}: cpu_quota is {d.cpu_quota:g}; give the cores it may use "
                                           "(> 0, e.g. 0.25), or None for no quota")
            if d.cpu_period_ms < shortest_period_ms(d.cpu_quota):
                raise InvalidArgumentError(
                    f"{d.name}: a quota of {d.cpu_quota:g} core per {d.cpu_period_ms:g} ms period is "
                    f"{d.cpu_quota * d.cpu_period_ms:g} ms of CPU per period; the kernel's smallest is 1 ms "
                    f"(cpu.cfs_quota_us >= 1000): use a period of at least {shortest_period_ms(d.cpu_quota):g} ms")
        usable = os.sched_getaffinity(0)
        for d in devices:
            if not set(d.cpus) <= usable:
                raise InvalidArgumentError(f"{d.name}: cpus {list(d.cpus)} are not all usable here; this process may "
                                           f"run on CPUs {sorted(usable)}")
        if any(d.cpu_quota is not None for d in devices) and not cgroups_available():
            raise InvalidArgumentError("cpu_quota needs root and the cgroup v1 cpu controller "
                                       f"({CGROUP_CPU}); run without quotas, or as root on such a machine")
        self.root = Path(root)
        self.devices = {d.name: d for d in devices}
        self.agent_args = tuple(agent_args)
        self.links_in_processes = links_in_processes
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.links: dict[str, Any] = {}
        self.logs: dict[str, Path] = {}

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> Fleet:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for name in self.devices:
                self._start_agent(name)
                upstream, spec = f"127.0.0.1:{self.ports[name]}", self.devices[name].link
                self.links[name] = (_LinkProcess(upstream, spec, self.root / f"{name}.link.log")
                                    if self.links_in_processes else LinkProxy(upstream, spec).start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for link in self.links.values():
            link.stop()
        self.links = {}
        for name, process in list(self.processes.items()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._remove_cgroup(name)
        self.processes = {}

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a device's agent with a real signal (SIGKILL: no drain, no goodbye)."""
        process = self.processes[name]
        process.send_signal(sig)
        process.wait(30)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start a device's agent again, on the same port and repository (its link stays)."""
        if self.processes[name].poll() is None:
            raise InvalidArgumentError(f"{name}'s agent is still running; kill it first")
        self._start_agent(name, port=self.ports[name], timeout=timeout)

    def cut(self, name: str) -> None:
        self.links[name].cut()

    def restore(self, name: str) -> None:
        self.links[name].restore()

    # -- the device file ------------------------------------------------------------------------

    def address(self, name: str) -> str:
        return self.links[name].address

    def write_devices(self, path: str | Path, speed: dict[str, float] | None = None,
                      profiles: dict[str, str | Path] | None = None) -> Path:
        """A device file for the fleet: each device's address is its link's end.

        ``speed`` overrides a device's relative speed (default: its CPU quota); a device in
        ``profiles`` points at that profile file (``edgevit devices probe``) instead of a speed."""
        lines = []
        for name, device in self.devices.items():
            relative = (speed or {}).get(name, device.cpu_quota or 1.0)
            profile = (profiles or {}).get(name)
            lines += ["[[device]]", f'name = "{name}"', f"memory_mb = {device.memory_mb:g}",
                      f"profile = {json.dumps(str(Path(profile).resolve()))}" if profile else f"speed = {relative:g}",
                      f'speed_origin = "emulated: {device.cpu_quota or "unlimited"} cores, {device.threads} thread(s)"',
                      f"link_mbps = {device.link.mbps or 10000:g}", f"link_latency_ms = {device.link.latency_ms:g}",
                      f'address = "{self.address(name)}"', ""]
        from edgevit._files import write_text

        return write_text(path, "\n".join(lines))

    def rss_bytes(self, name: str) -> int:
        for line in Path(f"/proc/{self.processes[name].pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    # -- internals ------------------------------------------------------------------------------

    def _start_agent(self, name: str, port: int = 0, timeout: float = 60.0) -> None:
        device = self.devices[name]
        log = self.root / f"{name}.log"
        self.logs[name] = log
        offset = log.stat().st_size if log.exists() else 0
        # pinned before the CLI is even imported: every thread the agent starts inherits it
        pin = f"import os; os.sched_setaffinity(0, {set(device.cpus)!r}); " if device.cpus else ""
        command = [sys.executable, "-c", pin + SERVE, "serve", "--port", str(port), "--threads", str(device.threads),
                   "--repository", str(self.root / name), "--name", name, "--drain-seconds", "5", *self.agent_args]
        with open(log, "a") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(device.threads)})
        self.processes[name] = process
        if device.cpu_quota is not None:
            self._join_cgroup(name, process.pid, device.cpu_quota, round(device.cpu_period_ms * 1000))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")[offset:]
            match = READY.search(text)
            if match:
                self.ports[name] = int(match.group(1))
                return
            if process.poll() is not None:
                raise RuntimeError(f"the agent of {name} exited with {process.returncode}:\n{text[-2000:]}")
            time.sleep(0.05)
        process.kill()
        raise RuntimeError(f"the agent of {name} was not ready within {timeout:g} s; see {log}")

    def _join_cgroup(self, name: str, pid: int, cores: float, period_us: int) -> None:
        group = CGROUP_CPU / f"edgevit-fleet-{os.getpid()}-{name}"
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(period_us))
        (group / "cpu.cfs_quota_us").write_text(str(round(cores * period_us)))  # >= 1000 (1 ms): __init__ checks
        (group / "cgroup.procs").write_text(str(pid))

    def _remove_cgroup(self, name: str) -> None:
        group = CGROUP_CPU / f"edgevit-fleet-{os.getpid()}-{name}"
        if group.exists():
            with contextlib.suppress(OSError):  # a process still in it: the kernel keeps the group
                group.rmdir()


def main(argv: list[str] | None = None) -> int:
    """``python -m edgevit.cluster.fleet --devices 3 --root fleet/``: run an emulated fleet until Ctrl-C.

    Starts the agents and links, writes ``<root>/devices.toml`` (addresses included) and waits;
    SIGINT or SIGTERM stops everything. Errors print as ``ErrorType: message``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edgevit.cluster.fleet",
                                     description="Run an emulated fleet of device agents behind link emulators.")
    parser.add_argument("--devices", type=int, default=3, help="how many devices (dev0, dev1, ...; default 3)")
    parser.add_argument("--root", default="fleet", help="folder for the repositories, logs and devices.toml")
    parser.add_argument("--memory-mb", type=float, default=512.0)
    parser.add_argument("--latency-ms", type=float, default=1.0, help="one-way link latency (default 1)")
    parser.add_argument("--mbps", type=float, default=100.0, help="link bandwidth per direction (default 100)")
    parser.add_argument("--quota", type=float, default=None, help="CPU cores per device (root + cgroup v1 cpu)")
    parser.add_argument("--threads", type=int, default=1, help="each agent's --threads (default 1)")
    args = parser.parse_args(argv)
    try:
        if args.devices < 1:
            raise InvalidArgumentError(f"--devices must be at least 1, got {args.devices}")
        link = LinkSpec(latency_ms=args.latency_ms, mbps=args.mbps)
        devices = [FleetDevice(f"dev{i}", args.memory_mb, args.quota, args.threads, link) for i in range(args.devices)]
        with Fleet(args.root, devices) as fleet:
            path = fleet.write_devices(Path(args.root) / "devices.toml")
            for name in fleet.devices:
                print(f"{name}: agent on 127.0.0.1:{fleet.ports[name]}, reached at {fleet.address(name)} "
                      f"({link.describe()}); log {fleet.logs[name]}")
            print(f"wrote {path}; Ctrl-C stops the fleet", flush=True)
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait()
    except InvalidArgumentError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
