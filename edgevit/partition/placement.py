"""Greedy placement of class-wise sub-models on devices (pure; no I/O).

Every sub-model sees the same input image and sends back one feature vector; the
coordinator then runs the fusion head. A device may host several sub-models if its memory
allows; it runs them one after the other. The time of device k is::

    input transfer (once) + sum of its sub-models' compute + sum of their feature transfers

and the predicted end-to-end latency is ``max_k(device k) + fusion compute``. Placement is
longest-first greedy (LPT): sub-models in decreasing size, each to the device where it
*finishes earliest* among those whose free memory holds it. A sub-model that fits nowhere
raises :class:`NoFeasibleDevice`, which says how much memory the best device had free, so
the caller can prune it harder and try again.

Example:
    >>> placement = place(pieces, cluster)
    >>> placement.device_of("sub0"), placement.end_to_end_ms
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevit.devices import MB, Cluster, Device
from edgevit.errors import PlanningError
from edgevit.partition.cost import PieceCost, compute_ms, transfer_ms

__all__ = ["Assignment", "DeviceLoad", "NoFeasibleDevice", "Placement", "check_devices_fit", "place", "place_replicas",
           "single_device"]


class NoFeasibleDevice(PlanningError):
    """A sub-model fits in no device's free memory.

    Attributes:
        piece: the sub-model's name; ``needed_bytes``: its memory;
        best_free_bytes: the most free memory any device had at that point.
    """

    def __init__(self, piece: str, needed_bytes: int, best_free_bytes: int, devices: str) -> None:
        self.piece, self.needed_bytes, self.best_free_bytes = piece, needed_bytes, best_free_bytes
        super().__init__(
            f"sub-model {piece!r} needs {needed_bytes / MB:.3g} MB but the most free memory on any device is "
            f"{best_free_bytes / MB:.3g} MB ({devices}); prune it harder (a larger reduction) or add memory"
        )


@dataclass(frozen=True)
class Assignment:
    """One sub-model on one device, with its modelled times on that device."""

    piece: str
    device: str
    compute_ms: float
    output_transfer_ms: float


@dataclass(frozen=True)
class DeviceLoad:
    """What one device does for one image: the input transfer, its compute, its transfers back."""

    device: str
    pieces: tuple[str, ...]
    input_transfer_ms: float
    compute_ms: float
    output_transfer_ms: float
    memory_bytes: int

    @property
    def total_ms(self) -> float:
        return self.input_transfer_ms + self.compute_ms + self.output_transfer_ms


@dataclass(frozen=True)
class Placement:
    assignments: tuple[Assignment, ...]
    loads: tuple[DeviceLoad, ...]
    fusion_ms: float

    @property
    def end_to_end_ms(self) -> float:
        """Slowest device, then the fusion head on the coordinator."""
        return max((load.total_ms for load in self.loads if load.pieces), default=0.0) + self.fusion_ms

    @property
    def compute_only_ms(self) -> float:
        """The measured (speed-scaled) part alone: the slowest device's compute plus the fusion head."""
        return max((load.compute_ms for load in self.loads if load.pieces), default=0.0) + self.fusion_ms

    def device_of(self, piece: str) -> str:
        for assignment in self.assignments:
            if assignment.piece == piece:
                return assignment.device
        raise KeyError(piece)


def check_devices_fit(cluster: Cluster, smallest: PieceCost) -> None:
    """Refuse a device that cannot hold even the smallest feasible sub-model.

    Raises:
        PlanningError: naming the device, the memory it has and what the smallest sub-model needs.
    """
    for device in cluster.devices:
        if device.memory_bytes < smallest.memory_bytes:
            raise PlanningError(
                f"device {device.name!r} has {device.memory_mb:g} MB for the model, but the smallest feasible "
                f"sub-model needs {smallest.memory_bytes / MB:.3g} MB ({smallest.weight_bytes / MB:.3g} MB "
                f"weights + {smallest.activation_bytes / MB:.3g} MB activations); give it more memory or "
                f"remove it from {cluster.source}"
            )


