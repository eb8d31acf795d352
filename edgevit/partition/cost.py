"""Cost model: sizes, multiply-accumulates, memory and time of the pieces of a plan.

Pure arithmetic on value objects. :class:`ViTShape` describes a (possibly class-wise pruned)
ViT by its widths, and :func:`vit_params` / :func:`vit_macs` count it the way
:func:`edgevit.models.count_params` / :func:`~edgevit.models.count_macs` do (tests check
they agree). :class:`PieceCost` is what placement and pipeline balancing see of any piece:
its size, its memory, its compute time measured on the planning machine and, for every device
described by a measured profile, its time predicted from that profile (:class:`ProfiledTime`).

Device time of a piece::

    compute_ms = piece.profiled[device].ms             (device gives a profile)
                 (its .idle_ms for one request at an idle device where the profile has one:
                  request_compute_ms)
               = macs / (device.gmacs_per_s * 1e9)     (device gives a measured throughput)
               = measured_ms / device.speed            (device gives a relative speed)
    transfer_ms(bytes) = link_latency_ms + bytes * 8 / (link_mbps * 1e6) * 1e3

The predicted times are numbers handed in: exporting a piece and predicting it with a
device's profile happen at the edge (``edgevit.split.profiles``); this module reads no file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from edgevit.devices import Device
from edgevit.errors import ArtifactError, PlanningError
from edgevit.precision import PRECISIONS


def weight_bytes(params: int, precision: str, float_params: int = 0) -> int:
    """Bytes of ``params`` weights stored at ``precision`` (w4: half a byte each), ``float_params``
    of them kept in float32 by the quantization recipe, from :data:`edgevit.precision.PRECISIONS`."""
    return PRECISIONS.get(precision).weight_bytes(params, float_params)


def activation_bytes_per_value(precision: str) -> int:
    """Bytes of one activation value as the runtime holds it at ``precision``."""
    return PRECISIONS.get(precision).activation_bytes


@dataclass(frozen=True)
class ViTShape:
    """The widths of a ViT: enough to count its parameters, MACs and memory.

    ``mlp_hidden`` has one entry per block (class-wise FFN pruning keeps different widths).
    """

    image_size: int
    patch_size: int
    embed_dim: int
    num_heads: int
    head_dim: int
    mlp_hidden: tuple[int, ...]
    num_classes: int
    in_chans: int = 3

    @property
    def depth(self) -> int:
        return len(self.mlp_hidden)

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def attn_dim(self) -> int:
        return self.num_heads * self.head_dim

    def with_widths(self, embed_dim: int, head_dim: int, mlp_hidden: tuple[int, ...],
                    num_classes: int | None = None) -> ViTShape:
        return replace(self, embed_dim=embed_dim, head_dim=head_dim, mlp_hidden=tuple(mlp_hidden),
                       num_classes=self.num_classes if num_classes is None else num_classes)

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "patch_size": self.patch_size, "embed_dim": self.embed_dim,
                "num_heads": self.num_heads, "head_dim": self.head_dim, "mlp_hidden": list(self.mlp_hidden),
                "num_classes": self.num_classes, "in_chans": self.in_chans}


def vit_params(shape: ViTShape) -> int:
    """Parameters of a ViT of this shape (head included when ``num_classes > 0``)."""
    return sum(_vit_param_split(shape))


def vit_float_params(shape: ViTShape) -> int:
    """The parameters of :func:`vit_params` that are not the weight of a convolution or linear
    layer (biases, norms, class token, position embedding): a quantized file keeps them at 4
    bytes (:meth:`edgevit.precision.Precision.weight_bytes`'s ``float_params``)."""
    return _vit_param_split(shape)[1]


def _vit_param_split(shape: ViTShape) -> tuple[int, int]:
    """A ViT's parameters as (convolution and linear weights, everything else)."""
    d, a, p = shape.embed_dim, shape.attn_dim, shape.patch_size
    weights = d * shape.in_chans * p * p  # patch embedding
    other = d + d + shape.tokens * d  # its bias, class token, position embedding
    for hidden in shape.mlp_hidden:
        weights += d * 3 * a + a * d + d * hidden + hidden * d  # qkv, proj, fc1, fc2
        other += 2 * d + 3 * a + d + 2 * d + hidden + d  # norm1, qkv/proj biases, norm2, fc1/fc2 biases
    other += 2 * d  # final norm
    if shape.num_classes > 0:
        weights += d * shape.num_classes
        other += shape.num_classes
    return weights, other


def vit_macs(shape: ViTShape) -> int:
    """Multiply-accumulates of one image (matmuls and convs only, the papers' convention)."""
    d, a, t = shape.embed_dim, shape.attn_dim, shape.tokens
    patches = t - 1
    total = patches * d * shape.in_chans * shape.patch_size**2
    for hidden in shape.mlp_hidden:
        total += t * d * 3 * a + 2 * shape.num_heads * t * t * shape.head_dim + t * a * d
        total += 2 * t * d * hidden
    if shape.num_classes > 0:
        total += d * shape.num_classes
    return total


def vit_activation_values(shape: ViTShape) -> int:
    """Peak activation values held at once in one forward pass (batch 1), an estimate.

    The input image, the residual stream and a normalised copy of it, and the largest
    intermediate (qkv plus the attention matrix, or the MLP hidden layer).
    """
    t, d = shape.tokens, shape.embed_dim
    largest = max(t * 3 * shape.attn_dim + shape.num_heads * t * t, max(shape.mlp_hidden, default=0) * t)
    return shape.in_chans * shape.image_size**2 + 2 * t * d + largest


@dataclass(frozen=True)
class ProfiledTime:
    """A piece's compute time on one device, predicted from the device's measured profile.

    Attributes:
        ms: one inference (batch 1), the backend's per-call overhead included.
        run_ms: that per-call overhead (the profile's empty-model time); consecutive segments
            run as one file (a pipeline stage) pay it once.
        backend: the backend the profile timed (``onnxruntime``, ``litert``).
        profile: the profile file; ``profile_sha256``: its digest; ``profile_created_utc``:
            when the device was probed.
        predictor_version: :data:`edgevit.predict.fit.PREDICTOR_VERSION` of the prediction.
        not_costed: ``(("Erf", 2), ("matmul int8", 8))``: ops the predictor could not cost
            (unknown or unsized) and kernels the profile never timed; when there are any, ``ms``
            is a lower bound.
        idle_curve: ``((ms, ratio), ...)``: one request arriving after an idle gap takes ``ms``
            times the curve's ratio at ``ms`` (:attr:`idle_ms`; the profile's models timed that
            way, :func:`edgevit.predict.fit.idle_ratio`); empty: not measured.
        range_ms: ``(low, high)``: ``ms`` at the lowest and the highest factor of the profile's
            reference models (:attr:`edgevit.predict.Prediction.range_ms`); None: no references.
    """

    ms: float
    run_ms: float
    backend: str
    profile: str
    profile_sha256: str
    profile_created_utc: str
    predictor_version: int
    not_costed: tuple[tuple[str, int], ...] = ()
    idle_curve: tuple[tuple[float, float], ...] = ()
    range_ms: tuple[float, float] | None = None

    @property
    def idle_ms(self) -> float | None:
        """One request after an idle gap (None: the profile does not say)."""
        from edgevit.predict.fit import idle_time

        return idle_time(self.idle_curve, self.ms)

    @property
    def complete(self) -> bool:
        """Every op of the piece was costed (else ``ms`` is a lower bound)."""
        return not self.not_costed

    def source(self) -> dict[str, Any]:
        """Where the figure came from, without the figure (what a plan records beside it)."""
        return {"from": "profile", "backend": self.backend, "profile": self.profile,
                "profile_sha256": self.profile_sha256, "profile_created_utc": self.profile_created_utc,
                "predictor_version": self.predictor_version, "complete": self.complete,
                "not_costed": dict(self.not_costed)}

    def to_dict(self) -> dict[str, Any]:
        out = {"ms": self.ms, "run_ms": self.run_ms, **self.source()}
        del out["from"]
        if self.idle_curve:
            out.update(idle_ms=self.idle_ms, idle_curve=[list(knot) for knot in self.idle_curve])
        if self.range_ms is not None:
            out["range_ms"] = list(self.range_ms)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfiledTime:
        """A predicted time as a plan records it (:meth:`to_dict`).

        Raises:
            ArtifactError: a field is missing or not what :meth:`to_dict` writes (a plan file is
                read as untrusted data: a wrong value is named, not passed on).
        """
        if not isinstance(data, Mapping):
            raise _malformed("the entry", data, "an object with ms, backend, profile and predictor_version")
        missing = [key for key in ("ms", "backend", "profile", "predictor_version") if key not in data]
        if missing:
            raise ArtifactError(f"a predicted time in plan.json is missing {', '.join(missing)}; {_REWRITE}")
        curve = data.get("idle_curve") or ()
        if not isinstance(curve, (list, tuple)) or not all(isinstance(k, (list, tuple)) and len(k) == 2 for k in curve):
            raise _malformed("idle_curve", curve, "a list of [ms, ratio] pairs")
        spread = data.get("range_ms")
        if spread is not None and (not isinstance(spread, (list, tuple)) or len(spread) != 2):
            raise _malformed("range_ms", spread, "[low, high] or null")
        not_costed = data.get("not_costed") or {}
        if not isinstance(not_costed, Mapping):
            raise _malformed("not_costed", not_costed, "an object of {what: count}")
        version = data["predictor_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _malformed("predictor_version", version, "a positive integer")
        low_high = None if spread is None else (_ms("range_ms", spread[0]), _ms("range_ms", spread[1]))
        if low_high is not None and low_high[0] > low_high[1]:
            raise _malformed("range_ms", spread, "[low, high] with low <= high")
        return cls(_ms("ms", data["ms"]), _ms("run_ms", data.get("run_ms", 0.0)), str(data["backend"]),
                   str(data["profile"]), str(data.get("profile_sha256", "")), str(data.get("profile_created_utc", "")),
                   version, tuple(sorted((str(k), int(_ms("not_costed", v))) for k, v in not_costed.items())),
                   tuple((_ms("idle_curve", ms), _ms("idle_curve", ratio)) for ms, ratio in curve), low_high)

    @staticmethod
    def chained(parts: Iterable[ProfiledTime]) -> ProfiledTime:
        """The time of consecutive parts run as one file: their times added, the per-call overhead
        paid once (what a pipeline stage made of several segments takes); the ends of their ranges
        likewise (None unless every part has one).

        Raises:
            PlanningError: the parts were predicted from different profiles.
        """
        parts = list(parts)
        first = parts[0]
        if any(p.profile_sha256 != first.profile_sha256 or p.predictor_version != first.predictor_version
               for p in parts):
            raise PlanningError(f"cannot add times predicted from different profiles or predictor versions "
                                f"({sorted({(p.profile, p.predictor_version) for p in parts})}); predict every "
                                "segment with the same profile")
        missing: dict[str, int] = {}
        for part in parts:
            for what, count in part.not_costed:
                missing[what] = missing.get(what, 0) + count
        ms = sum(p.ms - p.run_ms for p in parts) + first.run_ms
        spans = None if any(p.range_ms is None for p in parts) else tuple(  # each end added like ms
            sum(p.range_ms[end] - p.run_ms for p in parts) + first.run_ms for end in (0, 1))
        return replace(first, ms=ms, not_costed=tuple(sorted(missing.items())), range_ms=spans)


_REWRITE = "the plan was edited or written by something else: split the model again to rewrite it"


def _malformed(name: str, value: Any, expected: str) -> ArtifactError:
    return ArtifactError(f"a predicted time in plan.json has {name} = {value!r:.80}; expected {expected}; {_REWRITE}")


def _ms(name: str, value: Any) -> float:
    """``value`` as a finite non-negative number, else the error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _malformed(name, value, "a finite number >= 0")
    return float(value)


@dataclass(frozen=True)
class PieceCost:
    """What planning knows of one piece (a sub-model, a pipeline stage or the fusion head).

    Attributes:
        params / macs: size and compute of one image.
        weight_bytes: the weights at the export precision.
        activation_bytes: peak activations of one image (an estimate).
        input_bytes / output_bytes: what is sent to the piece and what it sends back.
        measured_ms: compute time measured on the planning machine (None: not measured).
        profiled: ``{device name: ProfiledTime}``, its time predicted from the profile of every
            device the device file describes by a profile (empty: none predicted).
    """

    name: str
    params: int
    macs: int
    weight_bytes: int
    activation_bytes: int
    input_bytes: int
    output_bytes: int
    measured_ms: float | None = None
    profiled: Mapping[str, ProfiledTime] = field(default_factory=dict, hash=False)

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes

    def to_dict(self) -> dict:
        out = {"params": self.params, "macs": self.macs, "weight_bytes": self.weight_bytes,
               "activation_bytes": self.activation_bytes, "memory_bytes": self.memory_bytes,
               "input_bytes": self.input_bytes, "output_bytes": self.output_bytes,
               "measured_ms": self.measured_ms}
        if self.profiled:
            out["profiled"] = {device: timed.to_dict() for device, timed in self.profiled.items()}
        return out

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> PieceCost:
        """A piece's cost as ``plan.json`` records it (:meth:`to_dict`; missing sizes count as 0)."""
        measured = data.get("measured_ms")
        return cls(name, int(data.get("params", 0)), int(data.get("macs", 0)), int(data.get("weight_bytes", 0)),
                   int(data.get("activation_bytes", 0)), int(data.get("input_bytes", 0)),
                   int(data.get("output_bytes", 0)), None if measured is None else float(measured),
                   {device: ProfiledTime.from_dict(timed) for device, timed in (data.get("profiled") or {}).items()})


def vit_piece_cost(name: str, shape: ViTShape, precision: str = "fp32", output_values: int | None = None,
                   measured_ms: float | None = None) -> PieceCost:
    """The cost of a ViT sub-model that sends back ``output_values`` floats (default: its feature vector)."""
    act = activation_bytes_per_value(precision)
    return PieceCost(
        name=name,
        params=vit_params(shape),
        macs=vit_macs(shape),
        weight_bytes=weight_bytes(vit_params(shape), precision, vit_float_params(shape)),
        activation_bytes=vit_activation_values(shape) * act,
        input_bytes=shape.in_chans * shape.image_size**2 * 4,
        output_bytes=(shape.embed_dim if output_values is None else output_values) * 4,
        measured_ms=measured_ms,
    )


def compute_ms(piece: PieceCost, device: Device) -> float:
    """Compute time of ``piece`` on ``device`` (see the module docstring).

    Raises:
        PlanningError: the device gives a profile and the piece has no time predicted from it,
            or the device gives a relative speed and the piece has no measured time.
    """
    if device.profile is not None:
        return profiled_time(piece, device).ms
    if device.gmacs_per_s is not None:
        return piece.macs / (device.gmacs_per_s * 1e9) * 1e3
    if piece.measured_ms is None:
        raise PlanningError(
            f"device {device.name!r} gives a relative speed, but piece {piece.name!r} has no measured time "
            "on this machine; measure it, or give the device gmacs_per_s"
        )
    return piece.measured_ms / float(device.speed)  # type: ignore[arg-type]


def profiled_time(piece: PieceCost, device: Device) -> ProfiledTime:
    """The time of ``piece`` predicted from ``device``'s profile.

    Raises:
        PlanningError: none was predicted for this device (the message says how to get one).
    """
    timed = piece.profiled.get(device.name)
    if timed is None:
        have = ", ".join(sorted(piece.profiled)) or "no device"
        raise PlanningError(
            f"device {device.name!r} is described by its profile {device.profile!r}, but piece {piece.name!r} has no "
            f"time predicted for it (it has predictions for {have}); `edgevit split` predicts every piece on every "
            "profiled device of its device file: split again with this device file, or predict the plan's pieces "
            "for it with edgevit.split.profiles.profile_plan(plan_folder, devices)"
        )
    return timed


def request_compute_ms(piece: PieceCost, device: Device) -> float:
    """Compute time of ``piece`` on ``device`` for one request arriving at an idle device: the
    profile's :attr:`ProfiledTime.idle_ms` where it has one, else :func:`compute_ms` (a device
    file's speed or throughput says nothing of idle gaps)."""
    if device.profile is not None and (idle := profiled_time(piece, device).idle_ms) is not None:
        return idle
    return compute_ms(piece, device)


def compute_source(piece: PieceCost, device: Device) -> dict[str, Any]:
    """Where :func:`compute_ms` of ``piece`` on ``device`` comes from: the profile (file, digest,
    backend, predictor version, whether the prediction is complete), or the device file's speed
    or throughput and its ``speed_origin``. Plans record it beside every compute figure."""
    if device.profile is not None:
        return profiled_time(piece, device).source()
    if device.gmacs_per_s is not None:
        return {"from": "gmacs_per_s", "gmacs_per_s": device.gmacs_per_s, "speed_origin": device.speed_origin}
    return {"from": "speed", "speed": device.speed, "speed_origin": device.speed_origin,
            "measured_ms": piece.measured_ms}


def transfer_ms(num_bytes: int, device: Device) -> float:
    """Time to send ``num_bytes`` over ``device``'s link (latency plus size over bandwidth)."""
    return device.link_latency_ms + num_bytes * 8 / (device.link_mbps * 1e6) * 1e3


def link_ms(num_bytes: int, sender: Device, receiver: Device) -> float:
    """Device-to-device transfer through the coordinator's switch: both latencies, the slower link."""
    slower = min(sender.link_mbps, receiver.link_mbps)
    return sender.link_latency_ms + receiver.link_latency_ms + num_bytes * 8 / (slower * 1e6) * 1e3
