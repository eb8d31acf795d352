"""Pipeline balancing: cut a model at its split points into K consecutive stages (pure).

The devices form a chain in device-file order: the coordinator sends a frame to device 1,
device k sends its activations to device k+1, and the last device sends the logits back.
For a stream of frames every stage works on a different frame, so the frame rate is set by
the slowest stage. A stage's time is its compute on its device plus sending its output
on (the first stage also receives the frame)::

    stage_ms(k) = [transfer in] + compute_k + transfer out
    compute_k   = sum(segment measured_ms) / speed_k          (device k gives a relative speed)
                = sum(segment predicted ms) - (n - 1) * run_ms (device k gives a profile: each
                  segment predicted from it, the per-call overhead counted once)

:func:`balance_pipeline` finds, by dynamic programming over the cut positions, the K stages
that minimise the slowest stage (then the frame's total latency), subject to each stage's
weights and activations fitting its device's memory.

Example:
    >>> stages = balance_pipeline(segment_costs, cluster)
    >>> [(s.first, s.last, s.device) for s in stages.stages], stages.bottleneck_ms
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevit.devices import MB, Cluster, Device
from edgevit.errors import PlanningError
from edgevit.partition.cost import PieceCost, ProfiledTime, compute_ms, link_ms, transfer_ms

__all__ = ["PipelinePlan", "Stage", "balance_pipeline", "evaluate_stages", "stage_cost"]


@dataclass(frozen=True)
class Stage:
    """Segments ``first..last`` (inclusive indices) on ``device``, with modelled times."""

    first: int
    last: int
    device: str
    compute_ms: float
    input_transfer_ms: float
    output_transfer_ms: float
    memory_bytes: int

    @property
    def total_ms(self) -> float:
        return self.input_transfer_ms + self.compute_ms + self.output_transfer_ms


@dataclass(frozen=True)
class PipelinePlan:
    stages: tuple[Stage, ...]

    @property
    def bottleneck_ms(self) -> float:
        """Time per frame of the slowest stage; a stream runs at ``1000 / bottleneck_ms`` frames/s."""
        return max(s.total_ms for s in self.stages)

    @property
    def end_to_end_ms(self) -> float:
        """Latency of one frame through every stage and link (stage k+1's input is stage k's output)."""
        return self.stages[0].input_transfer_ms + sum(s.compute_ms + s.output_transfer_ms for s in self.stages)

    @property
    def compute_only_ms(self) -> float:
        return sum(s.compute_ms for s in self.stages)


def stage_cost(segments: list[PieceCost] | tuple[PieceCost, ...], name: str) -> PieceCost:
    """One piece made of consecutive segments: sizes and times add, activations peak.

    A time predicted from a device's profile is added the same way, the backend's per-call
    overhead counted once (:meth:`ProfiledTime.chained`); a device with a prediction missing
    for one of the segments gets none for the stage."""
    measured = [s.measured_ms for s in segments]
    devices = set.intersection(*(set(s.profiled) for s in segments)) if segments else set()
    return PieceCost(
        name=name,
        params=sum(s.params for s in segments),
        macs=sum(s.macs for s in segments),
        weight_bytes=sum(s.weight_bytes for s in segments),
        activation_bytes=max(s.activation_bytes for s in segments),
        input_bytes=segments[0].input_bytes,
        output_bytes=segments[-1].output_bytes,
        measured_ms=None if any(m is None for m in measured) else sum(measured),  # type: ignore[arg-type]
        profiled={device: ProfiledTime.chained(s.profiled[device] for s in segments) for device in sorted(devices)},
    )


def balance_pipeline(segments: list[PieceCost] | tuple[PieceCost, ...], cluster: Cluster) -> PipelinePlan:
    """Cut ``segments`` into ``len(cluster)`` consecutive stages, stage k on device k.

    Raises:
        PlanningError: more devices than segments, or no cut fits the devices' memory.
    """
    n, k = len(segments), len(cluster.devices)
    if k > n:
        raise PlanningError(
            f"{k} devices but the model has only {n} segments ({n - 1} split points); use at most {n} devices"
        )
    devices = cluster.devices
    inf = (float("inf"), float("inf"))
    # best[i][j]: (slowest stage, total latency, cuts) for segments[:j] on devices[:i]
    best: list[list[tuple[float, float, tuple[int, ...]]]] = [[(*inf, ())] * (n + 1) for _ in range(k + 1)]
    best[0][0] = (0.0, 0.0, ())
    for i in range(1, k + 1):
        for j in range(i, n - (k - i) + 1):
            for start in range(i - 1, j):
                prev = best[i - 1][start]
                if prev[0] == float("inf"):
                    continue
                stage = _stage(segments, start, j - 1, devices, i - 1)
                if stage is None:
                    continue
                candidate = (max(prev[0], stage.total_ms), prev[1] + stage.compute_ms + stage.output_transfer_ms
                             + stage.input_transfer_ms * (i == 1), (*prev[2], start))
                if candidate[:2] < best[i][j][:2]:
                    best[i][j] = candidate
    if best[k][n][0] == float("inf"):
        total = sum(s.weight_bytes for s in segments)
        raise PlanningError(
            f"no way to cut the model ({total / MB:.2f} MB of weights in {n} segments) into {k} stages that fit "
            f"the devices' memory ({', '.join(f'{d.name}: {d.memory_mb:g} MB' for d in devices)}); "
            "add memory or use a smaller precision"
        )
    starts = [*best[k][n][2], n]
    stages = tuple(_stage(segments, starts[i], starts[i + 1] - 1, devices, i) for i in range(k))
    return PipelinePlan(stages)  # type: ignore[arg-type]


def evaluate_stages(stages: list[PieceCost] | tuple[PieceCost, ...], spans: list[tuple[int, int]],
                    cluster: Cluster) -> PipelinePlan:
    """The times of given stages (stage k on device k), e.g. re-timed after export.

    Raises:
        PlanningError: a stage no longer fits its device's memory.
    """
    out = []
    for k, (piece, (first, last)) in enumerate(zip(stages, spans)):
        stage = _stage_on(piece, first, last, cluster.devices, k)
        if stage is None:
            raise PlanningError(f"stage {k} needs {piece.memory_bytes / MB:.3g} MB but device "
                                f"{cluster.devices[k].name!r} has {cluster.devices[k].memory_mb:g} MB")
        out.append(stage)
    return PipelinePlan(tuple(out))


def _stage(segments, first: int, last: int, devices: tuple[Device, ...], index: int) -> Stage | None:
    return _stage_on(stage_cost(segments[first : last + 1], f"stage{index}"), first, last, devices, index)


def _stage_on(piece: PieceCost, first: int, last: int, devices: tuple[Device, ...], index: int) -> Stage | None:
    device = devices[index]
    if piece.memory_bytes > device.memory_bytes:
        return None
    incoming = transfer_ms(piece.input_bytes, device) if index == 0 else 0.0
    if index + 1 < len(devices):
        outgoing = link_ms(piece.output_bytes, device, devices[index + 1])
    else:
        outgoing = transfer_ms(piece.output_bytes, device)
    return Stage(first, last, device.name, compute_ms(piece, device), incoming, outgoing, piece.memory_bytes)