def place(pieces: list[PieceCost] | tuple[PieceCost, ...], cluster: Cluster,
          fusion: PieceCost | None = None) -> Placement:
    """Assign every piece to a device, largest first, each where it finishes earliest.

    Raises:
        NoFeasibleDevice: a piece fits in no device's remaining memory.
    """
    order = sorted(pieces, key=lambda p: (-p.memory_bytes, -p.macs, p.name))
    free = {d.name: d.memory_bytes for d in cluster.devices}
    busy = {d.name: 0.0 for d in cluster.devices}
    hosted: dict[str, list[PieceCost]] = {d.name: [] for d in cluster.devices}
    assignments = []
    for piece in order:
        options = [d for d in cluster.devices if free[d.name] >= piece.memory_bytes]
        if not options:
            described = ", ".join(f"{d.name}: {free[d.name] / MB:.3g} MB free" for d in cluster.devices)
            raise NoFeasibleDevice(piece.name, piece.memory_bytes, max(free.values()), described)
        finish = {d.name: _finish_ms(busy[d.name], piece, d, first=not hosted[d.name]) for d in options}
        device = min(options, key=lambda d: (finish[d.name], -free[d.name], d.name))
        busy[device.name] = finish[device.name]
        free[device.name] -= piece.memory_bytes
        hosted[device.name].append(piece)
        assignments.append(Assignment(piece.name, device.name, compute_ms(piece, device),
                                      transfer_ms(piece.output_bytes, device)))
    loads = tuple(_load(d, hosted[d.name]) for d in cluster.devices)
    fusion_ms = 0.0
    if fusion is not None and fusion.measured_ms is not None:
        fusion_ms = fusion.measured_ms / cluster.coordinator_speed
    by_name = {a.piece: a for a in assignments}
    return Placement(tuple(by_name[p.name] for p in pieces), loads, fusion_ms)


def single_device(piece: PieceCost, cluster: Cluster) -> DeviceLoad | None:
    """The unsplit model alone on the device where it finishes earliest (None: it fits nowhere)."""
    options = [d for d in cluster.devices if d.memory_bytes >= piece.memory_bytes]
    loads = [_load(d, [piece]) for d in options]
    return min(loads, key=lambda load: (load.total_ms, load.device), default=None)


def _finish_ms(busy: float, piece: PieceCost, device: Device, first: bool) -> float:
    start = transfer_ms(piece.input_bytes, device) if first else busy
    return start + compute_ms(piece, device) + transfer_ms(piece.output_bytes, device)


def _load(device: Device, pieces: list[PieceCost]) -> DeviceLoad:
    if not pieces:
        return DeviceLoad(device.name, (), 0.0, 0.0, 0.0, 0)
    return DeviceLoad(
        device=device.name,
        pieces=tuple(p.name for p in pieces),
        input_transfer_ms=transfer_ms(pieces[0].input_bytes, device),
        compute_ms=sum(compute_ms(p, device) for p in pieces),
        output_transfer_ms=sum(transfer_ms(p.output_bytes, device) for p in pieces),
        memory_bytes=sum(p.memory_bytes for p in pieces),
    )


def place_replicas(pieces: dict[str, tuple[str, int]], devices: dict[str, int], replicas: int) -> dict[str, tuple[str, ...]]:
    """Standby devices for every piece: ``replicas`` of them, never the piece's own device.

    Args:
        pieces: ``{piece: (its device, memory bytes)}``, as the plan placed them.
        devices: ``{device: memory bytes}`` of every device that may hold replicas.
        replicas: standby copies per piece.

    Returns:
        ``{piece: (primary, replica, ...)}``. The primaries' memory is counted first; then pieces
        in decreasing size each take the devices with the most free memory that hold them
        (ties: the device with fewer pieces, then file order), so replicas spread out.

    Raises:
        PlanningError: a piece has fewer than ``replicas`` other devices with room; the message
            names the piece, its size and the free memory of each candidate.

    Example:
        >>> place_replicas({"sub0": ("a", 10), "sub1": ("b", 10)}, {"a": 100, "b": 100, "c": 100}, 1)
        {'sub0': ('a', 'c'), 'sub1': ('b', 'a')}
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise PlanningError(f"replicas must be a non-negative integer, got {replicas!r}")
    free = dict(devices)
    count = dict.fromkeys(devices, 0)
    for name, (device, size) in pieces.items():
        if device not in free:
            raise PlanningError(f"piece {name!r} is placed on {device!r}, which is not among the devices "
                                f"({', '.join(devices)})")
        free[device] -= size
        count[device] += 1
    order = list(devices)
    chosen: dict[str, tuple[str, ...]] = {}
    for name, (device, size) in sorted(pieces.items(), key=lambda item: (-item[1][1], item[0])):
        candidates = sorted((d for d in order if d != device and free[d] >= size),
                            key=lambda d: (-free[d], count[d], order.index(d)))
        if len(candidates) < replicas:
            room = ", ".join(f"{d} {free[d] / MB:.3g} MB free" for d in order if d != device) or "no other device"
            raise PlanningError(f"piece {name!r} ({size / MB:.3g} MB) needs {replicas} standby device(s) besides "
                                f"{device!r}, but only {len(candidates)} have room ({room}); use fewer --replicas or "
                                "devices with more memory")
        picked = tuple(candidates[:replicas])
        for d in picked:
            free[d] -= size
            count[d] += 1
        chosen[name] = (device, *picked)
    return {name: chosen[name] for name in pieces}
