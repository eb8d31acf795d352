"""A small progress bar for long work, on stderr, silent when not a terminal or quiet."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "train") as bar: bar.update(1, loss=0.3)``.

    Draws only when stderr is a TTY and ``enabled``; ``log()`` lines are printed whenever
    enabled is not False (so CI logs keep one line per epoch).
    """

    def __init__(self, total: int, desc: str, enabled: bool | None = None, stream=None) -> None:
        self.total = max(int(total), 1)
        self.desc = desc
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.draw = bool(tty if enabled is None else enabled and tty)
        self.quiet = enabled is False
        self.count = 0
        self.start = time.perf_counter()
        self.fields: dict[str, object] = {}

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.draw:
            self.stream.write("\n")
            self.stream.flush()

    def update(self, n: int = 1, **fields: object) -> None:
        self.count += n
        self.fields.update(fields)
        if not self.draw:
            return
        frac = min(self.count / self.total, 1.0)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.perf_counter() - self.start
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in self.fields.items())
        self.stream.write(f"\r{self.desc} [{bar}] {self.count}/{self.total} {elapsed:5.1f}s {extra}   ")
        self.stream.flush()

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self.draw:
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.write(message + "\n")
        self.stream.flush()


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
