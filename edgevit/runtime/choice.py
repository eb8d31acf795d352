"""``backend="auto"`` by measurement: the fastest backend for one artifact on one machine, recorded.

Several backends can open one file (``.onnx``: onnxruntime and OpenVINO), and which is faster
depends on the model, the CPU and how busy it is (``docs/runtime.md``). ``edgevit bench ARTIFACT
--backend all --keep-fastest`` times every installed backend that opens the artifact's file in
one interleaved run and writes what it measured into the artifact folder as
``backend_choice.json``; from then on ``runtime.load(artifact)`` (``backend="auto"``) runs the
measured fastest, as long as the record still describes this machine, this model file and
these backend versions. Otherwise ``auto`` keeps its fixed order (``backends_for``), and the
session says why (:attr:`edgevit.runtime.Session.backend_reason`).

The record is plain JSON::

    {"format": "edgevit-backend-choice", "format_version": 1, "fastest": "openvino",
     "p50_ms": {"onnxruntime": 5.02, "openvino": 4.11}, "versions": {...}, "threads": 2,
     "model_file": "model.onnx", "model_sha256": "...", "model_bytes": 5731245,
     "model_mtime_ns": ..., "machine": {...}, "measured": "2026-12-01T..."}

Example:
    >>> choice = read_choice("vit_tiny-onnx-fp32", "model.onnx", lambda: {"onnxruntime": "1.32.0", "openvino": "2026.4.1"})
    >>> choice.backend, choice.reason
    ('openvino', 'measured fastest here on 2026-12-01: openvino 4.11 ms, onnxruntime 5.02 ms (p50)')
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevit._files import file_sha256, write_json
from edgevit.artifact import BACKEND_CHOICE_NAME as CHOICE_FILE
from edgevit.errors import InvalidArgumentError

CHOICE_FORMAT = "edgevit-backend-choice"
CHOICE_VERSION = 1


@dataclass(frozen=True)
class Choice:
    """What ``auto`` runs an artifact with, and why.

    Attributes:
        backend: the measured fastest backend, or None when no record applies (``auto`` then
            keeps its fixed order).
        reason: one line for people: what was measured, or why the record was not used.
    """

    backend: str | None
    reason: str


def machine() -> dict[str, Any]:
    """What a measurement's machine is recognized by: CPU model, architecture, usable cores and
    a digest of the CPU's feature flags (a record from another machine does not apply)."""
    from edgevit.environment import cpu_flags, cpu_model, usable_cores

    flags = hashlib.sha256(" ".join(cpu_flags()).encode()).hexdigest()[:16]
    return {"cpu_model": cpu_model(), "arch": platform.machine(), "cores_usable": usable_cores(), "cpu_flags_sha256": flags}


def write_choice(artifact: str | Path, model_file: str, p50_ms: Mapping[str, float], versions: Mapping[str, str],
                 threads: int | None) -> Path:
    """Record in ``artifact`` (a folder) the backends timed on its ``model_file`` here, fastest first.

    Raises:
        InvalidArgumentError: fewer than two backends were timed (nothing was chosen between).
    """
    if len(p50_ms) < 2:
        raise InvalidArgumentError(f"keeping the fastest backend needs at least two backends timed on "
                                   f"{model_file}, got {', '.join(p50_ms) or 'none'}")
    folder = Path(artifact)
    order = sorted(p50_ms, key=lambda name: p50_ms[name])
    return write_json(folder / CHOICE_FILE, {
        "format": CHOICE_FORMAT, "format_version": CHOICE_VERSION, "fastest": order[0],
        "p50_ms": {name: round(float(p50_ms[name]), 4) for name in order},
        "versions": {name: versions.get(name, "") for name in order}, "threads": threads,
        "model_file": model_file, **_file_stamp(folder / model_file), "machine": machine(),
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})


def _file_stamp(file: Path) -> dict[str, Any]:
    """The model file as the record knows it: its digest, and its size and modification time so a
    later load hashes the file only when those differ."""
    if not file.is_file():
        return {"model_sha256": ""}
    stat = file.stat()
    return {"model_sha256": file_sha256(file), "model_bytes": stat.st_size, "model_mtime_ns": stat.st_mtime_ns}


def _file_changed(file: Path, record: Mapping[str, Any]) -> bool:
    """Whether ``file`` differs from the one measured: same size and modification time count as
    unchanged (as make and rsync judge); otherwise the digest decides."""
    stat = file.stat()
    if record.get("model_bytes") not in (None, stat.st_size):
        return True
    if record.get("model_bytes") == stat.st_size and record.get("model_mtime_ns") == stat.st_mtime_ns:
        return False
    return record.get("model_sha256") != file_sha256(file)


def read_choice(artifact: str | Path, model_file: str, installed: Callable[[], Mapping[str, str]],
                threads: int | None = None) -> Choice:
    """The recorded fastest backend of ``artifact`` if the record applies here, else why not.

    Args:
        artifact: the artifact folder.
        model_file: the file being loaded (``model.onnx``); a record of another file does not apply.
        installed: gives ``{backend: version}`` of the installed backends that open the file (asked
            only when a record is otherwise valid: it imports them); a record whose backends are not
            installed at the measured versions does not apply.
        threads: the thread count asked for (None: the backends' default); a record measured at
            another count does not apply.
    """
    path = Path(artifact) / CHOICE_FILE
    if not path.is_file():
        return Choice(None, "no measurement here (edgevit bench ARTIFACT --backend all --keep-fastest makes one)")
    try:
        record = json.loads(path.read_text())
        fastest, p50, versions = record["fastest"], record["p50_ms"], record["versions"]
        if record.get("format") != CHOICE_FORMAT or not isinstance(p50, dict) or not isinstance(versions, dict) \
                or fastest not in p50 or not all(isinstance(ms, (int, float)) for ms in p50.values()):
            raise ValueError("not a backend choice")
        if record.get("format_version") != CHOICE_VERSION:
            return Choice(None, f"{CHOICE_FILE} is format version {record.get('format_version')!r}; this edgevit "
                                f"reads {CHOICE_VERSION}: measure again")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Choice(None, f"{CHOICE_FILE} cannot be read ({type(exc).__name__}: {exc}): measure again")
    if record.get("model_file") != model_file:
        return Choice(None, f"{CHOICE_FILE} measured {record.get('model_file')!r}, not {model_file!r}")
    if record.get("machine") != machine():
        return Choice(None, f"{CHOICE_FILE} was measured on another machine ({_describe(record.get('machine'))})")
    if record.get("threads") != threads:
        def count(n: Any) -> str:
            return f"{n} threads" if n is not None else "the backends' default threads"

        return Choice(None, f"{CHOICE_FILE} was measured at {count(record.get('threads'))}, not {count(threads)}")
    file = Path(artifact) / model_file
    if file.is_file() and _file_changed(file, record):
        return Choice(None, f"{model_file} changed since {CHOICE_FILE} was measured")
    available = installed()
    changed = [f"{name} {versions.get(name)} (here {available.get(name, 'not installed')})" for name in p50
               if available.get(name) != versions.get(name)]
    if changed:
        return Choice(None, f"{CHOICE_FILE} timed other backend versions: {', '.join(changed)}")
    timed = ", ".join(f"{name} {float(ms):.3g} ms" for name, ms in p50.items())
    return Choice(fastest, f"measured fastest here on {str(record.get('measured', ''))[:10]}: {timed} (p50)")


def _describe(other: Any) -> str:
    if not isinstance(other, dict):
        return "unknown"
    return f"{other.get('cpu_model', '?')}, {other.get('arch', '?')}, {other.get('cores_usable', '?')} cores"
