"""The one progress display of edgevit: training, exporting, splitting, quantizing and benchmarking.

Everything goes to stderr, so a command's stdout stays its result (``--json``, a table, the
paths written). One :class:`Progress` shows three things:

* a **bar** for counted work (:meth:`Progress.update`): steps done of the total, share, time
  spent, rate and ETA, fields such as the loss, and a status line (:meth:`Progress.note`);
  redrawn in place, so it is drawn only on a terminal;
* **steps** (:meth:`Progress.step`): ``[cas_vit-onnx-fp32] convert ... done in 3.1 s``;
* **log lines** (:meth:`Progress.log`): the record of the work (one per epoch, per split
  stage), stamped with the seconds since the start.

``enabled`` says how much: ``None`` (the default) draws the bar, steps and notes only on a
terminal and prints log lines everywhere (so a CI log keeps one line per epoch); ``True`` also
prints steps and notes off a terminal, one line each; ``False`` prints nothing (``--quiet``).

Example:
    >>> with Progress(100, "train") as bar:  # doctest: +SKIP
    ...     for step in range(100):
    ...         bar.update(1, loss=0.3)
    ...     bar.log("epoch 1: loss 0.3000")
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["Progress", "duration"]

BAR_WIDTH = 20
REDRAW_SECONDS = 0.1


class Progress:
    """A bar, steps and log lines on one stream (stderr); see the module docstring.

    Args:
        total: the number of steps of the bar; None for work that only logs or runs steps.
        desc: what the work is (``"train"``, ``"bench"``, ``"split"``); starts the bar and stamps log lines.
        enabled: None: bar, steps and notes on a terminal only, log lines always; True: all of them,
            also off a terminal; False: nothing.
        stream: where to write (stderr).
    """

    def __init__(self, total: int | None = None, desc: str = "", enabled: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.quiet = enabled is False
        self.live = not self.quiet and (tty or enabled is True)  # steps and notes shown
        self.draw = not self.quiet and tty and total is not None  # the bar, redrawn in place
        self.total = None if total is None else max(int(total), 1)
        self.desc = desc
        self.count = 0
        self.status = ""
        self.fields: dict[str, object] = {}
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._drawn = 0  # characters of the bar now on the line (0: none)
        self._open_step = ""  # a step's "label ..." written without its end

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._drawn:
            self._render(force=True)
            self._write("\n")
            self._drawn = 0

    def update(self, n: int = 1, **fields: object) -> None:
        """``n`` more steps done; ``fields`` (``loss=0.31``) are shown after the counts."""
        self.count += n
        self.fields.update(fields)
        self._render(force=self.total is not None and self.count >= self.total)

    def note(self, status: str) -> None:
        """What is being done now: the bar's status; its own line when there is no bar but ``live``."""
        self.status = status
        if self.draw:
            self._render(force=True)
        elif self.live:
            self.log_line(f"{self.desc}: {status}" if self.desc else status)

    def log(self, message: str) -> None:
        """A line of the record, stamped ``[desc   12.3s]``; printed unless quiet."""
        if not self.quiet:
            stamp = f"[{self.desc} {self.elapsed:7.1f}s]" if self.desc else f"[{self.elapsed:7.1f}s]"
            self.log_line(f"{stamp} {message}")

    def log_line(self, line: str) -> None:
        """Print ``line`` as it is, above the bar (which is drawn again below it)."""
        if self.quiet:
            return
        self._clear()
        self._write(line + "\n")
        self._render(force=True)

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """``label ... done in 3.1 s`` around a block (``failed after`` when it raises); shown when ``live``."""
        if not self.live:
            yield
            return
        self._clear()
        self._write(f"{label} ...")
        self._open_step = label
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self._end_step(label, f"failed after {time.perf_counter() - start:.1f} s")
            raise
        self._end_step(label, f"done in {time.perf_counter() - start:.1f} s")

    def _end_step(self, label: str, outcome: str) -> None:
        # still on the step's own line: finish it (a log file gets no carriage return); else a new line
        if self._open_step != label:
            self._write(f"{label} {outcome}\n")
        else:
            self._write(f"\r{label} {outcome}\n" if self.tty else f" {outcome}\n")
        self._open_step = ""
        self._render(force=True)

    def line(self) -> str:
        """The bar as it would be drawn now ("" without a total)."""
        if self.total is None:
            return ""
        elapsed = self.elapsed
        done = min(self.count / self.total, 1.0)
        filled = int(done * BAR_WIDTH)
        parts = [f"{self.desc} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done:4.0%} {self.count}/{self.total}",
                 duration(elapsed)]
        if self.count and elapsed > 0:
            parts.append(f"{self.count / elapsed:.3g}/s")
            if self.count < self.total:
                parts.append(f"ETA {duration(elapsed * (self.total - self.count) / self.count)}")
        parts += [f"{k}={_fmt(v)}" for k, v in self.fields.items()]
        if self.status:
            parts.append(f" {self.status}")
        return " ".join(parts)

    def _render(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.draw or (not force and now - self._last_draw < REDRAW_SECONDS):
            return
        if self._open_step:  # a step's line is open: the bar goes below it
            self._write("\n")
            self._open_step = ""
        self._last_draw = now
        width = max(shutil.get_terminal_size((120, 24)).columns - 1, 40)
        text = self.line()[:width]
        self._write("\r" + text.ljust(self._drawn))
        self._drawn = len(text)

    def _clear(self) -> None:
        if self._drawn:
            self._write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
        elif self._open_step:
            self._write("\n")
            self._open_step = ""

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def duration(seconds: float) -> str:
    """``"12.3s"``, ``"4:05"``, ``"1:02:03"``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
