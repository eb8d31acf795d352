"""Importance of prunable units as the KL divergence their removal causes, estimated cheaply.

ED-ViT ranks FFN neurons by the KL divergence between the unpruned and the neuron-masked
output distributions. Measuring that exactly costs one forward pass per neuron (9,216 for
ViT-Tiny). We estimate it for every unit at once instead:

* Put a mask ``m`` (all ones) on every prunable unit; removing unit i sets ``m_i = 0``.
* The KL divergence ``KL(p(m=1) || p(m))`` is zero with zero gradient at ``m = 1``, so its
  first-order Taylor term vanishes and the leading term is second order:
  ``KL ~ 1/2 (dm)^T F (dm)``, with ``F`` the Fisher information of the output distribution
  with respect to the masks. For a single unit (``dm = -e_i``) that is ``F_ii / 2``.
* ``F_ii = E_x [ sum_c p_c g_ic^2 - (sum_c p_c g_ic)^2 ]`` with ``g_ic = d z_c / d m_i`` (z the
  logits), i.e. the variance under the model's own prediction of the logit gradients. The
  masks are per image, so one backward pass per class gives every unit's per-image gradient.

Cost: one forward and ``c`` backward passes per batch for a group of ``c`` classes (groups
with more than ``max_exact_classes`` classes use Monte-Carlo samples of the class instead).
The distribution is the softmax over the *group's* logits only, on the group's images only:
the score says how much a unit matters for telling this group's classes apart.

Units scored (all at once) for a ViT:

* residual channels: one coupled mask per channel, applied to the token embedding (patch
  embedding, class token and position embedding), every branch output (attention proj,
  MLP fc2), and every LayerNorm output (norm1, norm2, the final norm feeding the head), so
  channel c is absent from everything that touches it;
* q/k/v dimensions: a mask per (head, dim) applied to q, k and v together;
* FFN neurons: a mask per hidden neuron of every block, on fc2's input.

The approximation ignores that removing a channel also changes LayerNorm statistics, and
interactions between removed units; :func:`exact_kl` measures the real thing for a few
units, and a test checks the ranks agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["VitScores", "exact_kl", "fisher_kl", "vit_scores"]


@dataclass
class VitScores:
    """Estimated KL (nats per image) of removing each unit alone."""

    residual: torch.Tensor  # [D]
    head_dims: torch.Tensor  # [depth, H, d]
    ffn: list[torch.Tensor]  # per block [M_i]



def fisher_kl(model: nn.Module, images: np.ndarray, classes: list[int] | None, install: Callable,
              shapes: dict[str, tuple[int, ...]], batch_size: int = 32, max_exact_classes: int = 8,
              samples: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Diagonal-Fisher estimate of the KL of removing each masked unit.

    Args:
        install: ``install(model, masks) -> context manager`` that applies ``masks`` (a dict of
            per-image mask tensors ``[B, *shape]``) with hooks while the context is open.
        shapes: mask name -> unit shape (without the batch dimension).
        classes: the output logits defining the distribution (None: all).
    Returns:
        mask name -> ``[*shape]`` estimated KL of removing that unit alone.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    totals = {name: torch.zeros(shape, dtype=torch.float64) for name, shape in shapes.items()}
    count = 0
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size])
        batch = x.shape[0]
        masks = {name: torch.ones((batch, *shape), requires_grad=True) for name, shape in shapes.items()}
        with install(model, masks):
            logits = model(x)
        if classes is not None:
            logits = logits[:, classes]
        probs = logits.softmax(dim=-1).detach()
        names = list(masks)
        if logits.shape[1] <= max_exact_classes:
            first = {n: torch.zeros_like(masks[n]) for n in names}
            second = {n: torch.zeros_like(masks[n]) for n in names}
            for c in range(logits.shape[1]):
                grads = torch.autograd.grad(logits[:, c].sum(), [masks[n] for n in names], retain_graph=True)
                for n, g in zip(names, grads):
                    weight = probs[:, c].view(batch, *([1] * (g.dim() - 1)))
                    first[n] += weight * g
                    second[n] += weight * g * g
            for n in names:
                totals[n] += (second[n] - first[n] ** 2).sum(0).double()
        else:
            log_probs = logits.log_softmax(dim=-1)
            for s in range(samples):
                picked = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                chosen = log_probs.gather(1, picked[:, None]).sum()
                grads = torch.autograd.grad(chosen, [masks[n] for n in names], retain_graph=s + 1 < samples)
                for n, g in zip(names, grads):
                    totals[n] += (g * g).sum(0).double() / samples
        count += batch
    return {name: (0.5 * total / max(count, 1)).float() for name, total in totals.items()}


def vit_scores(model: nn.Module, images: np.ndarray, classes: list[int] | None = None, batch_size: int = 32,
               max_exact_classes: int = 8) -> VitScores:
    """Estimated KL of removing each residual channel, q/k/v dim and FFN neuron of a ViT."""
    shapes: dict[str, tuple[int, ...]] = {"residual": (model.embed_dim,)}
    for i, block in enumerate(model.blocks):
        shapes[f"heads.{i}"] = (block.attn.num_heads, block.attn.head_dim)
        shapes[f"ffn.{i}"] = (block.mlp.fc1.out_features,)
    scores = fisher_kl(model, images, classes, _install_vit_masks, shapes, batch_size, max_exact_classes)
    depth = len(model.blocks)
    return VitScores(
        residual=scores["residual"],
        head_dims=torch.stack([scores[f"heads.{i}"] for i in range(depth)]),
        ffn=[scores[f"ffn.{i}"] for i in range(depth)],
    )


@contextmanager
def _install_vit_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> Iterator[None]:
    residual = masks["residual"]
    handles = []

    def scale_output(module, args, output):
        return output * residual[:, None, :]

    handles.append(model.blocks[0].register_forward_pre_hook(lambda m, args: (args[0] * residual[:, None, :],)))
    handles.append(model.norm.register_forward_hook(scale_output))
    for i, block in enumerate(model.blocks):
        for module in (block.norm1, block.norm2, block.attn, block.mlp):
            handles.append(module.register_forward_hook(scale_output))
        handles.append(block.attn.qkv.register_forward_hook(_qkv_mask(masks[f"heads.{i}"])))
        handles.append(block.mlp.fc2.register_forward_pre_hook(_last_dim_mask(masks[f"ffn.{i}"])))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _qkv_mask(mask: torch.Tensor):
    def hook(module, args, output):
        batch, tokens, _ = output.shape
        heads, dim = mask.shape[1:]
        out = output.view(batch, tokens, 3, heads, dim) * mask[:, None, None, :, :]
        return out.reshape(batch, tokens, 3 * heads * dim)

    return hook


def _last_dim_mask(mask: torch.Tensor):
    """Mask the last dimension of a token tensor ``[B, T, M]`` (Linear input)."""
    return lambda module, args: (args[0] * mask[:, None, :],)


@torch.no_grad()
def exact_kl(model: nn.Module, images: np.ndarray, classes: list[int] | None, install: Callable,
             shapes: dict[str, tuple[int, ...]], name: str, units: list[tuple[int, ...]]) -> np.ndarray:
    """The real KL (nats per image) of removing each of ``units`` of mask ``name`` alone.

    One forward pass per unit: for checking :func:`fisher_kl` on a sample of units.
    """
    model.eval()
    x = torch.from_numpy(images)

    def log_probs(masks):
        with install(model, masks):
            logits = model(x)
        if classes is not None:
            logits = logits[:, classes]
        return logits.log_softmax(-1)

    ones = {n: torch.ones((len(x), *s)) for n, s in shapes.items()}
    reference = log_probs(ones)
    out = []
    for unit in units:
        masks = {n: m.clone() for n, m in ones.items()}
        masks[name][(slice(None), *unit)] = 0.0
        masked = log_probs(masks)
        out.append(float((reference.exp() * (reference - masked)).sum(-1).mean()))
    return np.array(out)
