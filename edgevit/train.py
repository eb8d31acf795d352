"""Fine-tuning and evaluation: a small library the CLI (``edgevit train/eval``), the int8
benchmarks and the ED-ViT splitter share.

Example:
    >>> from edgevit.train import TrainConfig, train, evaluate, save_weights
    >>> from edgevit.data.datasets import load_dataset
    >>> model = create_model("test_vit", num_classes=10)
    >>> result = train(model, load_dataset("digits", "train"), load_dataset("digits", "val"),
    ...                TrainConfig(epochs=3, image_size=32))
    >>> save_weights(model, "digits.safetensors", labels=result.classes)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevit._progress import Progress
from edgevit.data.datasets import ImageDataset, spec_for_source
from edgevit.data.preprocess import PreprocessSpec
from edgevit.errors import DataError, InvalidArgumentError


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings: AdamW with linear warm-up then a cosine schedule."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    image_size: int | None = None
    augment: bool = True
    seed: int = 0
    grad_clip: float | None = 5.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidArgumentError(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if self.lr <= 0:
            raise InvalidArgumentError(f"lr must be positive, got {self.lr}")


@dataclass
class TrainResult:
    """What training did: per-epoch loss and validation accuracy."""

    classes: tuple[str, ...]
    history: list[dict[str, float]] = field(default_factory=list)
    spec: PreprocessSpec | None = None

    @property
    def final_top1(self) -> float | None:
        return self.history[-1].get("val_top1") if self.history else None


@dataclass(frozen=True)
class EvalResult:
    top1: float
    top5: float
    count: int
    predictions: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=np.int64))
    labels: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=np.int64))

    def to_dict(self) -> dict[str, float]:
        return {"top1": self.top1, "top5": self.top5, "count": self.count}


def dataset_spec(model_name: str, dataset: ImageDataset, image_size: int | None = None) -> PreprocessSpec:
    """The model's preprocessing at ``image_size``; the tiny digits are warped, not cropped."""
    from edgevit.models import model_info

    info = model_info(model_name)
    return spec_for_source(info.preprocess.spec(image_size or info.image_size), dataset.name)


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def train(
    model: nn.Module,
    train_set: ImageDataset,
    val_set: ImageDataset | None,
    config: TrainConfig,
    spec: PreprocessSpec,
    *,
    loss_fn: LossFn | None = None,
    progress: bool | None = None,
    parameters: list[nn.Parameter] | None = None,
) -> TrainResult:
    """Fine-tune ``model`` in place on ``train_set``.

    Args:
        spec: preprocessing (size, mean, std) of the images; see :func:`dataset_spec`.
        loss_fn: ``(logits, labels, images) -> loss``; default cross-entropy with label
            smoothing (the ED-ViT splitter passes a distillation loss here).
        parameters: train only these (default: all that require grad).
        progress: show a progress bar (default: when stderr is a terminal).
    """
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear) and head.out_features != train_set.num_classes and loss_fn is None:
        raise DataError(
            f"the model's head has {head.out_features} classes but dataset {train_set.name!r} has "
            f"{train_set.num_classes} ({', '.join(train_set.classes[:12])}); build the model with "
            f"num_classes={train_set.num_classes}"
        )
    torch.manual_seed(config.seed)
    x_all, y_all = train_set.arrays(spec)
    params = parameters if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    steps_per_epoch = math.ceil(len(y_all) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, warmup, total))
    criterion = loss_fn or (lambda logits, labels, _x: F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing))
    result = TrainResult(classes=train_set.classes, spec=spec)
    rng = np.random.default_rng(config.seed)
    with Progress(total, "train", enabled=progress) as bar:
        for epoch in range(config.epochs):
            model.train()
            losses = []
            order = rng.permutation(len(y_all))
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                images = torch.from_numpy(x_all[idx])
                if config.augment:
                    images = random_shift(images, rng)
                labels = torch.from_numpy(y_all[idx])
                loss = _loss(criterion, model(images), labels, images)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                bar.update(1, epoch=epoch + 1, loss=float(np.mean(losses[-20:])))
            row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": schedule.get_last_lr()[0]}
            if val_set is not None:
                row["val_top1"] = evaluate(model, val_set, spec).top1
            result.history.append(row)
            bar.log("epoch {epoch}: loss {loss:.4f}".format(**row) +
                    (f", val top-1 {row['val_top1']:.2f}%" if "val_top1" in row else ""))
    model.eval()
    return result


def _loss(criterion: LossFn, outputs, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Models with a distillation head return (head, dist_head) logits in training, as the
    official code does; without a teacher both heads learn the labels (loss averaged)."""
    if isinstance(outputs, (tuple, list)):
        return sum(criterion(o, labels, images) for o in outputs) / len(outputs)
    return criterion(outputs, labels, images)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def random_shift(images: torch.Tensor, rng: np.random.Generator, fraction: float = 0.08) -> torch.Tensor:
    """Translate the batch by up to ``fraction`` of the size (one shift per batch, zero fill).

    The training augmentation; the fusion head of a class-wise split trains with it too.
    """
    size = images.shape[-1]
    max_shift = max(1, int(size * fraction))
    dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
    padded = F.pad(images, (max_shift, max_shift, max_shift, max_shift))
    return padded[..., max_shift + dy : max_shift + dy + size, max_shift + dx : max_shift + dx + size]


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits of ``model`` for preprocessed images ``[N, 3, S, S]``."""
    model.eval()
    out = [model(torch.from_numpy(images[i : i + batch_size])).float().numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> EvalResult:
    """Top-1 and top-5 accuracy in percent."""
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    top1 = float((topk[:, 0] == labels).mean() * 100)
    top5 = float((topk == labels[:, None]).any(axis=1).mean() * 100)
    return EvalResult(top1=top1, top5=top5, count=len(labels), predictions=topk[:, 0], labels=labels)


def evaluate(model: nn.Module, dataset: ImageDataset, spec: PreprocessSpec, batch_size: int = 64) -> EvalResult:
    """Top-1/top-5 of a PyTorch model on a labelled dataset."""
    x, y = dataset.arrays(spec)
    return accuracy(predict_logits(model, x, batch_size), y)


def save_weights(model: nn.Module, path: str | Path, labels: list[str] | tuple[str, ...] | None = None,
                 metadata: dict[str, str] | None = None) -> Path:
    """Write the state dict as safetensors (atomically), with the class labels in its metadata."""
    from safetensors.torch import save_file

    from edgevit._files import replacing

    path = Path(path)
    meta = dict(metadata or {})
    if labels is not None:
        meta["labels"] = json.dumps(list(labels))
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with replacing(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def history_json(result: TrainResult) -> str:
    return json.dumps({"classes": list(result.classes), "history": result.history,
                       "spec": asdict(result.spec) if result.spec else None})
