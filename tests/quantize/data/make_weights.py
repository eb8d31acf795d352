"""Regenerate the digits-trained weights of the tiny ``test_*`` models used by tests/quantize.

Quantization is judged by agreement with float, which only means something for a model whose
classes are separated: a random-init model's logits are nearly tied, so any noise flips its
top-1. These weights are each family's ``test_*`` model fine-tuned from scratch on the bundled
digits (``edgevit.train``), stored as float16 to keep the repository small::

    python tests/quantize/data/make_weights.py        # about a minute on one core
"""

from __future__ import annotations

import sys
from pathlib import Path

EPOCHS = {"test_vit": 12}  # ViTs learn slowly from scratch; the others need few epochs
DEFAULT_EPOCHS = 4


def main() -> int:
    import torch
    from safetensors.torch import save_file

    from edgevit.data.datasets import load_dataset
    from edgevit.models import create_model, list_models
    from edgevit.train import TrainConfig, dataset_spec, train

    torch.set_num_threads(1)
    train_set, val_set = load_dataset("digits", "train"), load_dataset("digits", "val")
    for name in list_models("test_*"):
        model = create_model(name, num_classes=10)
        spec = dataset_spec(name, train_set)
        result = train(model, train_set, val_set, TrainConfig(epochs=EPOCHS.get(name, DEFAULT_EPOCHS), lr=2e-3), spec,
                       progress=False)
        state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
        path = Path(__file__).with_name(f"{name}-digits.safetensors")
        save_file(state, str(path), metadata={"labels": '["0","1","2","3","4","5","6","7","8","9"]'})
        print(f"{name}: validation top-1 {result.final_top1:.1f}% -> {path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
