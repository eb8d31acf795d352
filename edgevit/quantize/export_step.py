"""The export pipeline's ``quantize`` step, and accuracy on a labelled set for ``--data``.

:func:`quantize_job` runs after ``convert``: for a quantized precision the target has written
the float model into the staging folder; it is moved aside, quantized by
:func:`edgevit.quantize.quantize` into the artifact's model file, and removed. The recipe,
the sensitivity table and the agreement with float on the calibration images go into the
manifest under ``quantization``.

:func:`labelled_accuracy` runs the artifact (through the runtime) and the PyTorch model on the
validation split of ``--data`` and reports both top-1/top-5 and the difference.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import DataError, InvalidArgumentError
from edgevit.precision import N_HELD_OUT, precision
from edgevit.quantize.recipe import Recipe


def quantize_job(job: Any) -> None:
    """Quantize the converted float model of ``job`` in place (no-op for float precisions)."""
    from edgevit.quantize import CalibrationSet, calibration_set, quantize

    options = job.options
    if options.data is not None:
        check_data(options.data, job.prepared.num_outputs)
    if not precision(options.precision).quantized:
        return
    prepared = job.prepared
    if prepared.calibration is not None:  # a piece brings its own (its held-out inputs are its samples)
        calibration = CalibrationSet(f"{prepared.name}'s own calibration inputs", len(prepared.calibration),
                                     prepared.calibration)
    elif not prepared.image_input:
        raise InvalidArgumentError(
            f"{prepared.name} takes an intermediate tensor {prepared.input_shape}, so it cannot be calibrated on "
            f"images; give the piece its own calibration inputs to export it at {options.precision}")
    else:
        # precisions verified in domain get their held-out images from the same read of the source
        held_out = N_HELD_OUT if options.verify and precision(options.precision).tolerance.in_domain else 0
        calibration = calibration_set(options.calib, options.calib_size, prepared.preprocessing("NCHW"),
                                      held_out=held_out)
    job.calibration = calibration
    recipe = Recipe(options.precision, calib_method=options.calib_method, calib_size=calibration.asked,
                    calib_source=calibration.source, max_drop=options.max_drop)
    model_path: Path = job.model_path
    float_path = model_path.with_name("float" + model_path.suffix)
    os.replace(model_path, float_path)
    try:
        result = quantize(options.target, float_path, model_path, calibration, recipe, model=prepared.model,
                          layout=options.layout, options={"deployment_target": options.deployment_target,
                                   "onnx_int8_format": options.onnx_int8_format}, log=job.note)
    finally:
        if float_path.is_dir():
            shutil.rmtree(float_path, ignore_errors=True)
        else:
            float_path.unlink(missing_ok=True)
    job.quantization = result.to_dict()


def check_sources(options: Any, quantized: bool = True) -> None:
    """Refuse an unusable ``--data`` or calibration source before any work: a missing or empty
    folder, or one none of whose images decodes, is an error naming the folder. (Having fewer
    images than ``calib_size`` is only a warning, given when the images are read.)"""
    from edgevit.data.datasets import DIGITS, IMAGE_SUFFIXES, load_dataset
    from edgevit.data.preprocess import load_image

    if options.data is not None:
        load_dataset(options.data, "val")
    if not quantized or options.calib == DIGITS:
        return
    root = Path(options.calib)
    if not root.is_dir():
        raise DataError(f"calibration folder {options.calib!r} does not exist; pass a folder of images (flat, or "
                        "one sub-folder per class) or 'digits'")
    images = [p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise DataError(f"calibration folder {options.calib!r} is empty or has no images (looked for "
                        f"{', '.join(IMAGE_SUFFIXES)}); pass a folder of representative images or 'digits'")
    for path in images:
        try:
            load_image(path)
            return
        except DataError:
            continue
    raise DataError(f"calibration folder {options.calib!r} has no readable images ({len(images)} files, none "
                    "decodes); pass a folder of representative images or 'digits'")


def check_data(data: str, num_outputs: int) -> None:
    """Refuse a labelled set whose class count differs from the model's, before any work."""
    from edgevit.data.datasets import load_dataset

    dataset = load_dataset(data, "val")
    if dataset.num_classes != num_outputs:
        raise DataError(
            f"--data {data!r} has {dataset.num_classes} classes ({', '.join(dataset.classes[:12])}) but the model "
            f"has {num_outputs} outputs; export a model trained on it (edgevit train ... --data {data}, then "
            "--weights) or pass --num-classes to match"
        )


def labelled_accuracy(model_file: Path, backend: str, layout: str, torch_model: Any, data: str,
                      spec: Any) -> dict[str, Any]:
    """Top-1/top-5 of the artifact and of PyTorch on the validation split of ``data``."""
    from edgevit.data.datasets import load_dataset, spec_for_source
    from edgevit.evaluate import topk_accuracy
    from edgevit.quantize.base import run_model_file
    from edgevit.train import predict_logits

    dataset = load_dataset(data, "val")
    spec = spec_for_source(spec, dataset.name, layout="NCHW")
    images, labels = dataset.arrays(spec)
    artifact = topk_accuracy(run_model_file(model_file, backend, images, layout), labels)
    reference = topk_accuracy(np.asarray(predict_logits(torch_model, images)), labels)
    return {"data": str(data), "split": "val", "images": int(len(labels)), "artifact": artifact, "pytorch": reference,
            "top1_drop": round(reference["top1"] - artifact["top1"], 2)}
