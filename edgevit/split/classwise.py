"""The ``classwise`` strategy: ED-ViT's class-wise split, pruning, placement and fusion.

Steps (each a method below):

1. ``groups``: the C classes into K groups (K = number of devices), balanced or
   confusion-aware; a device that cannot hold even the smallest feasible sub-model is refused.
2. ``build_sub``: per group, a full-width copy with the group's head rows, then
   ``prune_steps`` rounds of *score on the group's images* -> *prune to the next keep ratio* ->
   *distil from the full model on the group's data*, down to the keep ratio that meets the
   parameter budget (``1 / reduction`` of the full model).
3. ``place``: measure every sub-model on this machine (and predict it from the profile of
   every device the device file gives by a profile), place them greedily (largest first,
   where each finishes earliest); a sub-model that fits no device is pruned harder (one more
   round, at the keep ratio that fits the most free memory) and placement is retried.
4. ``fuse``: train the fusion MLP on the concatenated sub-model features and one presence
   column per sub-model, sub-models frozen, each sub-model's features dropped at random
   (``fusion_drop``) so that the head still answers when devices are down.
5. ``assemble``: accuracy of the unsplit model and of the split on the validation split
   (all sub-models present, and each one missing in turn), final timings (unsplit model,
   sub-models and fusion head interleaved), the plan.
"""

from __future__ import annotations

import dataclasses
import platform
import time

import numpy as np
import torch

from edgevit._progress import duration
from edgevit.devices import parse_devices
from edgevit.errors import PlanningError
from edgevit.models import count_params
from edgevit.partition.classes import balanced_split, confusion_split, group_sizes
from edgevit.partition.cost import PieceCost, compute_source
from edgevit.partition.placement import NoFeasibleDevice, Placement, check_devices_fit, place, single_device
from edgevit.partition.plan import Plan, PlanPiece
from edgevit.predict.fit import PREDICTOR_VERSION
from edgevit.split.fusion import (
    FeatureExtractor,
    SplitModel,
    degraded_top1,
    extract_features,
    head_input,
    train_fusion,
)
from edgevit.split.measure import interleaved_ms, piece_cost
from edgevit.split.pruners import pruner_for
from edgevit.split.recover import distill
from edgevit.split.request import BuiltPiece, BuiltPlan, SplitRequest, calibration_images
from edgevit.split.resume import SubModelStore
from edgevit.train import TrainConfig, accuracy, predict_logits

__all__ = ["ClasswiseStrategy"]

CHECK_IMAGES = 8


