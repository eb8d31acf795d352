"""The ``pipeline`` strategy: any zoo model cut at its split points into K consecutive stages.

Steps: reparameterize the model (the inference graph every export starts from), time each
of its ``segments()`` on this machine (interleaved, on the activations it really gets),
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
from edgevit.partition.pipeline import PipelinePlan, balance_pipeline, evaluate_stages, stage_cost
from edgevit.partition.placement import single_device
from edgevit.partition.plan import Plan, PlanPiece
from edgevit.split.classwise import CHECK_IMAGES, _example, _pytorch_ms, _pytorch_timing, _summary, _with_ms
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
        stages = balance_pipeline(costs, request.cluster)
        pieces = []
        for k, stage in enumerate(stages.stages):
            start = names[stage.first - 1] if stage.first > 0 else None
            end = names[stage.last] if stage.last < len(names) - 1 else None
            cost = stage_cost(costs[stage.first : stage.last + 1], f"stage{k}")
            piece = PlanPiece(
                name=f"stage{k}", role="stage", artifact=f"stage{k}", device=stage.device, input_name="input",
                output_name="logits", cost=cost.to_dict(),
                predicted={"compute_ms": stage.compute_ms, "input_transfer_ms": stage.input_transfer_ms,
                           "output_transfer_ms": stage.output_transfer_ms, "stage_ms": stage.total_ms},
                span=(start, end), info={"segments": names[stage.first : stage.last + 1],
                                         "segment_range": [stage.first, stage.last]},
            )
            module = deploy.stage(start, end).eval()
            pieces.append(BuiltPiece(piece, module, inputs[stage.first], k == 0, checks[stage.first],
                                     None if calibrations is None else calibrations[stage.first]))
        unsplit = piece_cost("unsplit", deploy, example, options.precision,
                             interleaved_ms({"unsplit": deploy}, {"unsplit": example}, rounds=options.measure_rounds,
                                            threads=options.threads)["unsplit"])
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
            latency=self.latency_report(stages, unsplit, request.cluster, _pytorch_timing(request)),
            accuracy=accuracy_report,
            notes=("stage memory = weights at the export precision + the largest segment's peak activations "
                   "(an estimate)",),
        )
        return BuiltPlan(plan, pieces, None, deploy, unsplit=deploy, strategy=self)

    def retime(self, plan: Plan, measured: dict[str, float], timing: str) -> Plan:
        """Stage times replaced by ``measured`` (the cuts stay), latency recomputed; PyTorch figures kept."""
        cluster = parse_devices(plan.devices, source="plan.json")
        costs = [_with_ms(p.name, p.cost, measured[p.name]) for p in plan.pieces]
        stages = evaluate_stages(costs, [tuple(p.info["segment_range"]) for p in plan.pieces], cluster)
        pieces = [dataclasses.replace(p, cost={**p.cost, "measured_ms": measured[p.name], "pytorch_ms": _pytorch_ms(p.cost)},
                                      predicted={"compute_ms": s.compute_ms, "input_transfer_ms": s.input_transfer_ms,
                                                 "output_transfer_ms": s.output_transfer_ms, "stage_ms": s.total_ms})
                  for p, s in zip(plan.pieces, stages.stages)]
        latency = self.latency_report(stages, _with_ms("unsplit", plan.model["cost"], measured["unsplit"]), cluster,
                                      timing)
        latency["pytorch_eager"] = plan.latency.get("pytorch_eager") or _summary(plan.latency)
        model = {**plan.model, "measured_ms": measured["unsplit"], "pytorch_ms": plan.model.get("pytorch_ms", plan.model["measured_ms"]),
                 "cost": {**plan.model["cost"], "measured_ms": measured["unsplit"]}}
        return dataclasses.replace(plan, pieces=tuple(pieces), latency=latency, model=model)

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
    def latency_report(stages: PipelinePlan, unsplit, cluster, measured_on: str) -> dict:
        alone = single_device(unsplit, cluster)
        report = {
            "measured_on": measured_on,
            "model": "stage time = [input transfer, first stage] + compute (measured here / device speed) + transfer "
                     "to the next device (modelled); a stream runs at 1000 / bottleneck_ms frames per second",
            "per_stage": [{"stage": f"stage{k}", "device": s.device, "segments": [s.first, s.last],
                           "compute_ms": s.compute_ms, "input_transfer_ms": s.input_transfer_ms,
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
                          throughput_gain=alone.total_ms / stages.bottleneck_ms)
        return report
