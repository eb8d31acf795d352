"""Class-wise pruners, one per model family, behind one small interface.

A pruner turns the full model into a sub-model for a group of classes at a *keep ratio*
``r`` (1.0: nothing removed), relative to the full model's widths:

* ``vit``: residual channels, per-head q/k/v dims and FFN neurons (ED-ViT's three targets),
  see :mod:`edgevit.split.vit_prune`;
* ``ffn``: FFN hidden neurons only, for the hierarchical families (``cas_vit_*``,
  ``efficientformerv2_*``): their residual width changes from stage to stage through
  downsampling convs and (for EfficientFormerV2) attention-bias tables and talking heads, so
  ED-ViT's single coupled residual group does not exist; the FFN neurons of every block are
  scored with the same KL estimate and the lowest ``1 - r`` of each block removed.

Both slice the head to the group's classes. Found by name in :data:`PRUNERS`.

Example:
    >>> pruner = pruner_for(model)
    >>> ratio = pruner.ratio_for_budget(model, group_size=5, max_params=params // 8)
    >>> sub = pruner.prune(pruner.group_model(model, [0, 1, 2]), images, ratio, reference=model)
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from edgevit.errors import InvalidArgumentError
from edgevit.models import count_params
from edgevit.partition.budget import MIN_KEEP_RATIO, keep_for_budget, keep_for_ratio, smallest_shape
from edgevit.partition.cost import PieceCost, vit_params, vit_piece_cost
from edgevit.registry import Registry
from edgevit.split.scoring import fisher_kl, vit_scores
from edgevit.split.vit_prune import prune_vit, vit_shape

__all__ = ["PRUNERS", "FfnPruner", "VitPruner", "pruner_for"]

PRUNERS: Registry = Registry("class-wise pruner")


@PRUNERS.register("vit")
class VitPruner:
    """ED-ViT's three structured targets on a ``VisionTransformer``."""

    @staticmethod
    def supports(model: nn.Module) -> bool:
        from edgevit.models.vit import VisionTransformer

        return isinstance(model, VisionTransformer)

    def group_model(self, model: nn.Module, classes: list[int]) -> nn.Module:
        """A full-width copy whose head has only ``classes``."""
        shape = vit_shape(model)
        keep = keep_for_ratio(shape, 1.0, align=1)
        scores = _unit_scores(model)
        return prune_vit(model, scores, keep, classes)

    def prune(self, model: nn.Module, images: np.ndarray, ratio: float, reference: nn.Module,
              batch_size: int = 32) -> nn.Module:
        """Score ``model``'s units on ``images`` (its own outputs) and keep widths ``ratio`` of ``reference``'s."""
        scores = vit_scores(model, images, classes=None, batch_size=batch_size)
        return prune_vit(model, scores, keep_for_ratio(vit_shape(reference), ratio))

    def ratio_for_budget(self, model: nn.Module, group_size: int, max_params: int | None = None,
                         max_memory_bytes: int | None = None, precision: str = "fp32") -> float:
        return keep_for_budget(vit_shape(model), group_size, max_params, max_memory_bytes, precision).ratio

    def smallest_cost(self, model: nn.Module, group_size: int, precision: str) -> PieceCost:
        return vit_piece_cost("smallest", smallest_shape(vit_shape(model), group_size), precision)

    def params_at(self, model: nn.Module, group_size: int, ratio: float) -> int:
        return vit_params(keep_for_ratio(vit_shape(model), ratio).shape(vit_shape(model), group_size))

    def describe(self, sub: nn.Module) -> dict:
        return {"pruned": "residual channels, q/k/v dims per head, FFN neurons", **vit_shape(sub).to_dict()}

    def rebuild(self, model: nn.Module, classes: list[int], widths: dict) -> nn.Module:
        """An untrained sub-model of the widths :meth:`describe` gave (to load saved weights into)."""
        from edgevit.models.vit import VisionTransformer

        hidden = [int(h) for h in widths["mlp_hidden"]]
        sub = VisionTransformer(image_size=int(widths["image_size"]), patch_size=int(widths["patch_size"]),
                                in_chans=int(widths["in_chans"]), num_classes=int(widths["num_classes"]),
                                embed_dim=int(widths["embed_dim"]), depth=len(hidden), num_heads=int(widths["num_heads"]),
                                head_dim=int(widths["head_dim"]), mlp_hidden=hidden)
        sub.model_name = getattr(model, "model_name", "vit")
        return sub.eval()

    def cost(self, name: str, sub: nn.Module, example: torch.Tensor, precision: str,
             measured_ms: float | None) -> PieceCost:
        """The cost model's own count (the same one the budget uses), sending back the feature vector."""
        return vit_piece_cost(name, vit_shape(sub), precision, measured_ms=measured_ms)


