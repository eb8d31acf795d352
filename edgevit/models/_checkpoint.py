"""Reading weights files and loading them into zoo models.

``.pth``/``.pt``/``.bin`` files are read with ``torch.load(weights_only=True)`` (arbitrary
pickled objects are never unpickled) and ``.safetensors`` with safetensors. The official
containers are unwrapped (``model``, ``model_ema``, ``state_dict`` or a bare dict) and a
``module.`` prefix is stripped. Each family may register a ``checkpoint_filter`` that maps
timm names to the official ones and checks legacy index buffers; then keys and shapes must
match the model exactly, or :class:`CheckpointMismatchError` lists every difference.
"""

from __future__ import annotations

import contextlib
import json
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgevit.errors import CheckpointError, CheckpointMismatchError

CONTAINER_KEYS = ("model_ema", "model", "state_dict", "module")
HEAD_PREFIXES = ("head.", "dist_head.")
SUPPORTED_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


class EdgeVitWarning(UserWarning):
    """Something edgevit did on the user's behalf that they should know about."""


@dataclass
class Checkpoint:
    """A state dict read from a file, with what else the file said."""

    state_dict: dict[str, torch.Tensor]
    path: Path
    container: str
    labels: list[str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def read_checkpoint(path: str | Path, prefer_ema: bool = False) -> Checkpoint:
    """Read a weights file into a flat ``{name: tensor}`` dict.

    Args:
        path: a ``.pth``/``.pt``/``.bin``/``.ckpt`` (torch zip or legacy format) or
            ``.safetensors`` file.
        prefer_ema: take ``model_ema`` over ``model`` when a file holds both (the official
            "best-ema" checkpoints keep the EMA weights there).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist or is not a file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix not in SUPPORTED_SUFFIXES:
        raise CheckpointError(
            f"cannot read weights file {path.name!r}: unknown suffix {path.suffix!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
        raise CheckpointError(_describe_load_failure(path, exc)) from exc
    state_dict, container = _unwrap(obj, path, prefer_ema)
    return Checkpoint(state_dict=state_dict, path=path, container=container)


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        from safetensors import safe_open
    except ImportError as exc:  # pragma: no cover - safetensors is in the export extra
        raise CheckpointError("reading .safetensors needs: pip install 'edgevit[export]'") from exc
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            state_dict = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot read {path.name!r} as safetensors: {_first_line(exc)}") from exc
    labels = json.loads(metadata["labels"]) if "labels" in metadata else None
    return Checkpoint(_strip_module(state_dict), path, "safetensors", labels, metadata)


def _describe_load_failure(path: Path, exc: Exception) -> str:
    text = _first_line(exc)
    if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "Weights only load failed" in str(exc):
        return (
            f"refusing to unpickle {path.name!r}: it holds Python objects beyond tensors and plain "
            "containers, and loading it would run arbitrary code. Re-save just the state dict "
            "(torch.save(model.state_dict(), path)) or convert it to .safetensors"
        )
    if isinstance(exc, (zipfile.BadZipFile, EOFError, RuntimeError)) or "zip" in text.lower():
        return f"cannot read {path.name!r}: the file is truncated or not a PyTorch checkpoint ({text})"
    return (f"cannot read {path.name!r}: it is not a checkpoint edgevit can load ({type(exc).__name__}: {text}); "
            "pass a .safetensors file or a PyTorch state dict saved with torch.save")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _unwrap(obj: object, path: Path, prefer_ema: bool) -> tuple[dict[str, torch.Tensor], str]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path.name!r} holds a {type(obj).__name__}, not a state dict")
    order = ("model_ema", "model", "state_dict", "module") if prefer_ema else ("model", "model_ema", "state_dict", "module")
    for key in order:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return _strip_module(dict(inner)), key
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f"{path.name!r} holds no tensors under {', '.join(CONTAINER_KEYS)} or at its top level "
            f"(top-level keys: {', '.join(map(str, list(obj)[:10]))})"
        )
    return _strip_module(tensors), "bare"


def _strip_module(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


CheckpointFilter = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def load_weights(
    model: nn.Module,
    weights: str | Path | Checkpoint,
    *,
    checkpoint_filter: CheckpointFilter | None = None,
    model_name: str = "",
) -> Checkpoint:
    """Load a weights file into ``model`` (strictly, after the family's name mapping).

    Optional distillation heads are adapted from the keys: a checkpoint with ``dist_head``
    turns the model's on (``model.set_dist_head(True)``) and one without turns it off. When
    the checkpoint's classifier has a different number of classes than ``model``, only the
    head is re-initialised, with a warning.
    """
    ckpt = weights if isinstance(weights, Checkpoint) else read_checkpoint(weights)
    state_dict = dict(ckpt.state_dict)
    if checkpoint_filter is not None:
        state_dict = checkpoint_filter(state_dict)
    _adapt_dist_head(model, state_dict)
    state_dict = _adapt_num_classes(model, state_dict, model_name, ckpt.path)
    try:
        check_state_dict(model, state_dict, model_name=model_name, source=ckpt.path.name)
    except CheckpointMismatchError as error:
        owner = likely_owner(ckpt.state_dict, exclude=model_name)
        if owner is None:
            raise
        name, fit, total = owner
        first, _, rest = str(error).partition("\n")
        raise CheckpointMismatchError(
            f"{first.rstrip(':')}; it looks like a {name} checkpoint ({fit} of {total} tensors fit {name}): "
            f"pass {name} as the model, e.g. `edgevit export {name} --weights {ckpt.path.name}`.\n{rest}"
        ) from None
    model.load_state_dict(state_dict, strict=False)
    return ckpt


def _adapt_dist_head(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    if not hasattr(model, "set_dist_head"):
        return
    has_ckpt = any(k.startswith("dist_head.") for k in state_dict)
    has_model = getattr(model, "dist_head", None) is not None
    if has_ckpt != has_model:
        model.set_dist_head(has_ckpt)


def _adapt_num_classes(
    model: nn.Module, state_dict: dict[str, torch.Tensor], model_name: str, path: Path
) -> dict[str, torch.Tensor]:
    head = state_dict.get("head.weight")
    model_head = getattr(model, "head", None)
    if head is None or not isinstance(model_head, nn.Linear) or head.shape[0] == model_head.out_features:
        return state_dict
    if head.shape[1] != model_head.in_features:
        return state_dict  # a different model: let the shape check report it
    warnings.warn(
        f"{model_name or type(model).__name__}: {path.name} has a {head.shape[0]}-class head but "
        f"the model was built for {model_head.out_features} classes; the head is re-initialised "
        "and every other weight is loaded",
        EdgeVitWarning,
        stacklevel=3,
    )
    return {k: v for k, v in state_dict.items() if not k.startswith(HEAD_PREFIXES)}


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, model_name: str = "", source: str = "checkpoint"
) -> None:
    """Raise :class:`CheckpointMismatchError` unless keys and shapes match ``model`` exactly.

    Head keys may be absent (the head was re-initialised on purpose).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.startswith(HEAD_PREFIXES)]
    missing += [k for k in expected if k.startswith(HEAD_PREFIXES) and k not in state_dict and
                any(s.startswith(HEAD_PREFIXES) for s in state_dict)]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        (k, tuple(state_dict[k].shape), tuple(expected[k].shape))
        for k in state_dict
        if k in expected and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or misshaped):
        return
    name = model_name or type(model).__name__
    lines = [f"{source} does not fit {name}:"]
    lines += _listing("missing", missing)
    lines += _listing("unexpected", unexpected)
    if misshaped:
        lines.append(f"  {len(misshaped)} mis-shaped (checkpoint vs model):")
        lines += [f"    {k}: {list(a)} vs {list(b)}" for k, a, b in misshaped[:8]]
        if len(misshaped) > 8:
            lines.append(f"    ... and {len(misshaped) - 8} more")
    lines.append("  Is the weights file for a different model or variant? `edgevit models` lists the zoo.")
    raise CheckpointMismatchError("\n".join(lines))


