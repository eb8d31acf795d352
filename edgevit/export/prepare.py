"""The ``prepare`` step: one model, ready for any number of targets.

:func:`prepare_model` builds the zoo model (or takes the module given), computes the
PyTorch reference outputs on the verification inputs with the *original* model, and then
reparameterizes it: every export starts from ``model.reparameterize()``. The result is
shared by all targets and precisions of one ``edgevit export`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import InvalidArgumentError
from edgevit.export.options import ExportOptions
from edgevit.export.verify import Samples, make_samples


@dataclass(frozen=True)
class PreparedModel:
    """A reparameterized model with everything the manifest and verification need."""

    name: str
    model: Any  # the reparameterized torch module (float32, eval)
    image_size: int
    num_outputs: int
    model_meta: dict[str, Any]
    weights: dict[str, Any]
    labels: list[str] | None
    preprocess: Any  # edgevit.models.Preprocess (everything but size and layout)
    samples: Samples
    reference: np.ndarray

    def preprocessing(self, layout: str = "NCHW") -> Any:
        """The full :class:`~edgevit.data.PreprocessSpec` written to the manifest."""
        return self.preprocess.spec(self.image_size, layout=layout)

    def example(self, options: ExportOptions) -> Any:
        """The tracing example: batch 2 for a dynamic batch (1 would be specialised), else the batch."""
        from edgevit.export.graph import example_input

        batch = 2 if options.dynamic_batch else options.batch
        return example_input(batch, self.image_size, options.layout)

    def exported_program(self, example: Any, options: ExportOptions) -> Any:
        """The model's ``torch.export`` graph as converters see it, to locate a failing op."""
        import torch

        from edgevit.export.graph import prepare_graph

        return torch.export.export(prepare_graph(self.model, options.layout, half=False), (example,))


def prepare_model(source: Any, options: ExportOptions) -> PreparedModel:
    """Build or adopt the model, compute reference outputs, reparameterize.

    Args:
        source: a zoo model name, or an ``nn.Module`` following the edge contract
            (``reparameterize()``); a plain module is exported as it is.
        options: weights, image size and class count apply to zoo names only.
    """
    import torch

    from edgevit.models import Preprocess

    if isinstance(source, str):
        model, info, weights = _build_zoo_model(source, options)
        name = options.name or source
    else:
        if options.weights is not None:
            raise InvalidArgumentError(
                "weights= applies to a zoo model given by name; load the weights into your module yourself"
            )
        model, info, weights = source.eval(), _info_of(source), {"path": None, "sha256": None, "note": "user module"}
        name = options.name or getattr(source, "model_name", None) or type(source).__name__
    image_size = getattr(model, "image_size", None) or options.image_size or (info.image_size if info else None)
    if not isinstance(image_size, int):
        raise InvalidArgumentError(f"the input size of {name} is unknown; pass image_size=...")
    preprocess = info.preprocess if info else Preprocess()
    samples = make_samples(preprocess.spec(image_size))
    with torch.no_grad():
        reference = model(torch.from_numpy(samples.nchw)).float().numpy()
    deploy = model.reparameterize() if hasattr(model, "reparameterize") and not getattr(
        model, "is_reparameterized", False) else model
    meta = _model_meta(name, info, model, image_size, reference.shape[-1])
    if getattr(model, "image_size_source", "").startswith("recorded"):
        meta["image_size_source"] = model.image_size_source  # the report says where the size came from
    return PreparedModel(name=name, model=deploy.eval(), image_size=int(image_size), num_outputs=int(reference.shape[-1]),
                         model_meta=meta, weights=weights, labels=getattr(model, "labels", None), preprocess=preprocess,
                         samples=samples, reference=reference)


def _build_zoo_model(name: str, options: ExportOptions) -> tuple[Any, Any, dict[str, Any]]:
    from edgevit._files import file_sha256
    from edgevit.models import create_model, model_info

    info = model_info(name)
    model = create_model(name, weights=options.weights, num_classes=options.num_classes, image_size=options.image_size)
    if options.weights is None:
        weights = {"path": None, "sha256": None, "note": "random init"}
    else:
        weights = {"path": str(Path(options.weights).resolve()), "sha256": file_sha256(options.weights)}
    return model, info, weights


def _info_of(model: Any) -> Any:
    from edgevit.models import list_models, model_info

    name = getattr(model, "model_name", None)
    return model_info(name) if name and name in list_models() else None


def _model_meta(name: str, info: Any, model: Any, image_size: int, num_classes: int) -> dict[str, Any]:
    params = sum(p.numel() for p in model.parameters())
    meta = {"name": name, "family": info.family if info else None, "num_classes": num_classes,
            "params": int(params), "gmacs": None, "image_size": int(image_size)}
    if info is not None:
        meta["zoo_name"] = info.name
        same_build = info.image_size == image_size and info.num_classes == num_classes
        meta["gmacs"] = info.gmacs if same_build else None
    return meta
