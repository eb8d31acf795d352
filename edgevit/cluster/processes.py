"""Every piece of a plan in its own local process: the transport of ``run_local``.

Each piece is ``python -m edgevit.cluster.piece ARTIFACT`` (a fresh interpreter that loads its
artifact with ``edgevit.runtime``, no torch) spoken to over its stdin and stdout: one array in,
one array and its compute time out. The runners of :mod:`edgevit.cluster.session` drive these
processes exactly as they drive device agents, so a plan behaves the same on this machine and
across the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.cluster.transport import Answer, Transport
from edgevit.errors import AgentError


class ProcessTransport(Transport):
    """Pieces in subprocesses; ``device`` names a process and ``model`` the artifact folder it runs.

    Args:
        plan_dir: the plan folder (artifact folders are relative to it).
        backend / threads: each piece's ``edgevit.runtime`` session.
    """

    def __init__(self, plan_dir: str | Path, backend: str = "auto", threads: int | None = 1) -> None:
        self.plan_dir = Path(plan_dir)
        self.backend, self.threads = backend, threads
        self._processes: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        #: the last error of a piece whose process ended by itself: it is not started again
        self._failed: dict[str, str] = {}

    def _process(self, device: str, model: str) -> Any:
        process = self._processes.get(device)
        if process is None or process.poll() is not None:
            command = [sys.executable, "-m", "edgevit.cluster.piece", str(self.plan_dir / model), "--name", device,
                       "--backend", self.backend, "--each"]
            if self.threads is not None:
                command += ["--threads", str(self.threads)]
            errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close(); a file never blocks the piece
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
            process.errors = errors
            self._processes[device] = process
            self._locks.setdefault(device, threading.Lock())
        return process

    def _round_trip(self, device: str, model: str, array: np.ndarray) -> tuple[np.ndarray, float]:
        from edgevit.cluster.piece import receive, send

        with self._locks.setdefault(device, threading.Lock()):
            if device in self._failed:
                raise AgentError("UNAVAILABLE", self._failed[device])
            process = self._process(device, model)
            try:
                send(process.stdin, array)
                output = receive(process.stdout)
                timing = receive(process.stdout)
            except (BrokenPipeError, OSError, EOFError, ValueError):
                output = timing = None
            if not isinstance(output, np.ndarray) or not isinstance(timing, bytes):
                self._failed[device] = self._error(process)
                raise AgentError("UNAVAILABLE", self._failed[device])
            return output, float(timing.decode().split()[2])

    def _error(self, process: Any) -> str:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        process.errors.seek(0)
        lines = process.errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"the piece's process ended (exit code {process.returncode})"

    async def infer(self, device: str, model: str, inputs: dict[str, np.ndarray], timeout: float) -> Answer:
        (array,) = inputs.values()
        start = time.perf_counter()
        try:
            output, seconds = await asyncio.wait_for(asyncio.to_thread(self._round_trip, device, model, array),
                                                     timeout)
        except TimeoutError:
            self._kill(device)  # its stream is mid-message now: start it again next time
            raise AgentError("DEADLINE_EXCEEDED", f"{device} did not answer within {timeout:g} s") from None
        return Answer({"output": output}, (time.perf_counter() - start) * 1000, seconds * 1000)

    def _kill(self, device: str) -> None:
        process = self._processes.pop(device, None)
        if process is not None:
            process.kill()

    async def close(self) -> None:
        processes, self._processes = list(self._processes.values()), {}
        for process in processes:
            with contextlib.suppress(OSError):
                process.stdin.close()  # end of input: the piece says stop and exits
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.errors):
                stream.close()
