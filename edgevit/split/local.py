"""Running a plan folder on this machine, each piece in its own process (numpy + runtime only).

:func:`run_local` starts one process per piece (a fresh interpreter running
:mod:`edgevit.split._piece`), each loading its artifact with ``edgevit.runtime`` as a device
would, and plays the coordinator:

* ``classwise``: every sub-model process receives the images and returns its feature
  vectors; the coordinator concatenates them in plan order and runs the fusion head;
* ``pipeline``: the stage processes form a chain, stdout to stdin; frames stream through
  it one at a time, so the stages work on different frames at once.

:func:`run_in_process` runs the same artifacts one after another in this process; the two
must agree exactly (same artifacts, same runtime). Neither imports torch.

Example:
    >>> from edgevit.partition import run_local
    >>> result = run_local("plan/", ["img0.png", "img1.png"])
    >>> result.predictions, [result.labels[i] for i in result.predictions]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import ArtifactError, EdgeVitError, InvalidArgumentError
from edgevit.partition.plan import PLAN_NAME, Plan

__all__ = ["PlanResult", "load_plan", "run_in_process", "run_local"]

@dataclass(frozen=True)
class PlanResult:
    """The plan's output for a batch of images.

    Attributes:
        logits: ``[N, C]`` final scores (fusion head or last stage).
        predictions: ``[N]`` arg-max class indices; ``labels[i]`` names class i.
        seconds: wall time per piece (in its own process for :func:`run_local`).
    """

    logits: np.ndarray
    predictions: np.ndarray
    labels: tuple[str, ...]
    seconds: dict[str, float] = field(default_factory=dict)


def load_plan(plan_dir: str | Path) -> Plan:
    """Read and validate ``plan.json``; every artifact folder it names must exist."""
    folder = Path(plan_dir)
    path = folder / PLAN_NAME
    if not path.is_file():
        raise ArtifactError(f"{str(folder)!r} is not a plan folder (no {PLAN_NAME}); write one with `edgevit split`")
    try:
        plan = Plan.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is corrupt: {exc}") from exc
    for piece in (*plan.pieces, *((plan.fusion,) if plan.fusion else ())):
        if not (folder / piece.artifact).is_dir():
            raise ArtifactError(f"plan {str(folder)!r} names artifact {piece.artifact!r} for {piece.name}, but it is missing")
    return plan


def run_in_process(plan_dir: str | Path, images: Any, backend: str = "auto", threads: int | None = None) -> PlanResult:
    """Run every piece of the plan in this process, one after another."""
    folder, plan = Path(plan_dir), load_plan(plan_dir)
    x = _inputs(plan, images)
    seconds: dict[str, float] = {}
    if plan.strategy == "classwise":
        features = []
        for piece in plan.pieces:
            start = time.perf_counter()
            features.append(_run_artifact(folder / piece.artifact, x, backend, threads))
            seconds[piece.name] = time.perf_counter() - start
        logits = _run_artifact(folder / plan.fusion.artifact, np.concatenate(features, axis=1), backend, threads)
    else:
        logits = x
        for piece in plan.pieces:
            start = time.perf_counter()
            logits = _run_artifact(folder / piece.artifact, logits, backend, threads)
            seconds[piece.name] = time.perf_counter() - start
    return PlanResult(logits, logits.argmax(axis=1), plan.labels, seconds)


def run_local(plan_dir: str | Path, images: Any, backend: str = "auto", threads: int | None = 1,
              timeout: float = 600.0) -> PlanResult:
    """Run the plan with every piece in its own process (see the module docstring).

    Each piece is ``python -m edgevit.split._piece ARTIFACT``: a fresh interpreter that loads
    its artifact with ``edgevit.runtime`` and talks over its stdin/stdout. Pipeline stages
    are chained stdout to stdin, as a shell pipe.

    Args:
        images: preprocessed float32 ``[N, 3, S, S]``, or image files / HxWx3 uint8 arrays
            (preprocessed with the plan's preprocessing).
        backend / threads: for every piece's ``edgevit.runtime`` session.
        timeout: seconds to wait for the pieces to finish.

    Raises:
        ArtifactError: the plan folder is incomplete; EdgeVitError: a piece failed (its
            process's error message is passed on).
    """
    folder, plan = Path(plan_dir), load_plan(plan_dir)
    x = _inputs(plan, images)
    if plan.strategy == "classwise":
        return _run_classwise(folder, plan, x, backend, threads, timeout)
    return _run_pipeline(folder, plan, x, backend, threads, timeout)


# -- the coordinator -----------------------------------------------------------------------------
def _start(folder: Path, piece, backend: str, threads: int | None, stdin=None):
    import subprocess
    import sys
    import tempfile

    command = [sys.executable, "-m", "edgevit.split._piece", str(folder / piece.artifact), "--name", piece.name,
               "--backend", backend]
    if threads is not None:
        command += ["--threads", str(threads)]
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _stop; a file, not a pipe, never blocks
    process = subprocess.Popen(command, stdin=stdin if stdin is not None else subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=errors)
    process.errors = errors
    return process


def _run_classwise(folder: Path, plan: Plan, x: np.ndarray, backend, threads, timeout) -> PlanResult:
    from edgevit.split._piece import STOP, send

    processes = [_start(folder, piece, backend, threads) for piece in plan.pieces]
    try:
        for process in processes:  # each reads the whole batch before it answers: no deadlock
            try:
                send(process.stdin, x)
                process.stdin.write(STOP)
                process.stdin.close()
            except (BrokenPipeError, OSError):
                pass  # the piece died; _collect reports its error
        features, seconds = [], {}
        for piece, process in zip(plan.pieces, processes):
            outputs, times = _collect(process, piece.name, timeout)
            features.append(outputs[0])
            seconds.update(times)
    finally:
        _stop(processes)
    logits = _run_artifact(folder / plan.fusion.artifact, np.concatenate(features, axis=1), backend, threads)
    return PlanResult(logits, logits.argmax(axis=1), plan.labels, seconds)


def _run_pipeline(folder: Path, plan: Plan, x: np.ndarray, backend, threads, timeout) -> PlanResult:
    import threading

    from edgevit.split._piece import STOP, send

    processes = []
    for piece in plan.pieces:
        upstream = processes[-1].stdout if processes else None
        processes.append(_start(folder, piece, backend, threads, stdin=upstream))
        if upstream is not None:
            upstream.close()  # the next stage owns it now

    def feed() -> None:
        try:
            for frame in x:  # frames one at a time: the stages work on different frames at once
                send(processes[0].stdin, frame[None])
            processes[0].stdin.write(STOP)
            processes[0].stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the first stage died; its error is reported below

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        outputs, seconds = _collect(processes[-1], plan.pieces[-1].name, timeout, others=processes[:-1])
    finally:
        feeder.join(timeout=5)
        _stop(processes)
    logits = np.concatenate(outputs) if outputs else np.zeros((0, len(plan.labels)), np.float32)
    return PlanResult(logits, logits.argmax(axis=1), plan.labels, seconds)


def _collect(process, name: str, timeout: float, others=()) -> tuple[list[np.ndarray], dict[str, float]]:
    """Read arrays and time lines from ``process`` until it says stop; raise its error if it fails."""
    import threading

    from edgevit.split._piece import STOP, receive

    outputs: list[np.ndarray] = []
    times: dict[str, float] = {}
    finished = threading.Event()
    failure: list[BaseException] = []

    def read() -> None:
        try:
            while (message := receive(process.stdout)) is not None:
                if isinstance(message, np.ndarray):
                    outputs.append(message)
                elif message == STOP:
                    break
                else:
                    _, who, value = message.decode().split()
                    times[who] = float(value)
        except BaseException as exc:  # noqa: BLE001 - re-raised below with the process's stderr
            failure.append(exc)
        finally:
            finished.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not finished.wait(timeout):
        raise EdgeVitError(f"{name} did not finish within {timeout:g} s")
    for process_ in (*others, process):
        if process_.wait(timeout=30) != 0 or (failure and process_ is process):
            process_.errors.seek(0)
            error = process_.errors.read().decode(errors="replace").strip().splitlines()
            raise EdgeVitError(f"a plan piece failed: {error[-1] if error else failure or 'no message'}")
    return outputs, times


def _stop(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.errors):
            if stream is not None and not stream.closed:
                stream.close()


# -- shared helpers ------------------------------------------------------------------------------
def _run_artifact(folder: Path, x: np.ndarray, backend: str, threads: int | None) -> np.ndarray:
    from edgevit.runtime import load

    with load(folder, backend=backend, threads=threads) as session:
        return run_session(session, x)


def run_session(session, x: np.ndarray) -> np.ndarray:
    spec = session.input_specs[0]
    fixed = spec.shape[0] if spec.shape else None
    step = fixed if isinstance(fixed, int) else max(len(x), 1)
    outputs = []
    for start in range(0, len(x), step):
        chunk = np.ascontiguousarray(x[start : start + step], dtype=np.float32)
        count = len(chunk)
        if isinstance(fixed, int) and count < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - count, axis=0)])
        result = session.run({spec.name: chunk})
        outputs.append(np.asarray(result[session.output_specs[0].name], dtype=np.float32)[:count])
    return np.concatenate(outputs)


def _inputs(plan: Plan, images: Any) -> np.ndarray:
    if isinstance(images, np.ndarray) and images.dtype == np.float32 and images.ndim == 4:
        size = plan.model.get("image_size")
        if images.shape[1] != 3 or (size and images.shape[2:] != (size, size)):
            raise InvalidArgumentError(
                f"preprocessed images must be float32 [N, 3, {size}, {size}] for this plan, got {list(images.shape)}; "
                "or pass image files / uint8 arrays to have them preprocessed"
            )
        return images
    from edgevit.data.preprocess import PreprocessSpec, preprocess_image

    spec = PreprocessSpec.from_dict(plan.preprocessing)
    items = images if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise InvalidArgumentError("no images given")
    return np.stack([preprocess_image(item, spec) for item in items]).astype(np.float32)
