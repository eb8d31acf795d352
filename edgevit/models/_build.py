"""Building zoo models (imports torch): :func:`create_model` and what it needs.

:mod:`edgevit.models` re-exports these lazily, so that listing the zoo needs no torch.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import torch

from edgevit.errors import InvalidArgumentError
from edgevit.models import check_image_size, load_families
from edgevit.models._base import EdgeModel
from edgevit.models._checkpoint import Checkpoint, load_weights, read_checkpoint
from edgevit.models._info import MODELS, ModelInfo


@cache
def info_with_split_points(name: str) -> ModelInfo:
    """``name``'s registered info with its split points, read from a model built on the meta device."""
    info: ModelInfo = MODELS.meta(name)
    with torch.device("meta"):
        model = MODELS.get(name)()
    return dataclasses.replace(info, split_points=tuple(model.split_points()))


def create_model(
    name: str,
    weights: str | Path | Checkpoint | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
    **kwargs,
) -> EdgeModel:
    """Build zoo model ``name``, optionally loading a weights file.

    Args:
        name: a registered name (``list_models()``).
        weights: path to an official (or timm-named) checkpoint, ``.pth``/``.pt`` or
            ``.safetensors``. Loaded strictly; mismatches are listed in the error.
        num_classes: classifier size. With ``weights`` of another class count, only the
            head is re-initialised (with a warning). Defaults to the checkpoint's class count
            when weights are given, else the model's default (1000).
        image_size: square input size; fixed-size models rebuild their bias tables for it
            and refuse sizes they cannot take. Default: the size recorded in ``weights`` (what
            ``edgevit train`` trained at; ``model.image_size_source`` says where it came from),
            else the model's. A size that conflicts with the recorded one is refused.
        **kwargs: passed to the family's constructor (e.g. ``drop_path_rate``).

    Returns:
        The model in eval mode.
    """
    load_families()
    factory = MODELS.get(name)
    info: ModelInfo = MODELS.meta(name)
    ckpt = None
    if weights is not None:
        ckpt = weights if isinstance(weights, Checkpoint) else read_checkpoint(weights)
    image_size, source = _image_size(info, ckpt, image_size)
    if image_size is not None:
        check_image_size(info, image_size)
        kwargs["image_size"] = image_size
    if num_classes is not None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes <= 0:
            raise InvalidArgumentError(f"num_classes must be a positive integer, got {num_classes!r}")
        kwargs["num_classes"] = num_classes
    model = factory(**kwargs)
    if ckpt is not None and num_classes is None:
        # Keep the checkpoint's class count (read after the family's name mapping, so a
        # timm-named 22k head counts too).
        ckpt_classes = _checkpoint_classes(model, ckpt)
        if ckpt_classes is not None and ckpt_classes != getattr(model, "num_classes", ckpt_classes):
            kwargs["num_classes"] = ckpt_classes
            model = factory(**kwargs)
    model.model_name = name
    model.image_size_source = source
    if ckpt is not None:
        load_weights(model, ckpt, checkpoint_filter=getattr(model, "checkpoint_filter", None), model_name=name)
        model.labels = ckpt.labels
    return model.eval()


def recorded_image_size(ckpt: Checkpoint | None) -> int | None:
    """The input size a checkpoint says it was trained at (``edgevit train`` records it), or None."""
    value = (ckpt.metadata or {}).get("image_size") if ckpt is not None else None
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _image_size(info: ModelInfo, ckpt: Checkpoint | None, asked: int | None) -> tuple[int | None, str]:
    """The size to build at and where it came from: the recorded size unless one is asked for,
    which must then agree with it."""
    recorded = recorded_image_size(ckpt)
    if recorded is None:
        return asked, "asked for" if asked is not None else f"the model's default ({info.image_size})"
    if asked is not None and asked != recorded:
        raise InvalidArgumentError(
            f"image size {asked} conflicts with the {recorded} px the weights {ckpt.path.name!r} were trained at; "
            f"leave the image size out to use {recorded}, or train at {asked}"
        )
    return recorded, f"recorded in {ckpt.path.name}"


def _checkpoint_classes(model: EdgeModel, ckpt: Checkpoint) -> int | None:
    state_dict = ckpt.state_dict
    if hasattr(model, "checkpoint_filter"):
        try:
            state_dict = model.checkpoint_filter(dict(state_dict))
        except Exception:  # noqa: BLE001 - load_weights reports the real problem
            return None
    head = state_dict.get("head.weight")
    return int(head.shape[0]) if head is not None and head.ndim == 2 else None
