"""The plan: what ``plan.json`` in a plan folder says, as frozen dataclasses (pure).

A plan folder holds one exported artifact per piece (sub-model or pipeline stage), the
fusion head's artifact for the class-wise strategy, and ``plan.json``::

    plan/
        plan.json
        sub0/  model.onnx manifest.json      (or stage0/, stage1/ ...)
        sub1/  ...
        fusion/ model.onnx manifest.json

Each piece names its artifact folder, the device it is placed on, its input and output
tensor names, its costs and its predicted times; the plan has the predicted latency of the
whole, split into the measured part (compute timed on the planning machine, scaled by each
device's speed, or predicted from the device's profile) and the modelled part (transfers from
the device file's link figures). Every compute figure says where it came from
(``predicted["compute_from"]``: the profile, its digest and the predictor version, or the
speed and its ``speed_origin``).
Reading and writing the file happen at the edges (``edgevit.split``); this module only
converts to and from dicts.

Example:
    >>> plan = Plan.from_dict(json.loads(Path("plan/plan.json").read_text()))
    >>> [(p.name, p.device, p.classes) for p in plan.pieces]
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from edgevit.errors import ArtifactError

__all__ = ["PLAN_FORMAT", "PLAN_NAME", "MemoryOverflow", "Plan", "PlanPiece"]

PLAN_FORMAT = "edgevit-plan"
PLAN_VERSION = 1
PLAN_NAME = "plan.json"
ROLES = ("submodel", "stage", "fusion")


@dataclass(frozen=True)
class MemoryOverflow:
    """A device whose pieces need more memory than its device file gives it.

    Attributes:
        device: the device's name.
        pieces: the pieces placed on it.
        needed_bytes: what they need (real file sizes once exported, plus activations).
        estimated_bytes: what the memory model predicted when they were placed.
        available_bytes: the device's ``memory_mb``.
    """

    device: str
    pieces: tuple[str, ...]
    needed_bytes: int
    estimated_bytes: int
    available_bytes: int

    def message(self) -> str:
        return (f"device {self.device!r} holds {', '.join(self.pieces)}, which need {self.needed_bytes / 1e6:.3g} MB "
                f"as exported (the memory model estimated {self.estimated_bytes / 1e6:.3g} MB when placing them), "
                f"but it has {self.available_bytes / 1e6:.3g} MB")


@dataclass(frozen=True)
class PlanPiece:
    """One exported piece of a plan.

    Attributes:
        role: ``"submodel"`` (class-wise), ``"stage"`` (pipeline) or ``"fusion"``.
        artifact: the artifact folder, relative to the plan folder.
        device: where it runs (None: the coordinator, for the fusion head).
        input_name / output_name: the tensors it takes and gives.
        cost: ``params``, ``macs``, ``weight_bytes``, ``activation_bytes``, ``memory_bytes``,
            ``input_bytes``, ``output_bytes``, ``measured_ms``, ``file_bytes``, and ``profiled``
            (``{device: ProfiledTime.to_dict()}``, its time predicted from each profiled device's
            profile).
        predicted: times on its device (``compute_ms``, transfers) and ``compute_from``, where
            the compute figure came from (:func:`edgevit.partition.cost.compute_source`).
        classes: the class indices a sub-model is responsible for.
        span: ``(start, end)`` split points of a stage (None: the input / the logits).
        info: anything else (widths, keep ratio, reduction, group accuracy).
    """

    name: str
    role: str
    artifact: str
    device: str | None
    input_name: str
    output_name: str
    cost: dict[str, Any] = field(default_factory=dict)
    predicted: dict[str, Any] = field(default_factory=dict)
    classes: tuple[int, ...] | None = None
    span: tuple[str | None, str | None] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def memory_bytes(self) -> int:
        """Bytes the piece needs on its device: once exported, its files' real bytes plus the
        activation estimate (a quantized recipe may keep layers float, which no parameter count
        foresees); before, the memory model's ``cost["memory_bytes"]``."""
        if "file_bytes" in self.cost:
            return int(self.cost["file_bytes"]) + int(self.cost.get("activation_bytes", 0))
        return int(self.cost.get("memory_bytes", 0))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["classes"] = list(self.classes) if self.classes is not None else None
        out["span"] = list(self.span) if self.span is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanPiece:
        _require(data, ("name", "role", "artifact", "device", "input_name", "output_name"), "plan piece")
        if data["role"] not in ROLES:
            raise ArtifactError(f"plan piece {data['name']!r} has role {data['role']!r}; expected one of {ROLES}")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if kwargs.get("classes") is not None:
            kwargs["classes"] = tuple(int(c) for c in kwargs["classes"])
        if kwargs.get("span") is not None:
            kwargs["span"] = tuple(kwargs["span"])
        return cls(**kwargs)