@PRUNERS.register("ffn")
class FfnPruner:
    """FFN hidden neurons only, for hierarchical families (see the module docstring)."""

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return bool(_mlps(model))

    def group_model(self, model: nn.Module, classes: list[int]) -> nn.Module:
        sub = copy.deepcopy(model).eval()
        index = torch.tensor(classes, dtype=torch.long)
        for name in ("head", "dist_head"):
            head = getattr(sub, name, None)
            if isinstance(head, nn.Linear):
                setattr(sub, name, _slice_linear(head, rows=index))
        sub.num_classes = len(classes)
        return sub

    def prune(self, model: nn.Module, images: np.ndarray, ratio: float, reference: nn.Module,
              batch_size: int = 32) -> nn.Module:
        mlps, full = _mlps(model), _mlps(reference)
        shapes = {f"ffn.{i}": (_hidden(m),) for i, (_, m) in enumerate(mlps)}
        scores = fisher_kl(model, images, None, _install_ffn_masks, shapes, batch_size)
        sub = copy.deepcopy(model).eval()
        for i, ((name, _), (_, ref)) in enumerate(zip(_mlps(sub), full)):
            keep = max(1, min(_hidden(ref), math.floor(ratio * _hidden(ref) + 0.5)))
            index = torch.topk(scores[f"ffn.{i}"], min(keep, shapes[f"ffn.{i}"][0])).indices.sort().values
            _slice_mlp(sub.get_submodule(name), index)
        return sub

    def ratio_for_budget(self, model: nn.Module, group_size: int, max_params: int | None = None,
                         max_memory_bytes: int | None = None, precision: str = "fp32") -> float:
        from edgevit.partition.cost import weight_bytes

        def fits(ratio: float) -> bool:
            params = self.params_at(model, group_size, ratio)
            ok = max_params is None or params <= max_params
            return ok and (max_memory_bytes is None or weight_bytes(params, precision) <= max_memory_bytes)

        if not fits(MIN_KEEP_RATIO):
            raise InvalidArgumentError(
                f"FFN-only pruning of {type(model).__name__} cannot reach the budget: even keeping "
                f"{MIN_KEEP_RATIO:.3g} of the FFN neurons leaves {self.params_at(model, group_size, MIN_KEEP_RATIO):,} "
                f"parameters (budget {max_params}); use a smaller model or a lower reduction"
            )
        lo, hi = MIN_KEEP_RATIO, 1.0
        if fits(hi):
            return hi
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    def smallest_cost(self, model: nn.Module, group_size: int, precision: str) -> PieceCost:
        from edgevit.partition.cost import weight_bytes

        params = self.params_at(model, group_size, MIN_KEEP_RATIO)
        return PieceCost("smallest", params, 0, weight_bytes(params, precision), 0, 0, 0)

    def params_at(self, model: nn.Module, group_size: int, ratio: float) -> int:
        total = count_params(model)
        head = getattr(model, "head", None)
        if isinstance(head, nn.Linear):
            heads = 1 + isinstance(getattr(model, "dist_head", None), nn.Linear)
            total -= heads * (head.out_features - group_size) * (head.in_features + 1)
        for _, mlp in _mlps(model):
            hidden = _hidden(mlp)
            removed = hidden - max(1, min(hidden, math.floor(ratio * hidden + 0.5)))
            total -= removed * _params_per_neuron(mlp)
        return total

    def describe(self, sub: nn.Module) -> dict:
        return {"pruned": "FFN neurons only", "mlp_hidden": [_hidden(m) for _, m in _mlps(sub)]}

    def rebuild(self, model: nn.Module, classes: list[int], widths: dict) -> nn.Module:
        """An untrained sub-model of the widths :meth:`describe` gave (to load saved weights into)."""
        sub = self.group_model(model, classes)
        mlps = _mlps(sub)
        if len(mlps) != len(widths["mlp_hidden"]):
            raise ValueError(f"{len(widths['mlp_hidden'])} FFN widths for a model with {len(mlps)} FFNs")
        for (name, _), hidden in zip(mlps, widths["mlp_hidden"]):
            _slice_mlp(sub.get_submodule(name), torch.arange(int(hidden)))
        return sub

    def cost(self, name: str, sub: nn.Module, example: torch.Tensor, precision: str,
             measured_ms: float | None) -> PieceCost:
        from edgevit.split.fusion import FeatureExtractor
        from edgevit.split.measure import piece_cost

        return piece_cost(name, FeatureExtractor(sub), example, precision, measured_ms)


def pruner_for(model: nn.Module):
    """The pruner for ``model``'s family, or an error naming what is supported."""
    for name in PRUNERS.names():
        if name == "ffn":
            continue
        pruner = PRUNERS.get(name)
        if pruner.supports(model):
            return pruner()
    if FfnPruner.supports(model):
        return FfnPruner()
    raise InvalidArgumentError(
        f"class-wise pruning supports VisionTransformer (vit_*, deit) fully and models with FFN blocks "
        f"(.mlp.fc1/.mlp.fc2: cas_vit_*, efficientformerv2_*) for FFN neurons; {type(model).__name__} has neither"
    )


