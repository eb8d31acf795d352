"""The ``prepare`` step: one model, ready for any number of targets.

:func:`prepare_model` builds the zoo model (or takes the module given), computes the
PyTorch reference outputs on the verification inputs with the *original* model, and then
reparameterizes it: every export starts from ``model.reparameterize()``. The result is
shared by all targets and precisions of one ``edgevit export`` call.

Besides zoo names and edge-contract modules, a :class:`Piece` goes through the same pipeline: a
module that brings its own real inputs, such as the sub-models, fusion head and pipeline stages
of ``edgevit split``. Its input may be an image or any intermediate tensor; it is verified on
its own inputs (in domain) and quantized precisions are calibrated on its own calibration inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import InvalidArgumentError
from edgevit.export.options import ExportOptions
from edgevit.export.verify import Samples, make_samples


@dataclass(frozen=True)
class Piece:
    """A module exported with its own real inputs (a split's sub-model, fusion head or stage).

    Attributes:
        module: a torch module taking one float32 tensor ``[batch, ...]`` and returning one.
        inputs: real inputs ``[N, ...]`` (float32; NCHW images when ``image_input``), not used
            for calibration; verification judges the artifact on them.
        calibration: real inputs ``[M, ...]`` that quantized precisions calibrate on (None: a
            quantized precision is refused).
        name: the artifact's model name.
        image_input: the inputs are preprocessed images (then random tensors and sample photos,
            preprocessed per ``preprocessing``, are checked too, and the manifest describes the
            preprocessing); otherwise an intermediate tensor.
        preprocessing: the images' :class:`~edgevit.data.PreprocessSpec` (image input only).
        classifies: the output is class logits, so top-1 agreement is judged; else it is a
            feature tensor, judged by error and cosine similarity only.
        labels: class names of a classifying output.
        family: what kind of piece it is, for the manifest (``edgevit-split:fusion``).
        note: where the module and its weights came from (the manifest's ``weights.note``).
    """

    module: Any
    inputs: np.ndarray
    calibration: np.ndarray | None = None
    name: str = "piece"
    image_input: bool = False
    preprocessing: Any = None
    classifies: bool = True
    labels: list[str] | None = None
    family: str | None = None
    note: str = "a piece built by edgevit"

    def __post_init__(self) -> None:
        inputs = np.asarray(self.inputs)
        if inputs.ndim < 2 or not len(inputs) or inputs.dtype.kind != "f":
            raise InvalidArgumentError(f"piece {self.name!r}: inputs must be a float array [N, ...] with N >= 1, "
                                       f"got {inputs.dtype} {inputs.shape}")
        calibration = self.calibration
        if calibration is not None and (np.shape(calibration)[1:] != inputs.shape[1:] or not len(calibration)):
            raise InvalidArgumentError(f"piece {self.name!r}: calibration inputs {np.shape(calibration)} do not have "
                                       f"the shape of its inputs {inputs.shape}")
        if self.image_input and (self.preprocessing is None or inputs.ndim != 4):
            raise InvalidArgumentError(f"piece {self.name!r}: an image input needs NCHW inputs and its preprocessing")


@dataclass(frozen=True)
class PreparedModel:
    """A reparameterized model with everything the manifest and verification need."""

    name: str
    model: Any  # the reparameterized torch module (float32, eval)
    image_size: int | None  # None: the input is not an image
    num_outputs: int
    model_meta: dict[str, Any]
    weights: dict[str, Any]
    labels: list[str] | None
    preprocess: Any  # edgevit.models.Preprocess (everything but size and layout); None: not an image
    samples: Samples
    reference: np.ndarray
    #: one input's shape, channels first (``(3, S, S)`` for an image)
    input_shape: tuple[int, ...] = ()
    #: the output is class logits (top-1 agreement is judged)
    classifies: bool = True
    #: a piece's own calibration inputs (None: quantized precisions read ``options.calib``)
    calibration: np.ndarray | None = None
    #: a piece's image preprocessing, as given (overrides ``preprocess``)
    preprocessing_spec: Any = None

    @property
    def image_input(self) -> bool:
        return self.image_size is not None

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.reference.shape[1:])

    def preprocessing(self, layout: str = "NCHW") -> Any:
        """The full :class:`~edgevit.data.PreprocessSpec` written to the manifest (None: no image input)."""
        if self.preprocessing_spec is not None:
            return dataclasses.replace(self.preprocessing_spec, layout=layout)
        return None if self.preprocess is None else self.preprocess.spec(self.image_size, layout=layout)

    def example(self, options: ExportOptions) -> Any:
        """The tracing example: batch 2 for a dynamic batch (1 would be specialised), else the batch."""
        import torch

        from edgevit.export.graph import example_input

        batch = 2 if options.dynamic_batch else options.batch
        if self.image_input:
            return example_input(batch, self.image_size, options.layout)
        first = torch.from_numpy(np.ascontiguousarray(self.samples.nchw[:1], dtype=np.float32))
        return first.repeat(batch, *([1] * (first.dim() - 1)))

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

    if isinstance(source, Piece):
        return prepare_piece(source, options)
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
                         samples=samples, reference=reference, input_shape=(3, int(image_size), int(image_size)))


def prepare_piece(piece: Piece, options: ExportOptions) -> PreparedModel:
    """Prepare a :class:`Piece`: its own inputs are the judged samples (after random tensors and
    photos for an image input), its own calibration inputs calibrate quantized precisions."""
    import torch

    if options.weights is not None or options.image_size is not None or options.num_classes is not None:
        raise InvalidArgumentError("weights, image_size and num_classes apply to a zoo model given by name, "
                                   f"not to piece {piece.name!r}")
    inputs = np.ascontiguousarray(piece.inputs, dtype=np.float32)
    names = tuple(f"input_{i}" for i in range(len(inputs)))
    if piece.image_input:
        base = make_samples(piece.preprocessing)
        samples = Samples(base.names + names, base.kinds + ("held_out",) * len(names),
                          np.concatenate([base.nchw, inputs]))
    else:
        if options.channels_last:
            raise InvalidArgumentError(f"piece {piece.name!r} takes an intermediate tensor, not an image; "
                                       "channels_last applies to image inputs only")
        samples = Samples(names, ("real",) * len(names), inputs)
    module = piece.module.eval()
    with torch.no_grad():
        reference = np.concatenate([module(torch.from_numpy(samples.nchw[i:i + 1])).float().numpy()
                                    for i in range(len(samples))])
    deploy = module.reparameterize() if hasattr(module, "reparameterize") and not getattr(
        module, "is_reparameterized", False) else module
    size = int(inputs.shape[-1]) if piece.image_input else None
    meta = {"name": piece.name, "family": piece.family, "num_classes": int(reference.shape[-1]) if piece.classifies else None,
            "params": int(sum(p.numel() for p in module.parameters())), "gmacs": None, "image_size": size}
    calibration = None if piece.calibration is None else np.ascontiguousarray(piece.calibration, dtype=np.float32)
    return PreparedModel(name=options.name or piece.name, model=deploy.eval(), image_size=size,
                         num_outputs=int(reference.shape[-1]), model_meta=meta,
                         weights={"path": None, "sha256": None, "note": piece.note}, labels=piece.labels,
                         preprocess=None, samples=samples, reference=reference, input_shape=tuple(inputs.shape[1:]),
                         classifies=piece.classifies, calibration=calibration,
                         preprocessing_spec=piece.preprocessing if piece.image_input else None)


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
