"""Running a plan folder on this machine: every piece in its own process, or all in this one.

:func:`run_local` runs each piece in a fresh local process (``python -m edgevit.cluster.piece``,
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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.cluster.plans import load_plan, plan_inputs, run_artifact
from edgevit.errors import EdgeVitError, InvalidArgumentError
from edgevit.partition.fusion_layout import FusionLayout, fusion_input
from edgevit.partition.plan import Plan

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


def run_in_process(plan_dir: str | Path, images: Any, backend: str = "auto", threads: int | None = None,
                   missing: Sequence[str] = ()) -> PlanResult:
    """Run every piece of the plan in this process, one after another.

    ``missing``: class-wise sub-models to leave out, as if their devices were down (see
    :func:`run_local`).
    """
    folder, plan = Path(plan_dir), load_plan(plan_dir)
    skip = _check_missing(plan, missing)
    x = plan_inputs(plan, images)
    seconds: dict[str, float] = {}
    if plan.strategy == "classwise":
        features: list[np.ndarray | None] = []
        for piece in plan.pieces:
            if piece.name in skip:
                features.append(None)
                continue
            start = time.perf_counter()
            features.append(run_artifact(folder / piece.artifact, x, backend, threads))
            seconds[piece.name] = time.perf_counter() - start
        logits = _fuse(folder, plan, features, backend, threads)
    else:
        logits = x
        for piece in plan.pieces:
            start = time.perf_counter()
            logits = run_artifact(folder / piece.artifact, logits, backend, threads)
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
    x = plan_inputs(plan, images)
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
    return run_artifact(folder / plan.fusion.artifact, fusion_input(features, dims, layout.presence), backend,
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
