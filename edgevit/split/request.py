"""What a strategy is given (:class:`SplitRequest`) and what it returns (:class:`BuiltPlan`).

A strategy (``edgevit.split.STRATEGIES``) is a class with
``build(request: SplitRequest) -> BuiltPlan``: it sees the trained model, the data, the
devices and the options, and returns the plan together with the torch modules to export.
Writing the plan folder (export of every piece, ``plan.json``) is the same for every
strategy (:mod:`edgevit.split.writer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevit._progress import Progress
from edgevit.data.datasets import ImageDataset
from edgevit.data.preprocess import PreprocessSpec
from edgevit.devices import Cluster
from edgevit.errors import InvalidArgumentError
from edgevit.partition.plan import Plan, PlanPiece
from edgevit.split.options import SplitOptions


@dataclass(frozen=True)
class SplitRequest:
    """Everything a strategy needs.

    Attributes:
        model: the trained full model (an ``EdgeModel``, eval mode).
        model_name: its zoo name.
        train_set / val_set: the data (same classes as the model's head, in the same order).
        spec: the images' preprocessing.
        cluster: the devices.
    """

    model: Any
    model_name: str
    train_set: ImageDataset | None
    val_set: ImageDataset | None
    spec: PreprocessSpec
    cluster: Cluster
    options: SplitOptions
    progress: bool | None = None
    #: where finished sub-models are kept so that an interrupted split resumes (None: not kept)
    resume: Any = None
    #: exports pieces and predicts them on the profiled devices (:class:`edgevit.split.profiles.PiecePredictor`;
    #: None: no device of the device file is given by a profile)
    predictor: Any = None
    #: the split's progress display (log lines stamped with the seconds since the request was made)
    display: Progress = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "display", Progress(desc="split", enabled=self.progress))

    def log(self, message: str) -> None:
        """One progress line on stderr (unless progress is off), with the seconds since the start."""
        self.display.log(message)

    def profiled(self, cost: Any, module: Any, example: Any, calibration: Any = None,
                 image_input: bool = False) -> Any:
        """``cost`` (a :class:`~edgevit.partition.cost.PieceCost`) with the piece's times predicted on
        every profiled device (``cost`` itself when no device is profiled)."""
        if self.predictor is None:
            return cost
        import dataclasses

        times = self.predictor.times(cost.name, module, example, calibration, image_input)
        return dataclasses.replace(cost, profiled=times)


@dataclass
class BuiltPiece:
    """A piece of the plan with the module to export.

    Attributes:
        module: the torch module (batch-1 ``example`` in, one tensor out).
        image_input: whether its input is the preprocessed image (exported with
            ``edgevit.export``) or an intermediate tensor.
        check_inputs: a few real inputs (``[N, ...]`` float32) to verify the artifact on
            (validation images, or what the pieces before it make of them).
        calibration: real inputs a quantized precision calibrates on (training images, or what
            the pieces before it make of them); None for float precisions.
    """

    piece: PlanPiece
    module: Any
    example: Any
    image_input: bool
    check_inputs: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))
    calibration: np.ndarray | None = field(repr=False, default=None)


#: training images a quantized plan calibrates every piece on (fewer when the training split is smaller)
CALIBRATION_IMAGES = 128


def calibration_images(request: SplitRequest) -> np.ndarray | None:
    """``CALIBRATION_IMAGES`` training images (NCHW float32, classes mixed, seeded) for a quantized
    precision; None for a float one. The validation images stay for verification."""
    from edgevit.precision import precision

    if not precision(request.options.precision).quantized:
        return None
    if request.train_set is None:
        raise InvalidArgumentError(
            f"a {request.options.precision} split calibrates every piece on the training images; pass --data")
    images, _ = request.train_set.arrays(request.spec)
    order = np.random.default_rng(request.options.seed).permutation(len(images))[:CALIBRATION_IMAGES]
    return np.ascontiguousarray(images[np.sort(order)], dtype=np.float32)


@dataclass
class BuiltPlan:
    """A strategy's result: the plan (artifact sizes still unknown) and the pieces to export.

    ``reference`` is the whole split as one torch module (images to the final output), the
    in-process result the exported plan is checked against; ``unsplit`` is the model the plan
    replaces (exported too, to time it beside the pieces); ``strategy`` re-times the plan
    (``strategy.retime(plan, measured_ms, how)``) once the pieces are exported.
    """

    plan: Plan
    pieces: list[BuiltPiece]
    fusion: BuiltPiece | None
    reference: Any
    unsplit: Any = None
    strategy: Any = None