def likely_owner(state_dict: Mapping[str, torch.Tensor], exclude: str = "",
                 threshold: float = 0.9) -> tuple[str, int, int] | None:
    """The zoo model a checkpoint most likely belongs to: ``(name, tensors that fit, tensors)``.

    Every zoo model is built on the meta device (no memory, no weights) and the checkpoint is
    mapped with its family's name mapping; a tensor fits when the model has its key with its
    shape (classifier shapes are not compared: a fine-tuned head has another class count).
    None when no other model takes at least ``threshold`` of the tensors.
    """
    from edgevit.models._info import MODELS

    best: tuple[str, int, int] | None = None
    size = sum(int(v.numel()) for k, v in state_dict.items() if hasattr(v, "numel") and not k.startswith(HEAD_PREFIXES))
    for name in MODELS.names():
        if name == exclude or not 0.5 <= size / max(MODELS.meta(name).params, 1) <= 2.0:
            continue  # far from the model's size (a cheap first cut: building every model takes seconds)
        try:
            with torch.device("meta"):
                candidate = MODELS.get(name)()
            mapped = dict(state_dict)
            if getattr(candidate, "checkpoint_filter", None) is not None:
                with contextlib.suppress(Exception):  # a filter that needs real tensors: compare the raw keys
                    mapped = candidate.checkpoint_filter(dict(state_dict))
            _adapt_dist_head(candidate, mapped)
            expected = candidate.state_dict()
        except Exception:  # noqa: BLE001 - a model that cannot be built here is simply not a candidate
            continue
        fit = sum(1 for key, value in mapped.items() if key in expected
                  and (key.startswith(HEAD_PREFIXES) or tuple(value.shape) == tuple(expected[key].shape)))
        total = max(len(mapped), len(expected))
        if total and fit / total >= threshold and (best is None or fit / total > best[1] / best[2]):
            best = (name, fit, total)
    return best


def _listing(what: str, keys: list[str], limit: int = 8) -> list[str]:
    if not keys:
        return []
    out = [f"  {len(keys)} {what}:"] + [f"    {k}" for k in keys[:limit]]
    if len(keys) > limit:
        out.append(f"    ... and {len(keys) - limit} more")
    return out


def verify_index_buffers(
    state_dict: dict[str, torch.Tensor], model: nn.Module, suffix: str = "attention_bias_idxs"
) -> dict[str, torch.Tensor]:
    """Drop legacy ``*.attention_bias_idxs`` entries after checking them against the model.

    The model regenerates these tables (non-persistent buffers); a checkpoint whose tables
    differ was built for another resolution, which we refuse rather than mis-load.
    """
    buffers = dict(model.named_buffers())
    out = {}
    for key, value in state_dict.items():
        if not key.endswith(suffix):
            out[key] = value
            continue
        ours = buffers.get(key)
        if ours is not None and (ours.shape != value.shape or not torch.equal(ours.to(value.dtype), value)):
            raise CheckpointMismatchError(
                f"{key} in the checkpoint ({list(value.shape)}) differs from the table this model "
                f"regenerates ({list(ours.shape)}): the checkpoint was made for another input resolution"
            )
    return out
