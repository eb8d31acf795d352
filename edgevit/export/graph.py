"""The module that converters see: the inference graph with the artifact's input and output.

:func:`prepare_graph` is given a reparameterized model (``NCHW`` float32 in, logits out) and
produces a module that takes the artifact's input (``NCHW`` or ``NHWC`` float32, named
``input`` by the forward signature) and returns float32 logits, computing in float16 when
asked. Keeping float32 at the boundary means every artifact of a model is fed the same way,
whatever its precision.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ArtifactGraph(nn.Module):
    """``input`` (float32, NCHW or NHWC) -> the model -> float32 logits.

    Args:
        model: the reparameterized model, float32.
        layout: ``"NHWC"`` permutes the input to NCHW first (one transpose the converter
            can fold into the first convolution).
        compute_dtype: ``torch.float16`` runs the model in half precision between a cast
            after the input and a cast before the output.
        named_output: return ``{"logits": y}`` so converters that name outputs after dict
            keys (litert-torch) name it ``logits``.
    """

    def __init__(self, model: nn.Module, layout: str = "NCHW", compute_dtype: torch.dtype = torch.float32,
                 named_output: bool = False) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        self.compute_dtype = compute_dtype
        self.named_output = named_output

    def forward(self, input: torch.Tensor) -> Any:  # noqa: A002 - the input's public name
        x = input.permute(0, 3, 1, 2) if self.layout == "NHWC" else input
        if self.compute_dtype != torch.float32:
            x = x.to(self.compute_dtype)
        y = self.model(x)
        if y.dtype != torch.float32:
            y = y.float()
        return {"logits": y} if self.named_output else y


def prepare_graph(model: nn.Module, layout: str = "NCHW", half: bool = False, named_output: bool = False) -> ArtifactGraph:
    """Wrap ``model`` for a converter; with ``half`` a float16 copy is wrapped (``model`` is kept)."""
    inner = copy.deepcopy(model).half().eval() if half else model
    return ArtifactGraph(inner, layout, torch.float16 if half else torch.float32, named_output).eval()


def example_input(batch: int, image_size: int, layout: str = "NCHW", seed: int = 0) -> torch.Tensor:
    """A deterministic float32 example in the artifact's layout."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, image_size, image_size, 3) if layout == "NHWC" else (batch, 3, image_size, image_size)
    return torch.randn(*shape, generator=generator)


def batch_dim(max_batch: int = 1024):
    """The symbolic batch dimension used for dynamic-batch exports."""
    return torch.export.Dim("batch", min=1, max=max_batch)
