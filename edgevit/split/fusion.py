"""Features from each sub-model and the small MLP that fuses them into the C-way prediction.

Each device runs a :class:`FeatureExtractor` (its sub-model up to the pooled feature vector,
``forward_head(..., pre_logits=True)``); the coordinator concatenates the K vectors in plan
order and runs the :class:`FusionHead`. The head is trained on features of the training
split computed once with the sub-models frozen (plus shifted copies of the images, the same
augmentation the trainer uses), so training it costs seconds.

Example:
    >>> extractors = [FeatureExtractor(sub) for sub in subs]
    >>> head, history = train_fusion(extractors, train_set, val_set, spec, num_classes=10)
    >>> logits = SplitModel(extractors, head)(images)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevit.data.datasets import ImageDataset
from edgevit.data.preprocess import PreprocessSpec

__all__ = ["FeatureExtractor", "FusionHead", "SplitModel", "extract_features", "train_fusion"]


class FeatureExtractor(nn.Module):
    """A sub-model up to its pooled feature vector: what one device runs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class FusionHead(nn.Module):
    """LayerNorm, Linear, GELU, Linear: the concatenated features to C logits."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(self.norm(features)))))


class SplitModel(nn.Module):
    """All sub-models and the fusion head in one module (for evaluation in one process)."""

    def __init__(self, extractors: list[FeatureExtractor], fusion: FusionHead) -> None:
        super().__init__()
        self.extractors = nn.ModuleList(extractors)
        self.fusion = fusion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fusion(torch.cat([e(x) for e in self.extractors], dim=1))


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
                 augment_copies: int = 2, seed: int = 0) -> tuple[FusionHead, list[dict[str, float]]]:
    """Train the fusion head on frozen sub-model features; returns it (eval mode) and its history."""
    from edgevit.train import _random_shift

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = train_set.arrays(spec)
    feats, labels = [extract_features(extractors, x)], [y]
    for _ in range(augment_copies):
        shifted = np.concatenate([_random_shift(torch.from_numpy(x[i : i + 64]), rng).numpy()
                                  for i in range(0, len(x), 64)])
        feats.append(extract_features(extractors, shifted))
        labels.append(y)
    features = torch.from_numpy(np.concatenate(feats))
    targets = torch.from_numpy(np.concatenate(labels))
    val = None
    if val_set is not None:
        vx, vy = val_set.arrays(spec)
        val = (torch.from_numpy(extract_features(extractors, vx)), torch.from_numpy(vy))
    head = FusionHead(features.shape[1], num_classes, hidden)
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
            loss = F.cross_entropy(head(features[idx]), targets[idx], label_smoothing=0.1)
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
