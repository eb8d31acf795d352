"""The PyTorch eager baseline: a zoo model as a user runs it before edgevit.

The model is built with :func:`edgevit.models.create_model` and put in ``eval()`` mode,
fp32, run under ``torch.inference_mode()`` with ``torch.set_num_threads(threads)``; it is
not reparameterized (folding BatchNorm and merging heads is part of what edgevit's export
does). torch is imported only when this class is used.
"""

from __future__ import annotations

import numpy as np

from edgevit.errors import require


class TorchEager:
    """Callable PyTorch eager model with a fixed random input.

    Example:
        >>> baseline = TorchEager("cas_vit_xs", threads=2, batch=1)
        >>> baseline.call()
    """

    backend = "torch-eager"

    def __init__(self, model: str, threads: int | None = None, batch: int = 1, image_size: int | None = None) -> None:
        torch = require("torch", "export", "the PyTorch eager baseline")
        from edgevit.models import create_model, model_info

        info = model_info(model)
        kwargs = {} if image_size is None else {"image_size": image_size}
        self.torch = torch
        self.name = model
        self.threads = threads
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = create_model(model, **kwargs).eval()
        size = image_size or info.input_size[-1]
        rng = np.random.default_rng(0)
        self.input = torch.from_numpy(rng.standard_normal((batch, info.input_size[0], size, size)).astype(np.float32))
        self.version = torch.__version__

    def call(self):
        if self.threads is not None and self.torch.get_num_threads() != self.threads:
            self.torch.set_num_threads(self.threads)  # another baseline in this process may use other counts
        with self.torch.inference_mode():
            return self.model(self.input)

    def close(self) -> None:
        self.model = None
