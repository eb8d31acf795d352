"""``split()``: the public entry point behind ``edgevit split``.

Steps: load (model, data, devices) -> check (the data's classes against the model's head)
-> build (the strategy from ``edgevit.split.STRATEGIES``) -> write (export every piece,
``plan.json``, atomically).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgevit.devices import Cluster, load_devices
from edgevit.errors import DataError, InvalidArgumentError
from edgevit.partition.plan import Plan
from edgevit.precision import PRECISIONS
from edgevit.split.options import SplitOptions

__all__ = ["split"]


def split(model: Any, data: str | Path | tuple | None, devices: str | Path | Cluster, out: str | Path,
          options: SplitOptions | None = None, *, weights: str | Path | None = None, image_size: int | None = None,
          progress: bool | None = None, **overrides: Any) -> Plan:
    """Split ``model`` across ``devices`` and write the plan folder ``out``.

    Args:
        model: a zoo name (with ``weights``) or a trained ``EdgeModel``.
        data: ``"digits"``, an image folder, or a ``(train, val)`` pair of
            :class:`~edgevit.data.datasets.ImageDataset`; needed by ``classwise``.
        devices: a device TOML file or a :class:`~edgevit.devices.Cluster`.
        options: a :class:`SplitOptions`; keyword arguments override its fields.
        image_size: the input size (default: the weights' recorded size, else the model's).

    Devices given by a profile (``profile = "..."`` in the device file) get every piece's time
    predicted from their profile: each piece is exported once more, unverified, to the split's
    target and precision, and predicted with :func:`edgevit.predict.predict`
    (:mod:`edgevit.split.profiles`).

    Raises:
        DataError: the data's classes do not match the model's head (both are listed).
        PlanningError: devices cannot hold the model, more devices than classes...
        ProfileError: a device's profile is corrupt or of another format version (names the device).
        InvalidArgumentError: a device's profile times a backend that does not run ``target``'s files.

    Example:
        >>> plan = split("vit_tiny_patch16_224", "digits", "devices.toml", "plan", weights="vit_digits.safetensors",
        ...              image_size=64, strategy="classwise", target="onnx")
        >>> [(p.name, p.device, p.classes) for p in plan.pieces]
    """
    from edgevit.split import STRATEGIES
    from edgevit.split.request import SplitRequest
    from edgevit.split.writer import write_plan

    options = (options or SplitOptions()).replace(**overrides) if overrides else (options or SplitOptions())
    strategy = STRATEGIES.get(options.strategy)()
    _check_target(options)
    if data is None and PRECISIONS.get(options.precision).quantized:
        raise InvalidArgumentError(f"a {options.precision} split calibrates every piece on the training images; "
                                   "pass --data (the images the model was trained on)")
    from edgevit._files import check_writable

    check_writable(Path(out).parent if str(Path(out).parent) else Path("."))  # before minutes of training
    cluster = devices if isinstance(devices, Cluster) else load_devices(devices)
    from edgevit.split.profiles import PiecePredictor, load_profiles

    profiles = load_profiles(cluster, options.target)  # a corrupt or mismatched profile: refused before any work
    model, name = _load_model(model, weights, image_size, options)
    train_set, val_set = _load_data(data, model, options)
    spec = _spec(name, model, train_set, image_size)
    from edgevit.split.resume import resume_folder

    resume = resume_folder(out)
    predictor = PiecePredictor(profiles, options.target, options.precision, preprocessing=spec) if profiles else None
    request = SplitRequest(model, name, train_set, val_set, spec, cluster, options, progress, resume=resume,
                           predictor=predictor)
    if predictor is not None:
        predictor.log = request.log
    try:
        built = strategy.build(request)
        check = None
        if options.verify and val_set is not None:
            check = val_set.arrays(spec)
        plan = write_plan(built, out, check=check, log=request.log, timing=options.timing, threads=options.threads,
                          rounds=options.measure_rounds)
    except BaseException:
        if resume.is_dir() and any(resume.glob("*.safetensors")):
            request.log(f"the finished sub-models are kept in {resume}: run the same split again to resume from them")
        raise
    finally:
        if predictor is not None:
            predictor.close()
    shutil.rmtree(resume, ignore_errors=True)
    return plan


def _check_target(options: SplitOptions) -> None:
    from edgevit.export.targets import get_target

    get_target(options.target).check(_export_options(options))


def _export_options(options: SplitOptions):
    from edgevit.export.options import ExportOptions

    return ExportOptions(target=options.target, precision=options.precision)


def _load_model(model: Any, weights, image_size: int | None, options: SplitOptions):
    if not isinstance(model, str):
        if weights is not None:
            raise InvalidArgumentError("weights= applies to a zoo model given by name; load them into your module")
        return model.eval(), getattr(model, "model_name", type(model).__name__)
    from edgevit.models import create_model

    if weights is None and options.strategy == "classwise":
        raise InvalidArgumentError(
            f"a class-wise split prunes {model} by what matters for each group of classes, so it needs trained "
            f"weights; train them with `edgevit train {model} --data ...` and pass --weights"
        )
    built = create_model(model, weights=weights, image_size=image_size)  # at the weights' recorded size
    return built.eval(), model


def _load_data(data, model, options: SplitOptions):
    if data is None:
        if options.strategy == "classwise":
            raise InvalidArgumentError("the classwise strategy needs labelled data: pass --data DIR or --data digits")
        return None, None
    from edgevit.data.datasets import load_dataset

    if isinstance(data, tuple):
        train_set, val_set = data
    else:
        train_set, val_set = load_dataset(data, "train"), load_dataset(data, "val")
    head = getattr(model, "num_classes", None)
    labels = getattr(model, "labels", None)
    if head is not None and head != train_set.num_classes:
        raise DataError(
            f"the dataset {str(data)!r} has {train_set.num_classes} classes ({', '.join(train_set.classes)}) but the "
            f"model's head has {head}" + (f" ({', '.join(labels)})" if labels else "")
            + "; split a model trained on this dataset"
        )
    if labels is not None and list(labels) != list(train_set.classes):
        raise DataError(
            f"the dataset's classes ({', '.join(train_set.classes)}) differ from the model's labels "
            f"({', '.join(labels)}); split a model trained on this dataset, with its classes in the same order"
        )
    return train_set, val_set


def _spec(name: str, model: Any, train_set, image_size: int | None):
    from edgevit.data.preprocess import PreprocessSpec
    from edgevit.models import list_models
    from edgevit.train import dataset_spec

    size = image_size or getattr(model, "image_size", None)
    if name in list_models() and train_set is not None:
        return dataset_spec(name, train_set, size)
    if name in list_models():
        from edgevit.models import model_info

        return model_info(name).preprocess.spec(size or model_info(name).image_size)
    return PreprocessSpec(size=size or 224)
