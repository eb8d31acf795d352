"""Progress of a long benchmark on stderr: drawn only on a terminal, never when quiet."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "bench") as bar: bar.note("timing"); bar.update()``.

    ``enabled`` None draws when stderr is a terminal; False never draws; True draws even
    when stderr is not a terminal (one line per note then, no carriage returns).
    """

    def __init__(self, total: int, desc: str, enabled: bool | None = None, stream=None) -> None:
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.draw = tty if enabled is None else bool(enabled)
        self.tty = tty
        self.total, self.desc, self.count, self.status = max(total, 1), desc, 0, ""
        self.start = self.last_draw = time.perf_counter()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.draw and self.tty:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()

    def note(self, status: str) -> None:
        self.status = status
        if self.draw and not self.tty:
            self.stream.write(f"{self.desc}: {status}\n")
        self._render(force=True)

    def update(self, n: int = 1) -> None:
        self.count += n
        self._render()

    def _render(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not (self.draw and self.tty) or (not force and now - self.last_draw < 0.1):
            return
        self.last_draw = now
        done = min(self.count / self.total, 1.0)
        bar = "#" * int(done * 20) + "-" * (20 - int(done * 20))
        line = f"{self.desc} [{bar}] {done:4.0%} {now - self.start:5.1f}s  {self.status}"
        self.stream.write("\r" + line[:110].ljust(110))
        self.stream.flush()
