"""The model zoo: CAS-ViT, TinyViT, EfficientFormer V1/V2 and ViT/DeiT in plain PyTorch.

Example:
    >>> from edgevit.models import create_model, list_models, model_info
    >>> list_models("efficientformer*")
    ['efficientformer_l1', 'efficientformer_l3', 'efficientformer_l7', 'efficientformerv2_l', ...]
    >>> model = create_model("efficientformer_l1", weights="l1.pth")
    >>> model_info("efficientformer_l1").gmacs
    1.3

Every model follows the edge contract of :class:`~edgevit.models._base.EdgeModel`.

Importing this package imports no torch: the zoo's names and infos come from a catalogue
(:mod:`edgevit.models._catalog`, generated from the models and checked against them by a
test), so ``edgevit models``, ``list_models`` and ``model_info`` are instant; building a model
(:func:`create_model`) imports torch and the model's family.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

from edgevit.errors import InvalidArgumentError
from edgevit.models._catalog import register_catalogue
from edgevit.models._info import MODELS, ModelInfo, Preprocess, register_model

__all__ = [
    "MODELS",
    "EdgeModel",
    "ModelInfo",
    "Preprocess",
    "EdgeVitWarning",
    "check_image_size",
    "count_macs",
    "count_params",
    "create_model",
    "list_models",
    "load_families",
    "model_info",
    "read_checkpoint",
    "recorded_image_size",
    "register_model",
]

FAMILY_MODULES = ("cas_vit", "tiny_vit", "efficientformer", "efficientformer_v2", "vit")

#: torch-side names, imported on first use
_LAZY = {
    "create_model": "edgevit.models._build:create_model",
    "recorded_image_size": "edgevit.models._build:recorded_image_size",
    "EdgeModel": "edgevit.models._base:EdgeModel",
    "Checkpoint": "edgevit.models._checkpoint:Checkpoint",
    "EdgeVitWarning": "edgevit.models._checkpoint:EdgeVitWarning",
    "load_weights": "edgevit.models._checkpoint:load_weights",
    "read_checkpoint": "edgevit.models._checkpoint:read_checkpoint",
    "count_macs": "edgevit.models._count:count_macs",
    "count_params": "edgevit.models._count:count_params",
}

register_catalogue(MODELS)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name].split(":")
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgevit.models' has no attribute {name!r}")


@lru_cache(maxsize=1)
def load_families() -> None:
    """Import every family module (torch), so each zoo entry holds its factory."""
    for module in FAMILY_MODULES:
        importlib.import_module(f"edgevit.models.{module}")


def list_models(pattern: str = "*", include_test: bool = True) -> list[str]:
    """Registered model names matching the glob ``pattern`` (no torch needed).

    Args:
        pattern: a glob such as ``"tiny_vit*"``.
        include_test: include the tiny ``test_*`` variants used by the test suite.
    """
    names = MODELS.names(pattern)
    if not include_test:
        names = [n for n in names if not MODELS.meta(n).is_test]
    return names


def model_info(name: str) -> ModelInfo:
    """What is known of model ``name``: family, paper, params, GMACs, input size, split points...

    A zoo model's info comes from the catalogue without torch; a model registered at run
    time (or whose family is imported) is built on the meta device to read its split points.

    Raises:
        UnknownNameError: with the closest valid names.
    """
    info: ModelInfo = MODELS.meta(name)
    if MODELS.is_lazy(name):
        return info
    from edgevit.models._build import info_with_split_points

    return info_with_split_points(name)


def check_image_size(info: ModelInfo, image_size: int) -> None:
    """Refuse an input size that model ``info`` cannot be built for, naming what it takes."""
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0:
        raise InvalidArgumentError(f"image_size must be a positive integer, got {image_size!r}")
    if info.allowed_sizes is not None and image_size not in info.allowed_sizes:
        raise InvalidArgumentError(
            f"{info.name} cannot take {image_size}x{image_size} input: it takes "
            f"{info.size_policy()} (its attention-bias tables are sized for that)"
        )
    if image_size % info.size_multiple:
        lower = max(info.size_multiple, image_size - image_size % info.size_multiple)
        raise InvalidArgumentError(
            f"{info.name} cannot take {image_size}x{image_size} input: it takes {info.size_policy()}; "
            f"try {lower} or {lower + info.size_multiple}"
        )
