"""Features from each sub-model and the small MLP that fuses them into the C-way prediction.

Each device runs a :class:`FeatureExtractor` (its sub-model up to the pooled feature vector,
``forward_head(..., pre_logits=True)``); the coordinator concatenates the K vectors in plan
order, appends one presence column per sub-model (1.0 answered, 0.0 missing; see
:mod:`edgevit.partition.fusion_layout`) and runs the :class:`FusionHead`. The head is trained
on features of the training split computed once with the sub-models frozen (plus shifted
copies of the images, the same augmentation the trainer uses), so training it costs seconds;
at every step each sub-model's features are dropped at random, so that one head also answers
when devices are down ("degraded answers").

Example:
    >>> extractors = [FeatureExtractor(sub) for sub in subs]
    >>> head, history = train_fusion(extractors, train_set, val_set, spec, num_classes=10)
    >>> logits = SplitModel(extractors, head)(images)                     # every sub-model present
    >>> degraded_top1(head, extract_features(extractors, vx), vy, ["sub0", "sub1"])
    {'sub0': 71.5, 'sub1': 64.0}                                         # top-1 with that one missing
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevit.data.datasets import ImageDataset
from edgevit.data.preprocess import PreprocessSpec
from edgevit.errors import InvalidArgumentError

__all__ = ["FeatureExtractor", "FusionHead", "SplitModel", "degraded_top1", "extract_features", "feature_dims",
           "head_input", "random_presence", "train_fusion"]


class FeatureExtractor(nn.Module):
    """A sub-model up to its pooled feature vector: what one device runs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class FusionHead(nn.Module):
    """The K sub-models' features and K presence columns ``[N, F + K]`` to C logits.

    Each sub-model's slice gets its own LayerNorm (sub-models differ in width and scale) and
    is multiplied by its presence column, so a missing sub-model contributes nothing,
    whatever its slice holds (finite values; the caller fills zeros). The presence columns
    go into ``fc1`` beside the features, so the head knows which sub-models answered. Then
    Linear, GELU, Dropout, Linear. Slicing uses fixed offsets, so the head exports to ONNX,
    TFLite and Core ML as one input, one output.
    """

    def __init__(self, feature_dims: Sequence[int], num_classes: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.feature_dims = tuple(int(d) for d in feature_dims)
        self.norms = nn.ModuleList([nn.LayerNorm(d) for d in self.feature_dims])
        self.fc1 = nn.Linear(self.in_features, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    @property
    def in_features(self) -> int:
        """``F + K``: the features, then one presence column per sub-model."""
        return sum(self.feature_dims) + len(self.feature_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total, k = sum(self.feature_dims), len(self.feature_dims)
        presence = x[:, total : total + k]
        parts, start = [], 0
        for i, (norm, dim) in enumerate(zip(self.norms, self.feature_dims)):
            parts.append(norm(x[:, start : start + dim]) * presence[:, i : i + 1])
            start += dim
        return self.fc2(self.drop(self.act(self.fc1(torch.cat([*parts, presence], dim=1)))))


class SplitModel(nn.Module):
    """All sub-models and the fusion head in one module (for evaluation in one process), all present."""

    def __init__(self, extractors: list[FeatureExtractor], fusion: FusionHead) -> None:
        super().__init__()
        self.extractors = nn.ModuleList(extractors)
        self.fusion = fusion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.cat([e(x) for e in self.extractors], dim=1)
        presence = features.new_ones(len(features), len(self.extractors))
        return self.fusion(head_input(features, presence, self.fusion.feature_dims))


def head_input(features: torch.Tensor, presence: torch.Tensor, feature_dims: Sequence[int]) -> torch.Tensor:
    """The fusion head's input from all K sub-models' features ``[N, F]`` and a presence mask
    ``[N, K]``: the features of a missing sub-model zeroed (as the coordinator sends them),
    then the mask. The torch twin of :func:`edgevit.partition.fusion_layout.fusion_input`."""
    widths = torch.tensor(list(feature_dims), device=features.device)
    return torch.cat([features * presence.repeat_interleave(widths, dim=1), presence], dim=1)


def random_presence(n: int, k: int, drop: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A presence mask ``[n, k]`` for training: each sub-model missing with probability ``drop``,
    independently per sample; a sample that would lose all K keeps them all, so a complete
    sample has probability ``(1 - drop)^k + drop^k`` (62.5% for K = 2 at 0.25, 44% for K = 3)."""
    presence = (torch.rand(n, k, generator=generator) >= drop).float()
    presence[presence.sum(dim=1) == 0] = 1.0
    return presence


@torch.no_grad()
def extract_features(extractors: list[FeatureExtractor], images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Concatenated features ``[N, sum of feature dims]`` of preprocessed images."""
    for e in extractors:
        e.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size])
        out.append(torch.cat([e(x) for e in extractors], dim=1).numpy())
    return np.concatenate(out)


def train_fusion(extractors: list[FeatureExtractor], train_set: ImageDataset, val_set: ImageDataset | None,
                 spec: PreprocessSpec, num_classes: int, hidden: int = 256, epochs: int = 60, lr: float = 2e-3,
                 augment_copies: int = 2, drop: float = 0.25, seed: int = 0) -> tuple[FusionHead, list[dict[str, float]]]:
    """Train the fusion head on frozen sub-model features; returns it (eval mode) and its history.

    ``drop``: at every step each sub-model's features are missing (zeroed, presence 0) with
    this probability, per sample, never all K at once (:func:`random_presence`); 0 trains on
    complete inputs only. The validation top-1 in the history is with every sub-model present.
    """
    from edgevit.train import random_shift

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = train_set.arrays(spec)
    feats, labels = [extract_features(extractors, x)], [y]
    for _ in range(augment_copies):
        shifted = np.concatenate([random_shift(torch.from_numpy(x[i : i + 64]), rng).numpy()
                                  for i in range(0, len(x), 64)])
        feats.append(extract_features(extractors, shifted))
        labels.append(y)
    features = torch.from_numpy(np.concatenate(feats))
    targets = torch.from_numpy(np.concatenate(labels))
    dims = feature_dims(extractors, x[:1])
    val = None
    if val_set is not None:
        vx, vy = val_set.arrays(spec)
        vf = torch.from_numpy(extract_features(extractors, vx))
        val = (head_input(vf, vf.new_ones(len(vf), len(dims)), dims), torch.from_numpy(vy))
    head = FusionHead(dims, num_classes, hidden)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * ((len(targets) + 127) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    history = []
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(targets))
        losses = []
        for start in range(0, len(order), 128):
            idx = order[start : start + 128]
            presence = random_presence(len(idx), len(dims), drop)
            loss = F.cross_entropy(head(head_input(features[idx], presence, dims)), targets[idx], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if val is not None and (epoch + 1 == epochs or (epoch + 1) % 10 == 0):
            head.eval()
            with torch.no_grad():
                row["val_top1"] = float((head(val[0]).argmax(1) == val[1]).float().mean() * 100)
        history.append(row)
    return head.eval(), history


@torch.no_grad()
def feature_dims(extractors: list[FeatureExtractor], example: np.ndarray) -> list[int]:
    """Each extractor's feature size, in order, from one preprocessed image ``[1, 3, S, S]``."""
    x = torch.from_numpy(example)
    return [int(e.eval()(x).shape[1]) for e in extractors]


@torch.no_grad()
def degraded_top1(head: FusionHead, features: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Top-1 (percent) with each sub-model missing in turn, the others present: ``{name: top1}``.

    ``features`` are all K sub-models' concatenated features ``[N, F]``; empty for K = 1
    (nothing answers without the only sub-model).
    """
    head.eval()
    k = len(head.feature_dims)
    if len(names) != k:
        raise InvalidArgumentError(f"got {len(names)} sub-model names for a fusion head over {k} sub-models")
    if k < 2:
        return {}
    x, y = torch.from_numpy(np.ascontiguousarray(features)), torch.from_numpy(labels)
    result = {}
    for i, name in enumerate(names):
        presence = x.new_ones(len(x), k)
        presence[:, i] = 0.0
        result[name] = float((head(head_input(x, presence, head.feature_dims)).argmax(1) == y).float().mean() * 100)
    return result
