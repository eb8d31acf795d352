"""Latency prediction from measured device profiles (issue 15): pure numpy, no torch.

* :mod:`edgevit.predict.profile`: the :class:`DeviceProfile` a probe writes (JSON), its validation,
  and :func:`merge_profiles` (probes of one device taken at several times, each timing their median);
* :mod:`edgevit.predict.kernels`: kernel kinds, their shape dims and cost features;
* :mod:`edgevit.predict.mapping`: an artifact's ops (:mod:`edgevit.formats`) to kernels, with
  each backend's fusion rules (:mod:`edgevit.predict.fusion`);
* :mod:`edgevit.predict.fit`: per-kind linear cost models fitted to a profile;
* :mod:`edgevit.predict.predictor`: :func:`predict` -> :class:`Prediction` with a per-kernel breakdown.

Example:
    >>> from edgevit.predict import load_profile, predict
    >>> p = predict("test_vit-onnx-fp32", load_profile("this-machine-onnxruntime.json"))  # doctest: +SKIP
    >>> round(p.total_ms, 2), p.unknown  # doctest: +SKIP
    (0.41, {})
"""

from __future__ import annotations

from edgevit.predict.fit import CostModel, fit
from edgevit.predict.kernels import KINDS, Kernel
from edgevit.predict.predictor import (
           KernelPrediction,
           Prediction,
           kernel_counts,
           map_kernels,
           predict,
           read_graph,
)
from edgevit.predict.profile import (
           DeviceProfile,
           KernelTiming,
           Measurement,
           ReferenceTiming,
           load_profile,
           merge_profiles,
           save_profile,
)

__all__ = ["KINDS", "CostModel", "DeviceProfile", "Kernel", "KernelPrediction", "KernelTiming", "Measurement",
           "Prediction", "ReferenceTiming", "fit", "kernel_counts", "load_profile", "map_kernels", "merge_profiles", "predict", "read_graph", "save_profile"]
