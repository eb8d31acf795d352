"""Recovery after pruning: distil the full model into a pruned sub-model on its group's data.

The student is the pruned sub-model (its head has the group's classes); the teacher is
the unsplit model, read on the same logits. The loss is

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)

trained with :func:`edgevit.train.train` (AdamW, warm-up, cosine), which feeds both models
the same augmented images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevit.data.datasets import ImageDataset
from edgevit.data.preprocess import PreprocessSpec
from edgevit.train import TrainConfig, TrainResult, train

__all__ = ["distill"]


def distill(student: nn.Module, teacher: nn.Module, classes: list[int], train_set: ImageDataset,
            val_set: ImageDataset | None, config: TrainConfig, spec: PreprocessSpec, temperature: float = 2.0,
            alpha: float = 0.7, progress: bool | None = None) -> TrainResult:
    """Fine-tune ``student`` in place to match ``teacher``'s logits ``classes`` on ``train_set``.

    ``train_set`` is labelled ``0..len(classes)-1`` in the order of ``classes`` (see
    :meth:`ImageDataset.with_classes`).
    """
    teacher.eval()
    index = torch.tensor(classes, dtype=torch.long)

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = teacher(images)[:, index]
        soft = F.kl_div(F.log_softmax(logits / temperature, dim=-1), F.log_softmax(target / temperature, dim=-1),
                        reduction="batchmean", log_target=True) * temperature**2
        hard = F.cross_entropy(logits, labels)
        return alpha * soft + (1 - alpha) * hard

    return train(student, train_set, val_set, config, spec, loss_fn=loss_fn, progress=progress)