# -- helpers ---------------------------------------------------------------------------------------
def _unit_scores(model: nn.Module):
    """Scores that keep everything in order (for the full-width group copy)."""
    from edgevit.split.scoring import VitScores

    shape = vit_shape(model)
    return VitScores(torch.ones(shape.embed_dim), torch.ones(shape.depth, shape.num_heads, shape.head_dim),
                     [torch.ones(h) for h in shape.mlp_hidden])


def _mlps(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out = []
    for name, module in model.named_modules():
        fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
        if isinstance(fc1, (nn.Linear, nn.Conv2d)) and isinstance(fc2, (nn.Linear, nn.Conv2d)) \
                and _out(fc1) == _in(fc2):
            out.append((name, module))
    return out


def _out(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _in(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def _hidden(mlp: nn.Module) -> int:
    return _out(mlp.fc1)


def _between(mlp: nn.Module) -> list[tuple[str, nn.Module]]:
    """Children that run between fc1 and fc2 (found by running the block once): they act on
    the hidden channels. Registration order is not enough (EfficientFormer registers its
    hidden BN after fc2, as in the official state dict)."""
    order: list[str] = []
    hooks = [child.register_forward_hook(lambda m, a, o, n=name: order.append(n))
             for name, child in mlp.named_children()]
    conv = isinstance(mlp.fc1, nn.Conv2d)
    x = torch.zeros(1, _in(mlp.fc1), 2, 2) if conv else torch.zeros(1, 2, _in(mlp.fc1))
    try:
        with torch.no_grad():
            was_training = mlp.training
            mlp.eval()(x)
            mlp.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    inside = order[order.index("fc1") + 1 : order.index("fc2")]
    return [(name, getattr(mlp, name)) for name in dict.fromkeys(inside)]


def _params_per_neuron(mlp: nn.Module) -> int:
    hidden = _hidden(mlp)
    per = mlp.fc1.weight.numel() // hidden + (mlp.fc1.bias is not None) + mlp.fc2.weight.numel() // hidden
    for _, module in _between(mlp):
        per += sum(p.numel() for p in module.parameters()) // hidden
    return per


@torch.no_grad()
def _slice_mlp(mlp: nn.Module, index: torch.Tensor) -> None:
    """Keep hidden channels ``index`` in fc1's outputs, the layers between, and fc2's inputs."""
    between = _between(mlp)
    mlp.fc1 = _slice_linear(mlp.fc1, rows=index)
    for name, module in between:
        setattr(mlp, name, _slice_channelwise(module, index))
    mlp.fc2 = _slice_linear(mlp.fc2, cols=index)


def _slice_linear(layer: nn.Module, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Module:
    """A copy of a Linear or (pointwise/grouped-free) Conv2d with only output ``rows`` / input ``cols``."""
    new = copy.deepcopy(layer)
    weight = layer.weight.detach()
    if rows is not None:
        weight = weight[rows]
        if layer.bias is not None:
            new.bias = nn.Parameter(layer.bias.detach()[rows].clone())
    if cols is not None:
        weight = weight[:, cols]
    new.weight = nn.Parameter(weight.clone())
    if isinstance(new, nn.Linear):
        new.out_features, new.in_features = weight.shape
    else:
        new.out_channels, new.in_channels = weight.shape[:2]
    return new


def _slice_channelwise(module: nn.Module, index: torch.Tensor) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d):
        new = nn.BatchNorm2d(len(index), eps=module.eps, momentum=module.momentum)
        new.weight.data.copy_(module.weight[index])
        new.bias.data.copy_(module.bias[index])
        new.running_mean.copy_(module.running_mean[index])
        new.running_var.copy_(module.running_var[index])
        return new
    if isinstance(module, nn.Conv2d) and module.groups == module.in_channels == module.out_channels:
        new = copy.deepcopy(module)
        new.weight = nn.Parameter(module.weight.detach()[index].clone())
        if module.bias is not None:
            new.bias = nn.Parameter(module.bias.detach()[index].clone())
        new.in_channels = new.out_channels = new.groups = len(index)
        return new
    if not list(module.parameters()):
        return module  # activations, dropout
    raise InvalidArgumentError(f"cannot prune FFN neurons through a {type(module).__name__} between fc1 and fc2")


def _install_ffn_masks(model: nn.Module, masks: dict[str, torch.Tensor]):
    from contextlib import contextmanager

    @contextmanager
    def installed():
        handles = []
        for i, (_, mlp) in enumerate(_mlps(model)):
            mask = masks[f"ffn.{i}"]
            handles.append(mlp.fc2.register_forward_pre_hook(_channel_mask(mask, isinstance(mlp.fc2, nn.Conv2d))))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    return installed()


def _channel_mask(mask: torch.Tensor, conv: bool):
    def hook(module, args):
        x = args[0]
        if conv:
            return (x * mask[:, :, None, None],)
        return (x * mask.view(mask.shape[0], *([1] * (x.dim() - 2)), mask.shape[1]),)

    return hook
