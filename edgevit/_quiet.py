"""Keeping converters' own printing out of the terminal, and keeping it for error messages.

Converters print from Python (progress bars, logging), from C++ (absl/MLIR logs written
straight to file descriptors 1 and 2) and through ``warnings``. Both helpers send all of it
to a temporary file for the duration of a block:

* :func:`captured_output`: the text is kept on the returned :class:`CapturedOutput`, so a
  failure can be explained from it (the export pipeline puts it in its error notes);
* :func:`quiet`: the same, the text thrown away (the quantizers' many candidate runs).

Captures nest: what an inner block caught is passed on to the enclosing one when it ends, so
the outer text still holds everything the converters said.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class CapturedOutput:
    """What a converter printed; ``text`` is filled when the block ends."""

    text: str = ""
    warnings: list[str] = field(default_factory=list)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text.strip().splitlines()[-lines:])


#: the root-logger handlers of the open captures, innermost last (only that one is attached)
_open: list[logging.Handler] = []


@contextlib.contextmanager
def captured_output() -> Iterator[CapturedOutput]:
    """Redirect fds 1 and 2, ``sys.stdout``/``sys.stderr``, logging and warnings to a buffer."""
    captured = CapturedOutput()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = _redirect_fds(sink.fileno())
        stream = io.TextIOWrapper(os.fdopen(os.dup(sink.fileno()), "wb"), encoding="utf-8",
                                  errors="replace", line_buffering=True)
        handler = logging.StreamHandler(stream)
        root = logging.getLogger()
        if _open:
            root.removeHandler(_open[-1])
        _open.append(handler)
        root.addHandler(handler)
        quiet_loggers = _quiet_library_loggers()
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream), \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield captured
        finally:
            for logger, level, propagate, handlers in quiet_loggers:
                logger.setLevel(level)
                logger.propagate = propagate
                logger.handlers = handlers
            root.removeHandler(handler)
            _open.remove(handler)
            if _open:
                root.addHandler(_open[-1])
            stream.flush()
            stream.close()
            _restore_fds(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")
            captured.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
            if captured.warnings:
                captured.text += "\n" + "\n".join(captured.warnings)
            if _open and saved and captured.text:  # fd 2 is the enclosing capture's file again
                with contextlib.suppress(OSError):
                    os.write(2, captured.text.encode("utf-8", errors="replace"))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence converters' prints (Python and C++), progress bars, warnings and logging for a block."""
    with captured_output():
        yield


def _redirect_fds(target_fd: int) -> list[tuple[int, int]]:
    saved = []
    for stream in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()
    for fd in (1, 2):
        try:
            saved.append((fd, os.dup(fd)))
            os.dup2(target_fd, fd)
        except OSError:  # no such descriptor (embedded interpreters): nothing to redirect
            continue
    return saved


def _restore_fds(saved: list[tuple[int, int]]) -> None:
    for fd, copy in saved:
        os.dup2(copy, fd)
        os.close(copy)


def _quiet_library_loggers() -> list[tuple[logging.Logger, int, bool, list[logging.Handler]]]:
    """Route converter loggers that own handlers bound to the real stderr through the root logger."""
    state = []
    for name in ("coremltools", "absl", "torch.onnx", "onnxscript", "litert_torch"):
        logger = logging.getLogger(name)
        state.append((logger, logger.level, logger.propagate, list(logger.handlers)))
        logger.handlers = []
        logger.propagate = True
    return state