@dataclass(frozen=True)
class Plan:
    """A whole split: the pieces, where they run and what is predicted of them.

    Attributes:
        strategy: ``"classwise"`` or ``"pipeline"``.
        model: the unsplit model (``name``, ``image_size``, ``num_classes``, ``params``, ``macs``,
            ``measured_ms``).
        labels: class names of the C-way output.
        target / precision: how the pieces were exported.
        preprocessing: the images' preprocessing (a ``PreprocessSpec`` dict).
        pieces: sub-models or stages, in the order their outputs are concatenated (class-wise)
            or chained (pipeline).
        fusion: the fusion head (class-wise only).
        devices: the device file as read.
        latency: predicted latency, measured and modelled parts separately; ``profiles``: the
            profiles the profiled devices' figures came from.
        accuracy: unsplit and split accuracy on the validation split, when measured.
    """

    strategy: str
    model: dict[str, Any]
    labels: tuple[str, ...]
    target: str
    precision: str
    preprocessing: dict[str, Any]
    pieces: tuple[PlanPiece, ...]
    fusion: PlanPiece | None = None
    devices: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def piece(self, name: str) -> PlanPiece:
        for piece in (*self.pieces, *((self.fusion,) if self.fusion else ())):
            if piece.name == name:
                return piece
        raise KeyError(name)

    def memory_overflows(self, available: dict[str, float] | None = None) -> tuple[MemoryOverflow, ...]:
        """The devices whose pieces need more memory than they have, counted by
        :attr:`PlanPiece.memory_bytes` (real file sizes once exported).

        Args:
            available: bytes per device name; by default the ``memory_mb`` of the plan's own device
                file (a deployment passes the memory of the devices it deploys to).
        """
        if available is None:
            available = {d["name"]: float(d["memory_mb"]) * 1e6 for d in self.devices.get("device", ())
                         if "name" in d and "memory_mb" in d}
        held: dict[str, list[PlanPiece]] = {}
        for piece in self.pieces:
            if piece.device in available:
                held.setdefault(piece.device, []).append(piece)
        out = []
        for device, pieces in held.items():
            needed = sum(p.memory_bytes for p in pieces)
            if needed > available[device]:
                estimated = sum(int(p.cost.get("memory_bytes", 0)) for p in pieces)
                out.append(MemoryOverflow(device, tuple(p.name for p in pieces), needed, estimated,
                                          int(available[device])))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "format_version": PLAN_VERSION,
            "strategy": self.strategy,
            "model": self.model,
            "labels": list(self.labels),
            "target": self.target,
            "precision": self.precision,
            "preprocessing": self.preprocessing,
            "pieces": [p.to_dict() for p in self.pieces],
            "fusion": self.fusion.to_dict() if self.fusion else None,
            "devices": self.devices,
            "latency": self.latency,
            "accuracy": self.accuracy,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise ArtifactError(f"not an edgevit plan (format={data.get('format') if isinstance(data, dict) else None!r}, "
                                f"expected {PLAN_FORMAT!r})")
        if data.get("format_version", 0) > PLAN_VERSION:
            raise ArtifactError(f"plan format version {data['format_version']} is newer than this edgevit "
                                f"understands ({PLAN_VERSION}); upgrade edgevit")
        _require(data, ("strategy", "model", "labels", "target", "precision", "preprocessing", "pieces"), "plan")
        pieces = tuple(PlanPiece.from_dict(p) for p in data["pieces"])
        if not pieces:
            raise ArtifactError("plan has no pieces")
        fusion = PlanPiece.from_dict(data["fusion"]) if data.get("fusion") else None
        if data["strategy"] == "classwise" and fusion is None:
            raise ArtifactError("a class-wise plan needs a fusion head, and this one has none")
        return cls(
            strategy=data["strategy"], model=data["model"], labels=tuple(data["labels"]), target=data["target"],
            precision=data["precision"], preprocessing=data["preprocessing"], pieces=pieces, fusion=fusion,
            devices=data.get("devices", {}), latency=data.get("latency", {}), accuracy=data.get("accuracy", {}),
            notes=tuple(data.get("notes", ())),
        )


def _require(data: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise ArtifactError(f"{what} in plan.json is missing {', '.join(missing)}")
