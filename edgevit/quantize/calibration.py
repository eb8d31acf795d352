"""Calibration images and activation ranges.

:func:`calibration_set` draws ``count`` preprocessed images from ``"digits"`` (the training
split of the bundled handwritten digits) or from a folder of images (flat, or one
sub-folder per class); an empty or unreadable folder is an error naming it, and fewer
images than asked is a warning with the count used (see
:func:`edgevit.data.datasets.calibration_images`).

:class:`RangeCollector` turns the float values an activation takes on those images into the
range its int8 grid covers, by one of three methods (:data:`~edgevit.quantize.recipe.CALIB_METHODS`):

* ``minmax``: the smallest and largest value seen (nothing clipped; outliers widen the grid);
* ``percentile``: the 99.999th percentile of ``|x|`` (clips the rarest outliers);
* ``entropy``: the threshold whose 128-level quantized histogram is closest in KL divergence
  to the float one, over a 2048-bin histogram (TensorRT's method).

The ONNX quantizer uses onnxruntime's own calibrators for this; TFLite and Core ML use this
collector, which reuses onnxruntime's histogram code so that the three targets compute a
method's ranges the same way.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import InvalidArgumentError, require
from edgevit.quantize.recipe import CALIB_METHODS, check_calib_size

PERCENTILE = 99.999
#: histogram resolution for percentile and entropy; entropy searches thresholds between
#: QUANTIZED_BINS/2 and HISTOGRAM_BINS/2 bins (onnxruntime's default of 128 and 128 leaves it no
#: threshold to choose but the full range, i.e. min/max)
HISTOGRAM_BINS = 2048
QUANTIZED_BINS = 128


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed calibration images, float32 NCHW ``[N, 3, S, S]``.

    Attributes:
        source: ``"digits"`` or the folder.
        asked: how many images were asked for; ``len(images)`` how many there were.
        held_out_names / held_out: images of the source that calibration did not use (for
            verification in domain), when asked for; ``held_out`` is None when there are none.
    """

    source: str
    asked: int
    images: np.ndarray
    held_out_names: tuple[str, ...] = ()
    held_out: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "asked": self.asked, "used": len(self)}


def calibration_set(source: str | Path, count: int, spec: Any, seed: int = 0, held_out: int = 0) -> CalibrationSet:
    """``count`` calibration images preprocessed with ``spec`` (digits are warped, not cropped), and
    with ``held_out`` > 0 up to that many images calibration did not use, read in the same pass.

    Raises:
        DataError: the folder is missing, empty or holds no readable image (names it).
    """
    from edgevit.data.datasets import calibration_draw, spec_for_source

    check_calib_size(count)
    images, names, rest = calibration_draw(source, count, spec_for_source(spec, source, layout="NCHW"),
                                           held_out=held_out, seed=seed)
    return CalibrationSet(str(source), count, images.astype(np.float32), tuple(names),
                          None if rest is None else rest.astype(np.float32))


def held_out_set(source: str | Path, count: int, calib_count: int, spec: Any,
                 seed: int = 0) -> tuple[list[str], np.ndarray | None]:
    """Up to ``count`` images of the calibration source that :func:`calibration_set` (with
    ``calib_count`` and the same ``seed``) did not use, preprocessed the same way: names and
    float32 NCHW arrays (``None`` when the source has no image left). An export reads them with
    its calibration set (``held_out=``); this is for looking at them on their own."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short calibration set is reported when calibrating
        calibration = calibration_set(source, calib_count, spec, seed=seed, held_out=count)
    return list(calibration.held_out_names), calibration.held_out


class RangeCollector:
    """Accumulates activation values batch by batch and returns ``{name: (low, high)}``.

    Example:
        >>> collector = RangeCollector("percentile")
        >>> collector.collect({"relu_out": batch_values})
        >>> collector.ranges()["relu_out"]
        (0.0, 5.91)
    """

    def __init__(self, method: str) -> None:
        if method not in CALIB_METHODS:
            raise InvalidArgumentError(f"unknown calibration method {method!r}; valid: {', '.join(CALIB_METHODS)}")
        self.method = method
        self._min: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._histograms = None
        if method != "minmax":
            calibrate = require("onnxruntime.quantization.calibrate", "export", f"{method} calibration")
            self._histograms = calibrate.HistogramCollector(
                method=method, symmetric=method == "percentile", num_bins=HISTOGRAM_BINS,
                num_quantized_bins=QUANTIZED_BINS, percentile=PERCENTILE, scenario="same")

    def collect(self, values: dict[str, np.ndarray]) -> None:
        floats = {name: np.asarray(v) for name, v in values.items()
                  if np.asarray(v).dtype.kind == "f" and np.asarray(v).size}
        for name, value in floats.items():
            low, high = float(np.nanmin(value)), float(np.nanmax(value))
            self._min[name] = min(low, self._min.get(name, low))
            self._max[name] = max(high, self._max.get(name, high))
        if self._histograms is not None and floats:
            with contextlib.redirect_stdout(io.StringIO()):
                self._histograms.collect({name: [v.astype(np.float32)] for name, v in floats.items()})

    def ranges(self) -> dict[str, tuple[float, float]]:
        if self._histograms is None:
            return {name: (self._min[name], self._max[name]) for name in self._min}
        with contextlib.redirect_stdout(io.StringIO()):
            result = self._histograms.compute_collection_result()
        out = {}
        for name, value in result.items():
            low, high = float(value[0]), float(value[1])
            out[name] = (max(low, self._min[name]), min(high, self._max[name]))
        return out
