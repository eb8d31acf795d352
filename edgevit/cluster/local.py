"""Running a plan folder on this machine: every piece in its own process, or all in this one.

:func:`run_local` runs each piece in a fresh local process (``python -m edgevit.split._piece``,
which loads its artifact with ``edgevit.runtime`` as a device would) and drives them with the
same class-wise and pipeline runners as a fleet of device agents
(:class:`edgevit.cluster.session.ClusterSession` over a
:class:`~edgevit.cluster.processes.ProcessTransport`): per image, the sub-models at once and the
fusion head here, or the stages one after another with several frames in flight. ``missing``
leaves class-wise sub-models out, to see the plan's degraded answers.

:func:`run_in_process` runs the same artifacts one after another in this process; the two
must agree exactly (same artifacts, same runtime). Neither imports torch.

Example:
    >>> from edgevit.cluster.local import run_local
    >>> result = run_local("plan/", ["img0.png", "img1.png"])
    >>> result.predictions, [result.labels[i] for i in result.predictions]
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import ArtifactError, EdgeVitError, InvalidArgumentError
from edgevit.partition.fusion_layout import FusionLayout, fusion_input
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
    """Read and validate ``plan.json``; every artifact folder it names must exist, and a class-wise
    plan's fusion layout must agree with its pieces."""
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
    if plan.strategy == "classwise":
        FusionLayout.from_plan(plan)  # presence_columns / feature_dims agree with the pieces
    return plan


def run_in_process(plan_dir: str | Path, images: Any, backend: str = "auto", threads: int | None = None,
                   missing: Sequence[str] = ()) -> PlanResult:
    """Run every piece of the plan in this process, one after another.

    ``missing``: class-wise sub-models to leave out, as if their devices were down (see
    :func:`run_local`).
    """
    folder, plan = Path(plan_dir), load_plan(plan_dir)
    skip = _check_missing(plan, missing)
    x = _inputs(plan, images)
    seconds: dict[str, float] = {}
    if plan.strategy == "classwise":
        features: list[np.ndarray | None] = []
        for piece in plan.pieces:
            if piece.name in skip:
                features.append(None)
                continue
            start = time.perf_counter()
            features.append(_run_artifact(folder / piece.artifact, x, backend, threads))
            seconds[piece.name] = time.perf_counter() - start
        logits = _fuse(folder, plan, features, backend, threads)
    else:
        logits = x
        for piece in plan.pieces:
            start = time.perf_counter()
            logits = _run_artifact(folder / piece.artifact, logits, backend, threads)
            seconds[piece.name] = time.perf_counter() - start
    return PlanResult(logits, logits.argmax(axis=1), plan.labels, seconds)


def run_local(plan_dir: str | Path, images: Any, backend: str = "auto", threads: int | None = 1,
              timeout: float = 600.0, missing: Sequence[str] = ()) -> PlanResult:
    """Run the plan with every piece in its own local process (see the module docstring).

    Args:
        images: preprocessed float32 ``[N, 3, S, S]``, or image files / HxWx3 uint8 arrays
            (preprocessed with the plan's preprocessing).
        backend / threads: for every piece's ``edgevit.runtime`` session.
        timeout: seconds each image may take.
        missing: names of class-wise sub-models not to start, as if their devices were down;
            the fusion head answers from the others (their features, a zero slice and a 0.0
            presence column for each missing one). Plans written before presence columns
            need every sub-model.

    Raises:
        ArtifactError: the plan folder is incomplete; EdgeVitError: a piece failed (its
            process's error message is passed on); InvalidArgumentError: ``missing`` names
            an unknown piece, every sub-model, or the plan cannot answer without one.
    """
    from edgevit.cluster.policy import Policy
    from edgevit.cluster.processes import ProcessTransport
    from edgevit.cluster.session import ClusterSession

    folder, plan = Path(plan_dir), load_plan(plan_dir)
    skip = _check_missing(plan, missing)
    x = _inputs(plan, images)
    placement = {p.name: (p.artifact, () if p.name in skip else (p.name,)) for p in plan.pieces}
    policy = Policy(deadline_ms=timeout * 1000, hedge=False, breaker_failures=1_000_000)
    with ClusterSession(folder, ProcessTransport(folder, backend, threads), placement, policy, threads=threads,
                        degrade=False) as session:
        try:
            result = session.run(x)
        except EdgeVitError as exc:
            raise EdgeVitError(f"a plan piece failed: {exc}") from None
    seconds: dict[str, float] = {}
    for answer in result.answers:
        for name, timing in answer.pieces.items():
            seconds[name] = seconds.get(name, 0.0) + (timing["compute_ms"] or 0.0) / 1000
    return PlanResult(result.logits, result.predictions, plan.labels, seconds)


def _fuse(folder: Path, plan: Plan, features: list[np.ndarray | None], backend, threads) -> np.ndarray:
    """The fusion head on the sub-models' features (None: missing), with presence columns
    when the plan's head takes them."""
    layout = FusionLayout.from_plan(plan)
    dims = layout.feature_dims or [f.shape[1] for f in features]  # a plan too old to record them: all present
    return _run_artifact(folder / plan.fusion.artifact, fusion_input(features, dims, layout.presence), backend,
                         threads)


def _check_missing(plan: Plan, missing: Sequence[str]) -> frozenset[str]:
    """``missing`` checked against the plan before anything runs."""
    if isinstance(missing, str):
        raise InvalidArgumentError(f"missing takes a list of sub-model names, e.g. [{missing!r}], got the string "
                                   f"{missing!r}")
    skip = frozenset(missing)
    if not skip:
        return skip
    names = [p.name for p in plan.pieces]
    if plan.strategy != "classwise":
        raise InvalidArgumentError(f"missing={sorted(skip)}: only a class-wise plan answers without some of its "
                                   f"pieces; this one is a {plan.strategy}, which needs all of {names}")
    unknown = sorted(skip - set(names))
    if unknown:
        raise InvalidArgumentError(f"missing names {unknown}, which this plan does not have; its sub-models are "
                                   f"{names}")
    if len(skip) == len(names):
        raise InvalidArgumentError(f"missing names every sub-model ({names}): the fusion head needs at least one")
    if not FusionLayout.from_plan(plan).presence:
        raise InvalidArgumentError(f"missing={sorted(skip)}, but this plan's fusion head takes features only (written "
                                   "before presence columns): it needs every sub-model; rewrite the plan with "
                                   "`edgevit split` for degraded answers")
    return skip


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