class ClasswiseStrategy:
    """ED-ViT: one class-wise pruned sub-model per device and a fusion MLP (see the module docstring)."""

    name = "classwise"

    def build(self, request: SplitRequest) -> BuiltPlan:
        if request.train_set is None or request.val_set is None:
            raise PlanningError("the classwise strategy needs labelled data (--data) to prune, recover and fuse")
        pruner = pruner_for(request.model)
        groups = self.groups(request)
        largest = max(len(g) for g in groups)
        check_devices_fit(request.cluster, pruner.smallest_cost(request.model, largest, request.options.precision))
        budget = int(count_params(request.model) / request.options.reduction)
        ratios = [pruner.ratio_for_budget(request.model, len(g), max_params=budget, precision=request.options.precision)
                  for g in groups]
        subs = []
        store = SubModelStore(request.resume, request) if request.resume is not None else None
        started = time.perf_counter()
        built = 0
        for i, (group, ratio) in enumerate(zip(groups, ratios)):
            sub = store.load(pruner, request.model, group, ratio) if store is not None else None
            if sub is not None:
                request.log(f"sub{i} of {len(groups)}: classes {list(group)}, keep ratio {ratio:.3f}: loaded, "
                            f"finished before the split was interrupted ({store.folder})")
                subs.append(sub)
                continue
            request.log(f"sub{i} of {len(groups)}: classes {list(group)}, keep ratio {ratio:.3f}")
            sub = self.build_sub(request, pruner, group, ratio)
            if store is not None:
                store.save(pruner, sub, group, ratio)
            subs.append(sub)
            built += 1
            left = len(groups) - i - 1
            if left:
                each = (time.perf_counter() - started) / built
                request.log(f"sub{i} done; about {duration(each * left)} for the other {left} sub-model(s), "
                            f"then the fusion head")
        subs, ratios = self.place(request, pruner, groups, subs, ratios)
        extractors = [FeatureExtractor(sub) for sub in subs]
        request.log("training the fusion head")
        fusion, history = train_fusion(extractors, request.train_set, request.val_set, request.spec,
                                       num_classes=request.train_set.num_classes, hidden=request.options.fusion_hidden,
                                       epochs=request.options.fusion_epochs, drop=request.options.fusion_drop,
                                       seed=request.options.seed)
        return self.assemble(request, pruner, groups, subs, ratios, extractors, fusion, history)

    # -- 1. groups -----------------------------------------------------------------------------
    def groups(self, request: SplitRequest) -> tuple[tuple[int, ...], ...]:
        num_classes, k = request.train_set.num_classes, len(request.cluster)
        group_sizes(num_classes, k)  # more devices than classes: an error
        if request.options.grouping == "balanced":
            return balanced_split(num_classes, k)
        x, y = request.train_set.arrays(request.spec)
        predicted = predict_logits(request.model, x).argmax(1)
        confusion = np.zeros((num_classes, num_classes))
        np.add.at(confusion, (y, predicted), 1)
        return confusion_split(confusion.tolist(), k)

    # -- 2. prune and recover ---------------------------------------------------------------------
    def build_sub(self, request: SplitRequest, pruner, group: tuple[int, ...], ratio: float, start=None,
                  start_ratio: float = 1.0):
        options = request.options
        classes = list(group)
        train_group = request.train_set.with_classes(classes)
        x, _ = train_group.arrays(request.spec)
        pick = np.random.default_rng(options.seed).permutation(len(x))[: options.score_images]
        images = np.ascontiguousarray(x[np.sort(pick)])
        sub = start if start is not None else pruner.group_model(request.model, classes)
        steps = options.prune_steps if start is None else 1
        config = TrainConfig(epochs=max(options.recover_epochs, 1), batch_size=options.batch_size, lr=options.lr,
                             warmup_epochs=0.3, seed=options.seed)
        for step in range(1, steps + 1):
            keep = start_ratio * (ratio / start_ratio) ** (step / steps)
            sub = pruner.prune(sub, images, keep, reference=request.model, batch_size=options.batch_size)
            if options.recover_epochs:
                distill(sub, request.model, classes, train_group, None, config, request.spec,
                        temperature=options.distill_temperature, alpha=options.distill_alpha,
                        progress=request.progress)
        return sub.eval()

    # -- 3. place, tightening what fits nowhere ------------------------------------------------------
    def place(self, request: SplitRequest, pruner, groups, subs: list, ratios: list[float]):
        options = request.options
        for attempt in range(options.max_tighten + 1):
            costs, _ = self.costs(request, pruner, subs)
            try:
                place(costs, request.cluster)
                return subs, ratios
            except NoFeasibleDevice as exc:
                if attempt == options.max_tighten:
                    raise PlanningError(f"{exc} (after pruning it harder {attempt} times)") from exc
                i = int(exc.piece.removeprefix("sub"))
                fit = pruner.ratio_for_budget(request.model, len(groups[i]), max_memory_bytes=exc.best_free_bytes,
                                              precision=options.precision)
                new = min(fit, ratios[i] * 0.85)
                request.log(f"sub{i} fits no device ({exc.needed_bytes:,} bytes, at most {exc.best_free_bytes:,} "
                            f"free): keep ratio {ratios[i]:.3f} -> {new:.3f}")
                subs[i] = self.build_sub(request, pruner, groups[i], new, start=subs[i], start_ratio=ratios[i])
                ratios[i] = new
        raise AssertionError("unreachable")

    def costs(self, request: SplitRequest, pruner, subs: list, extra: dict | None = None, rounds: int | None = None):
        """Costs of the sub-models (as feature extractors) and of ``extra`` (name -> (module, input)),
        all timed interleaved on this machine; the sub-models and the unsplit model are also
        predicted on every profiled device (each exported once, :mod:`edgevit.split.profiles`)."""
        example = _example(request)
        pieces = {f"sub{i}": (FeatureExtractor(sub), example) for i, sub in enumerate(subs)}
        pieces.update(extra or {})
        times = interleaved_ms({n: m for n, (m, _) in pieces.items()}, {n: x for n, (_, x) in pieces.items()},
                               rounds=rounds or max(3, request.options.measure_rounds // 3),
                               threads=request.options.threads)
        calibration = calibration_images(request) if request.predictor is not None else None
        costs = [request.profiled(pruner.cost(f"sub{i}", sub, example, request.options.precision, times[f"sub{i}"]),
                                  pieces[f"sub{i}"][0], example, calibration, image_input=True)
                 for i, sub in enumerate(subs)]
        others = {name: piece_cost(name, module, x, request.options.precision, times[name])
                  for name, (module, x) in (extra or {}).items()}
        if "unsplit" in others:  # placed nowhere, but compared with the plan on every device
            module, x = extra["unsplit"]
            others["unsplit"] = request.profiled(others["unsplit"], module, x, calibration, image_input=True)
        return costs, others

    # -- 5. the plan -------------------------------------------------------------------------------
    def assemble(self, request, pruner, groups, subs, ratios, extractors, fusion, history) -> BuiltPlan:
        options, model = request.options, request.model
        split_model = SplitModel(extractors, fusion).eval()
        vx, vy = request.val_set.arrays(request.spec)
        unsplit = accuracy(predict_logits(model, vx), vy)
        fused = accuracy(predict_logits(split_model, vx), vy)
        val_features = extract_features(extractors, vx)
        names = [f"sub{i}" for i in range(len(subs))]
        degraded = degraded_top1(fusion, val_features, vy, names)
        request.log(f"validation top-1: unsplit {unsplit.top1:.2f}%, fused {fused.top1:.2f}%"
                    + "".join(f", without {name} {top1:.2f}%" for name, top1 in degraded.items()))
        fusion_check = _fusion_inputs(val_features, fusion.feature_dims, CHECK_IMAGES)
        calibration = calibration_images(request)
        fusion_calibration = None if calibration is None else _fusion_inputs(
            extract_features(extractors, calibration), fusion.feature_dims, len(calibration))
        extra = {"unsplit": (model, _example(request)), "fusion": (fusion, torch.from_numpy(fusion_check[:1]))}
        costs, others = self.costs(request, pruner, subs, extra, rounds=options.measure_rounds)
        placement = place(costs, request.cluster, others["fusion"])
        full_params = count_params(model)
        pieces = []
        for i, (group, sub, cost, ratio) in enumerate(zip(groups, subs, costs, ratios)):
            group_val = request.val_set.with_classes(list(group))
            gx, gy = group_val.arrays(request.spec)
            group_top1 = accuracy(predict_logits(sub, gx), gy).top1
            assignment = placement.assignments[i]
            piece = PlanPiece(
                name=f"sub{i}", role="submodel", artifact=f"sub{i}", device=assignment.device,
                input_name="input", output_name="logits", cost=cost.to_dict(),
                predicted=_predicted(assignment, cost, request.cluster),
                classes=tuple(group),
                info={"class_names": [request.train_set.classes[c] for c in group], "keep_ratio": ratio,
                      "param_reduction": full_params / cost.params, "group_val_top1": group_top1,
                      "feature_dim": fusion.feature_dims[i],
                      **pruner.describe(sub)},
            )
            check = np.ascontiguousarray(vx[:CHECK_IMAGES])
            pieces.append(BuiltPiece(piece, extractors[i], torch.from_numpy(vx[:1]), True, check, calibration))
        fusion_cost = others["fusion"]
        fusion_piece = BuiltPiece(
            PlanPiece(name="fusion", role="fusion", artifact="fusion", device=None, input_name="input",
                      output_name="logits", cost=fusion_cost.to_dict(),
                      predicted={"compute_ms": placement.fusion_ms},
                      info={"feature_order": [p.piece.name for p in pieces], "feature_dims": list(fusion.feature_dims),
                            "presence_columns": len(pieces), "hidden": options.fusion_hidden,
                            "fusion_drop": options.fusion_drop, "history": history[-1]}),
            fusion, torch.from_numpy(fusion_check[:1]), False, fusion_check, fusion_calibration)
        plan = Plan(
            strategy=self.name,
            model={"name": request.model_name, "image_size": request.spec.size, "num_classes": request.train_set.num_classes,
                   "params": full_params, "macs": others["unsplit"].macs, "measured_ms": others["unsplit"].measured_ms,
                   "cost": others["unsplit"].to_dict()},
            labels=tuple(request.train_set.classes), target=options.target, precision=options.precision,
            preprocessing=request.spec.to_dict(), pieces=tuple(p.piece for p in pieces), fusion=fusion_piece.piece,
            devices=request.cluster.to_dict(),
            latency=latency_report(placement, others["unsplit"], request.cluster, _pytorch_timing(request),
                                   profiles_record(request)),
            accuracy={"split": request.val_set.name, "images": int(len(vy)), "unsplit_top1": unsplit.top1,
                      "fused_top1": fused.top1, "degraded": degraded, "evaluated_with": "PyTorch"},
            notes=_notes(request) + profile_notes(request, [*costs, others["unsplit"]]),
        )
        return BuiltPlan(plan, pieces, fusion_piece, split_model, unsplit=model, strategy=self)

    # -- after export: the exported pieces timed with the runtime -----------------------------------
    def retime(self, plan: Plan, measured: dict[str, float], timing: str) -> Plan:
        """The plan with every compute time replaced by ``measured`` (piece name -> ms, with
        ``unsplit`` and ``fusion``), placement and latency recomputed; the PyTorch figures kept."""
        cluster = parse_devices(plan.devices, source="plan.json")
        costs = [_with_ms(p.name, p.cost, measured[p.name]) for p in plan.pieces]
        placement = place(costs, cluster, _with_ms("fusion", plan.fusion.cost, measured["fusion"]))
        pieces = []
        for piece, cost, assignment in zip(plan.pieces, costs, placement.assignments):
            pieces.append(dataclasses.replace(
                piece, device=assignment.device, cost={**piece.cost, "measured_ms": measured[piece.name],
                                                       "pytorch_ms": _pytorch_ms(piece.cost)},
                predicted=_predicted(assignment, cost, cluster)))
        fusion = dataclasses.replace(plan.fusion, cost={**plan.fusion.cost, "measured_ms": measured["fusion"],
                                                        "pytorch_ms": _pytorch_ms(plan.fusion.cost)},
                                     predicted={"compute_ms": placement.fusion_ms})
        unsplit = _with_ms("unsplit", plan.model["cost"], measured["unsplit"])
        latency = latency_report(placement, unsplit, cluster, timing, plan.latency.get("profiles"))
        latency["pytorch_eager"] = plan.latency.get("pytorch_eager") or _summary(plan.latency)
        model = {**plan.model, "measured_ms": measured["unsplit"], "pytorch_ms": plan.model.get("pytorch_ms", plan.model["measured_ms"]),
                 "cost": {**plan.model["cost"], "measured_ms": measured["unsplit"]}}
        return dataclasses.replace(plan, pieces=tuple(pieces), fusion=fusion, latency=latency, model=model)


def _fusion_inputs(features: np.ndarray, feature_dims: tuple[int, ...], count: int) -> np.ndarray:
    """Real fusion-head inputs (to verify or calibrate the exported head on): ``count`` complete,
    then half as many with each sub-model missing in turn (the degraded answers count too)."""
    x = torch.from_numpy(np.ascontiguousarray(features[:count]))
    k, half = len(feature_dims), x[: max(1, count // 2)]
    rows = [head_input(x, x.new_ones(len(x), k), feature_dims)]
    for i in range(k) if k > 1 else ():  # K = 1: nothing answers without the only sub-model
        presence = x.new_ones(len(half), k)
        presence[:, i] = 0.0
        rows.append(head_input(half, presence, feature_dims))
    return torch.cat(rows).numpy()


def _example(request: SplitRequest) -> torch.Tensor:
    size = request.spec.size
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def _pytorch_timing(request: SplitRequest) -> str:
    return (f"{platform.machine()} {platform.processor() or platform.system()}, PyTorch {torch.__version__} eager, "
            f"{request.options.threads} thread(s), minimum of interleaved runs in the planning process")


def _with_ms(name: str, cost: dict, ms: float) -> PieceCost:
    """A plan's cost record with the compute time on this machine replaced (predicted times kept)."""
    return dataclasses.replace(PieceCost.from_dict(name, cost), measured_ms=ms)


def _predicted(assignment, cost: PieceCost, cluster) -> dict:
    """A sub-model's times on its device, and where its compute figure came from."""
    return {"compute_ms": assignment.compute_ms, "output_transfer_ms": assignment.output_transfer_ms,
            "compute_from": compute_source(cost, cluster.device(assignment.device))}


def profiles_record(request: SplitRequest) -> dict | None:
    """``{device: what its profile is}`` for the plan's ``latency.profiles`` (None: no device is profiled)."""
    if request.predictor is None:
        return None
    return {name: profiled.to_dict() for name, profiled in request.predictor.devices.items()}


def profile_notes(request: SplitRequest, costs: list[PieceCost]) -> tuple[str, ...]:
    """What a reader of the plan should know of its predicted times: how they were made, and the
    predictions that are lower bounds."""
    if request.predictor is None:
        return ()
    predictor = request.predictor
    notes = [f"compute on {', '.join(predictor.devices)} is predicted from each device's profile "
             f"(edgevit.predict, predictor version {PREDICTOR_VERSION}) on each piece exported, unverified, to "
             f"{predictor.target} {predictor.precision}; latency.profiles names the profiles, and every piece's "
             "predicted.compute_from the figure it uses"]
    for cost in costs:
        for device, timed in cost.profiled.items():
            if not timed.complete:
                what = ", ".join(f"{op} x{count}" for op, count in timed.not_costed)
                notes.append(f"{cost.name} on {device}: {timed.ms:.3f} ms is a lower bound; not costed: {what}")
    return tuple(notes)


def _pytorch_ms(cost: dict) -> float:
    """The PyTorch time of a piece, also when the plan was re-timed before."""
    return cost.get("pytorch_ms", cost["measured_ms"])


def _summary(latency: dict) -> dict:
    keys = ("measured_on", "end_to_end_ms", "measured_part_ms", "modelled_part_ms", "unsplit_measured_ms",
            "unsplit_device_ms", "ratio_to_unsplit", "bottleneck_ms", "frames_per_second", "throughput_gain")
    return {k: latency[k] for k in keys if k in latency}


def latency_report(placement: Placement, unsplit: PieceCost, cluster, measured_on: str,
                   profiles: dict | None = None) -> dict:
    """Predicted latency, the measured and the modelled parts apart, and the unsplit reference.

    ``profiles``: what the profiled devices' profiles are (recorded as ``profiles``)."""
    loads = [load for load in placement.loads if load.pieces]
    critical = max(loads, key=lambda load: load.total_ms)
    alone = single_device(unsplit, cluster)
    report = {
        "measured_on": measured_on,
        "model": "device time = input transfer (modelled) + sum of its sub-models' compute (measured here / "
                 "device speed, or predicted from the device's profile) + feature transfers (modelled); end-to-end = "
                 "slowest device + fusion head (measured here / coordinator speed)",
        "per_device": [{"device": load.device, "pieces": list(load.pieces), "input_transfer_ms": load.input_transfer_ms,
                        "compute_ms": load.compute_ms, "compute_from": cluster.device(load.device).speed_from,
                        "output_transfer_ms": load.output_transfer_ms,
                        "total_ms": load.total_ms, "memory_bytes": load.memory_bytes} for load in placement.loads],
        "fusion_ms": placement.fusion_ms,
        "end_to_end_ms": placement.end_to_end_ms,
        "measured_part_ms": critical.compute_ms + placement.fusion_ms,
        "modelled_part_ms": critical.input_transfer_ms + critical.output_transfer_ms,
        "critical_device": critical.device,
        "unsplit_measured_ms": unsplit.measured_ms,
    }
    if alone is not None:
        report["unsplit_device"] = alone.device
        report["unsplit_device_ms"] = alone.total_ms
        report["unsplit_compute_ms"] = alone.compute_ms
        report["unsplit_compute_from"] = compute_source(unsplit, cluster.device(alone.device))
        report["ratio_to_unsplit"] = placement.end_to_end_ms / alone.total_ms
    else:
        report["unsplit_device"] = None
        report["unsplit_note"] = "the unsplit model fits in no single device's memory"
    if profiles:
        report["profiles"] = profiles
    return report


def _notes(request: SplitRequest) -> tuple[str, ...]:
    return (
        "sub-model sizes: parameters counted exactly; memory = weights at the export precision + an estimate of "
        "peak activations for one image (runtime overheads not included)",
        "unit importance: second-order (diagonal Fisher) estimate of the KL divergence between the unpruned and "
        "the masked output distributions over the group's classes, on the group's training images",
    )
