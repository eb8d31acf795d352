"""Plan folders as the coordinator reads them (torch-free): :func:`load_plan`, the images a plan
takes (:func:`plan_inputs`), and running one of its artifacts (:func:`run_session`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevit._files import read_json
from edgevit.errors import ArtifactError, InvalidArgumentError
from edgevit.partition.fusion_layout import FusionLayout
from edgevit.partition.plan import PLAN_NAME, Plan

__all__ = ["load_plan", "plan_inputs", "run_artifact", "run_session"]


def load_plan(plan_dir: str | Path) -> Plan:
    """Read and validate ``plan.json``; every artifact folder it names must exist, and a class-wise
    plan's fusion layout must agree with its pieces."""
    folder = Path(plan_dir)
    path = folder / PLAN_NAME
    if not path.is_file():
        raise ArtifactError(f"{str(folder)!r} is not a plan folder (no {PLAN_NAME}); write one with `edgevit split`")
    plan = Plan.from_dict(read_json(path))
    for piece in (*plan.pieces, *((plan.fusion,) if plan.fusion else ())):
        if not (folder / piece.artifact).is_dir():
            raise ArtifactError(f"plan {str(folder)!r} names artifact {piece.artifact!r} for {piece.name}, but it is missing")
    if plan.strategy == "classwise":
        FusionLayout.from_plan(plan)  # presence_columns / feature_dims agree with the pieces
    return plan


def run_artifact(folder: Path, x: np.ndarray, backend: str, threads: int | None) -> np.ndarray:
    """Load an artifact, run ``x`` through it, close it."""
    from edgevit.runtime import load

    with load(folder, backend=backend, threads=threads) as session:
        return run_session(session, x)


def run_session(session, x: np.ndarray) -> np.ndarray:
    """``x`` through a one-input session in batches its input allows (a fixed batch is padded)."""
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


def plan_inputs(plan: Plan, images: Any) -> np.ndarray:
    """Preprocessed float32 ``[N, 3, S, S]`` from image files, uint8 arrays, or already preprocessed images."""
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
