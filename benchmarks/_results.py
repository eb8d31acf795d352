"""How a benchmark script records its run: the machine's stamp and the results files (not a benchmark).

Every script under ``benchmarks/`` writes ``<out>.json`` (the numbers, with the run's settings
and machine) and ``<out>.md`` (the same, for reading). :func:`stamp` gives the machine facts a
result needs to be read later (the CPU, the date, the load average, which the scripts take once
at the start and again at the end), and :func:`write` writes both files atomically: a run stopped
half-way leaves the previous results whole.

Example:
    >>> start = stamp()  # doctest: +SKIP
    >>> write(RESULTS / "call_copy", {"environment": stamp(start), "rows": rows}, markdown)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgevit._files import write_json, write_text
from edgevit.environment import cpu_model

__all__ = ["RESULTS", "settings", "stamp", "write"]

RESULTS = Path(__file__).resolve().parent / "results"


def stamp(start: dict[str, Any] | None = None, **versions: str) -> dict[str, Any]:
    """The machine's facts now: CPU, Python, ``versions`` given (``onnxruntime="1.23"``), the date
    and the load average. Given the stamp taken at the start, the result keeps its date and load
    average as ``load_average_start`` and adds this moment's as ``load_average_end``."""
    now = {"cpu": cpu_model(), "machine": platform.machine(), "python": platform.python_version(), **versions,
           "date": datetime.now(UTC).isoformat(timespec="seconds"), "load_average_start": list(os.getloadavg())}
    if start is None:
        return now
    return {**now, **start, "load_average_end": now["load_average_start"]}


def settings(args: Any) -> dict[str, Any]:
    """An ``argparse`` namespace as JSON data (paths as text)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def write(out: Path, results: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """``out.json`` and ``out.md`` (``markdown(results)``), each written atomically; says where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(results)  # rendered first: a rendering error leaves both files as they were
    write_json(out.with_suffix(".json"), results)
    write_text(out.with_suffix(".md"), text)
    print(f"wrote {out}.md and .json")
