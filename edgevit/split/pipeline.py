"""The ``pipeline`` strategy: any zoo model cut at its split points into K consecutive stages.

Steps: reparameterize the model (the inference graph every export starts from), time each
of its ``segments()`` on this machine (interleaved, on the activations it really gets), and,
for devices given by a profile, export each segment alone and predict it from the profile
(:mod:`edgevit.split.profiles`; one unverified export per segment, a few seconds each),
balance them over the chain of devices with :func:`edgevit.partition.balance_pipeline`
(minimising the slowest stage, with transfers modelled from the device file), and build
each stage with ``model.stage(start, end)``. No data is needed; with data, the unsplit
model's accuracy is recorded and the exported chain is checked against it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from edgevit.devices import parse_devices
from edgevit.models import count_params
from edgevit.partition.cost import compute_source
from edgevit.partition.pipeline import PipelinePlan, balance_pipeline, evaluate_stages, stage_cost
from edgevit.partition.placement import single_device
from edgevit.partition.plan import Plan, PlanPiece
from edgevit.split.classwise import (
    CHECK_IMAGES,
    _example,
    _pytorch_ms,
    _pytorch_timing,
    _summary,
    _with_ms,
    profile_notes,
    profiles_record,
)
from edgevit.split.measure import interleaved_ms, piece_cost
from edgevit.split.request import BuiltPiece, BuiltPlan, SplitRequest, calibration_images
from edgevit.train import accuracy, predict_logits

__all__ = ["PipelineStrategy"]


class PipelineStrategy:
    """Consecutive stages on a chain of devices, balanced by measured cost."""

    name = "pipeline"

    def build(self, request: SplitRequest) -> BuiltPlan:
        options = request.options
        deploy = request.model.reparameterize() if hasattr(request.model, "reparameterize") else request.model
        segments = deploy.segments()
        names = [name for name, _ in segments]
        check = self.check_images(request)
        example = _example(request)
        inputs, checks = self.segment_inputs(segments, example, check)
        calibration = calibration_images(request)
        calibrations = None if calibration is None else self.segment_inputs(
            segments, example, torch.from_numpy(calibration))[1]
        times = interleaved_ms(dict(segments), dict(zip(names, inputs)), rounds=options.measure_rounds,
                               threads=options.threads)
        costs = [piece_cost(name, module, inputs[i], options.precision, times[name])
                 for i, (name, module) in enumerate(segments)]
        request.log("segment times (ms): " + ", ".join(f"{n} {times[n]:.2f}" for n in names))
        costs = self.profiled_segments(request, deploy, names, costs, inputs, calibrations)
        stages = balance_pipeline(costs, request.cluster)
        pieces = []
        for k, stage in enumerate(stages.stages):
            start = names[stage.first - 1] if stage.first > 0 else None
            end = names[stage.last] if stage.last < len(names) - 1 else None
            cost = stage_cost(costs[stage.first : stage.last + 1], f"stage{k}")
            piece = PlanPiece(
                name=f"stage{k}", role="stage", artifact=f"stage{k}", device=stage.device, input_name="input",
                output_name="logits", cost=cost.to_dict(), predicted=_predicted(stage, cost, request.cluster),
                span=(start, end), info={"segments": names[stage.first : stage.last + 1],
                                         "segment_range": [stage.first, stage.last]},
            )
            module = deploy.stage(start, end).eval()
            pieces.append(BuiltPiece(piece, module, inputs[stage.first], k == 0, checks[stage.first],
                                     None if calibrations is None else calibrations[stage.first]))
        unsplit = piece_cost("unsplit", deploy, example, options.precision,
                             interleaved_ms({"unsplit": deploy}, {"unsplit": example}, rounds=options.measure_rounds,
                                            threads=options.threads)["unsplit"])
        unsplit = request.profiled(unsplit, deploy, example, calibration, image_input=True)
        accuracy_report = {}
        if request.val_set is not None:
            vx, vy = request.val_set.arrays(request.spec)
            accuracy_report = {"split": request.val_set.name, "images": int(len(vy)), "evaluated_with": "PyTorch",
                               "unsplit_top1": accuracy(predict_logits(request.model, vx), vy).top1}
        plan = Plan(
            strategy=self.name,
            model={"name": request.model_name, "image_size": request.spec.size,
                   "num_classes": int(getattr(request.model, "num_classes", 0) or 0), "params": count_params(deploy),
                   "macs": unsplit.macs, "measured_ms": unsplit.measured_ms, "split_points": names[:-1],
                   "cost": unsplit.to_dict()},
            labels=tuple(request.train_set.classes) if request.train_set is not None else
            tuple(getattr(request.model, "labels", None) or [str(i) for i in range(deploy.num_classes)]),
            target=options.target, precision=options.precision, preprocessing=request.spec.to_dict(),
            pieces=tuple(p.piece for p in pieces), devices=request.cluster.to_dict(),
            latency=self.latency_report(stages, unsplit, request.cluster, _pytorch_timing(request),
                                        profiles_record(request)),
            accuracy=accuracy_report,
            notes=("stage memory = weights at the export precision + the largest segment's peak activations "
                   "(an estimate)",) + self.profile_notes(request, costs, unsplit),
        )
        return BuiltPlan(plan, pieces, None, deploy, unsplit=deploy, strategy=self)

    def retime(self, plan: Plan, measured: dict[str, float], timing: str) -> Plan:
        """Stage times replaced by ``measured`` (the cuts stay), latency recomputed; PyTorch figures kept."""
        cluster = parse_devices(plan.devices, source="plan.json")
        costs = [_with_ms(p.name, p.cost, measured[p.name]) for p in plan.pieces]
        stages = evaluate_stages(costs, [tuple(p.info["segment_range"]) for p in plan.pieces], cluster)
        pieces = [dataclasses.replace(p, cost={**p.cost, "measured_ms": measured[p.name], "pytorch_ms": _pytorch_ms(p.cost)},
                                      predicted=_predicted(s, cost, cluster))
                  for p, cost, s in zip(plan.pieces, costs, stages.stages)]
        latency = self.latency_report(stages, _with_ms("unsplit", plan.model["cost"], measured["unsplit"]), cluster,
                                      timing, plan.latency.get("profiles"))
        latency["pytorch_eager"] = plan.latency.get("pytorch_eager") or _summary(plan.latency)
        model = {**plan.model, "measured_ms": measured["unsplit"], "pytorch_ms": plan.model.get("pytorch_ms", plan.model["measured_ms"]),
                 "cost": {**plan.model["cost"], "measured_ms": measured["unsplit"]}}
        return dataclasses.replace(plan, pieces=tuple(pieces), latency=latency, model=model)

    @staticmethod
    def profiled_segments(request: SplitRequest, deploy, names: list[str], costs: list, inputs: list,
                          calibrations: list | None) -> list:
        """The segments' costs with their times predicted on every profiled device: each segment
        exported alone (as a one-segment stage) once; a stage's time is then its segments' added,
        the per-call overhead counted once (:func:`edgevit.partition.pipeline.stage_cost`)."""
        if request.predictor is None:
            return costs
        out = []
        for i, cost in enumerate(costs):
            start = names[i - 1] if i > 0 else None
            end = names[i] if i < len(names) - 1 else None
            out.append(request.profiled(cost, deploy.stage(start, end).eval(), inputs[i],
                                        None if calibrations is None else calibrations[i], image_input=i == 0))
        return out

    @staticmethod
    def profile_notes(request: SplitRequest, segments: list, unsplit) -> tuple[str, ...]:
        if request.predictor is None:
            return ()
        notes = profile_notes(request, [*segments, unsplit])
        return (*notes, "on a profiled device a stage's compute is the sum of its segments' predictions (each "
                        "segment exported alone), the backend's per-call overhead counted once; fusions across a "
                        "cut are not seen")

    @staticmethod
    def check_images(request: SplitRequest) -> torch.Tensor:
        if request.val_set is not None:
            x, _ = request.val_set.arrays(request.spec)
            return torch.from_numpy(np.ascontiguousarray(x[:CHECK_IMAGES]))
        size = request.spec.size
        return torch.randn(CHECK_IMAGES, 3, size, size, generator=torch.Generator().manual_seed(1))

    @staticmethod
    @torch.no_grad()
    def segment_inputs(segments, example: torch.Tensor, check: torch.Tensor):
        """The input each segment gets: for the batch-1 example and for the check images."""
        inputs, checks = [], []
        x, c = example, check
        for _, module in segments:
            module.eval()
            inputs.append(x)
            checks.append(np.ascontiguousarray(c.numpy()))
            x, c = module(x), module(c)
        return inputs, checks

    @staticmethod
    def latency_report(stages: PipelinePlan, unsplit, cluster, measured_on: str, profiles: dict | None = None) -> dict:
        alone = single_device(unsplit, cluster)
        report = {
            "measured_on": measured_on,
            "model": "stage time = [input transfer, first stage] + compute (measured here / device speed, or its "
                     "segments predicted from the device's profile) + transfer to the next device (modelled); a "
                     "stream runs at 1000 / bottleneck_ms frames per second",
            "per_stage": [{"stage": f"stage{k}", "device": s.device, "segments": [s.first, s.last],
                           "compute_ms": s.compute_ms, "compute_from": cluster.device(s.device).speed_from,
                           "input_transfer_ms": s.input_transfer_ms,
                           "output_transfer_ms": s.output_transfer_ms, "stage_ms": s.total_ms,
                           "memory_bytes": s.memory_bytes} for k, s in enumerate(stages.stages)],
            "bottleneck_ms": stages.bottleneck_ms,
            "frames_per_second": 1000.0 / stages.bottleneck_ms,
            "end_to_end_ms": stages.end_to_end_ms,
            "measured_part_ms": stages.compute_only_ms,
            "modelled_part_ms": stages.end_to_end_ms - stages.compute_only_ms,
            "unsplit_measured_ms": unsplit.measured_ms,
        }
        if alone is not None:
            report.update(unsplit_device=alone.device, unsplit_device_ms=alone.total_ms,
                          unsplit_compute_from=compute_source(unsplit, cluster.device(alone.device)),
                          throughput_gain=alone.total_ms / stages.bottleneck_ms)
        if profiles:
            report["profiles"] = profiles
        return report


def _predicted(stage, cost, cluster) -> dict:
    """A stage's times on its device, and where its compute figure came from."""
    return {"compute_ms": stage.compute_ms, "input_transfer_ms": stage.input_transfer_ms,
            "output_transfer_ms": stage.output_transfer_ms, "stage_ms": stage.total_ms,
            "compute_from": compute_source(cost, cluster.device(stage.device))}
