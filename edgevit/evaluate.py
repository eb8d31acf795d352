"""Accuracy of a zoo model (PyTorch) or an exported artifact (runtime) on a labelled set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevit.data.datasets import ImageDataset, load_dataset, spec_for_source
from edgevit.data.preprocess import PreprocessSpec
from edgevit.errors import DataError, InvalidArgumentError


def topk_accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-1/top-5 in percent (numpy only)."""
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    return {
        "top1": float((topk[:, 0] == labels).mean() * 100),
        "top5": float((topk == labels[:, None]).any(axis=1).mean() * 100),
        "count": int(len(labels)),
    }


def artifact_logits(session: Any, images: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Run preprocessed images through a runtime session, batch by batch."""
    spec = session.input_specs[0]
    fixed = spec.shape[0]
    step = fixed if isinstance(fixed, int) else (batch or 32)
    layout = (getattr(spec, "layout", None) or "NCHW").upper()
    outs = []
    for i in range(0, len(images), step):
        chunk = images[i : i + step]
        if layout == "NHWC" and chunk.shape[1] == 3:
            chunk = chunk.transpose(0, 2, 3, 1)
        if isinstance(fixed, int) and len(chunk) < fixed:
            pad = np.repeat(chunk[-1:], fixed - len(chunk), axis=0)
            out = session.run({spec.name: np.ascontiguousarray(np.concatenate([chunk, pad]))})
            outs.append(next(iter(out.values()))[: len(chunk)])
        else:
            out = session.run({spec.name: np.ascontiguousarray(chunk)})
            outs.append(next(iter(out.values())))
    return np.concatenate(outs).astype(np.float32)


def _artifact_spec(manifest: Any, dataset: ImageDataset) -> PreprocessSpec:
    return spec_for_source(PreprocessSpec.from_dict(manifest.preprocessing), dataset.name, layout="NCHW")


def evaluate_source(source: str, data: str, split: str = "val", weights: str | None = None,
                    image_size: int | None = None, backend: str = "auto") -> dict[str, Any]:
    """Evaluate ``source`` (a zoo name, or an artifact folder/model file) on ``data``.

    ``weights`` and ``image_size`` build a zoo model; ``backend`` runs an artifact. Each is refused
    for the other kind of source rather than ignored."""
    is_artifact = Path(source).exists()
    if is_artifact and (weights is not None or image_size is not None):
        flag = "--weights" if weights is not None else "--image-size"
        raise InvalidArgumentError(f"{flag} builds a zoo model, but {source!r} is an artifact, which has its weights "
                                   f"and size; drop {flag}, or pass a zoo model name")
    if not is_artifact and backend != "auto":
        raise InvalidArgumentError(f"--backend chooses the runtime of an artifact, but {source!r} is a zoo model (run "
                                   "in PyTorch); drop --backend, or pass an artifact folder")
    dataset = load_dataset(data, split)
    if is_artifact:
        from edgevit import runtime

        with runtime.load(source, backend=backend) as session:
            manifest = getattr(session, "manifest", None)
            if manifest is None:
                raise DataError(f"{source!r} has no manifest, so its preprocessing is unknown; evaluate the artifact folder")
            _check_classes(manifest.labels, manifest.model.get("num_classes"), dataset)
            x, y = dataset.arrays(_artifact_spec(manifest, dataset))
            return topk_accuracy(artifact_logits(session, x), y)
    from edgevit.models import create_model
    from edgevit.train import dataset_spec, predict_logits

    model = create_model(source, weights=weights, image_size=image_size)
    _check_classes(getattr(model, "labels", None), getattr(model, "num_classes", None), dataset)
    x, y = dataset.arrays(dataset_spec(source, dataset, getattr(model, "image_size", None) or image_size))
    return topk_accuracy(predict_logits(model, x), y)


def _check_classes(labels: list[str] | None, num_classes: int | None, dataset: ImageDataset) -> None:
    if labels is not None and list(labels) != list(dataset.classes):
        raise DataError(
            f"the model's classes ({', '.join(map(str, labels[:12]))}) do not match the dataset's "
            f"({', '.join(dataset.classes[:12])})"
        )
    if num_classes is not None and num_classes != dataset.num_classes:
        raise DataError(
            f"the model has {num_classes} classes but the dataset {dataset.name!r} has {dataset.num_classes} "
            f"({', '.join(dataset.classes[:12])})"
        )
