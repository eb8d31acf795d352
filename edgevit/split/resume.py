"""Finished sub-models survive an interrupted split: ``edgevit split`` run again resumes.

Pruning and distilling each class-wise sub-model is most of a split's time (minutes per
sub-model on a laptop CPU). Every finished one is saved into ``.<out>.resume/`` beside the
plan folder (its weights as safetensors and its widths as JSON), under a key made of
everything that decides it: the full model's weights, the input size, the training images,
the class group, the keep ratio and the pruning and distillation options. A split started
again with the same inputs loads those sub-models instead of building them again and says
so; anything else that changed (another seed, other weights) gives other keys, so nothing
stale is reused. The folder is removed once the plan is written.

Nothing here is read from a file the user passes: the weights are loaded into a skeleton
rebuilt from the widths (``pruner.rebuild``), never unpickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevit import __version__
from edgevit._files import read_json, replacing, write_json

#: options that do not change a sub-model (timing, export, fusion, placement retries)
NOT_IN_KEY = ("strategy", "target", "precision", "fusion_hidden", "fusion_epochs", "fusion_drop", "threads",
              "measure_rounds", "timing", "max_tighten", "verify")


def resume_folder(out: str | Path) -> Path:
    """Where the finished sub-models of a split writing ``out`` are kept."""
    out = Path(out)
    return out.parent / f".{out.name}.resume"


class SubModelStore:
    """The finished sub-models of one split (see the module docstring)."""

    def __init__(self, folder: Path, request: Any) -> None:
        self.folder = folder
        options = {k: v for k, v in dataclasses.asdict(request.options).items() if k not in NOT_IN_KEY}
        self.base = {"edgevit": __version__, "model": request.model_name, "weights": _tensors_digest(request.model),
                     "image_size": request.spec.size, "data": _data_digest(request.train_set), "options": options}

    def key(self, group: tuple[int, ...], ratio: float) -> str:
        text = json.dumps({**self.base, "group": list(group), "ratio": round(float(ratio), 12)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def load(self, pruner: Any, model: Any, group: tuple[int, ...], ratio: float) -> Any | None:
        """The sub-model finished earlier for ``group`` at ``ratio``, or None."""
        stem = self.folder / self.key(group, ratio)
        if not (stem.with_suffix(".json").is_file() and stem.with_suffix(".safetensors").is_file()):
            return None
        from safetensors.torch import load_file

        try:
            info = read_json(stem.with_suffix(".json"))
            sub = pruner.rebuild(model, list(group), info["widths"])
            sub.load_state_dict(load_file(str(stem.with_suffix(".safetensors"))), strict=True)
        except Exception:  # noqa: BLE001 - a damaged or foreign entry is rebuilt, not trusted
            return None
        return sub.eval()

    def save(self, pruner: Any, sub: Any, group: tuple[int, ...], ratio: float) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        stem = self.folder / self.key(group, ratio)
        state = {k: v.detach().contiguous().clone() for k, v in sub.state_dict().items()}
        with replacing(stem.with_suffix(".safetensors")) as tmp:
            save_file(state, str(tmp))
        write_json(stem.with_suffix(".json"), {"group": list(group), "ratio": ratio, "widths": pruner.describe(sub)})


def _tensors_digest(model: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def _data_digest(dataset: Any) -> str:
    digest = hashlib.sha256(json.dumps([dataset.name, list(dataset.classes)]).encode())
    digest.update(np.asarray(dataset.labels).tobytes())
    for item in dataset.items:
        if isinstance(item, np.ndarray):
            digest.update(item.tobytes())
        else:
            path = Path(item)
            stat = path.stat() if path.exists() else None
            digest.update(f"{path}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}".encode())
    return digest.hexdigest()[:20]
