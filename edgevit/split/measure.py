"""Measuring pieces on this machine: compute time, parameters, MACs and peak activations.

Times are the minimum over rounds that visit every piece in turn (interleaved), so a burst of
load from other processes on a shared machine hits all pieces alike, and the minimum drops
the runs that another process preempted (longer pieces are preempted more often, so medians
overstate them). Threads are fixed (default 1) for the same reason.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from edgevit.models import count_params
from edgevit.partition.cost import PieceCost, activation_bytes_per_value, weight_bytes
from edgevit.precision import PRECISIONS
from edgevit.quantize.base import float_params

__all__ = ["activation_values", "interleaved_ms", "module_macs", "piece_cost"]


@torch.no_grad()
def interleaved_ms(modules: Mapping[str, nn.Module], inputs: Mapping[str, torch.Tensor], rounds: int = 15,
                   warmup: int = 2, threads: int = 1) -> dict[str, float]:
    """Minimum forward time in milliseconds of each module on its input, measured interleaved."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for module in modules.values():
            module.eval()
        for _ in range(warmup):
            for name, module in modules.items():
                module(inputs[name])
        times: dict[str, list[float]] = {name: [] for name in modules}
        for _ in range(rounds):
            for name, module in modules.items():
                start = time.perf_counter()
                module(inputs[name])
                times[name].append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(previous)
    return {name: float(np.min(t)) for name, t in times.items()}


@torch.no_grad()
def module_macs(module: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``example`` (batch 1)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        module.eval()(example)
    return counter.get_total_flops() // 2 // max(example.shape[0], 1)


@torch.no_grad()
def activation_values(module: nn.Module, example: torch.Tensor) -> int:
    """Peak activation values of a forward pass (batch 1), an estimate.

    The input plus the largest (input + output) of any leaf module, plus one more copy of the
    largest output for the residual stream that stays alive across a block.
    """
    peak = [0]
    largest = [0]

    def hook(mod, args, output):
        ins = sum(a.numel() for a in args if isinstance(a, torch.Tensor))
        outs = output.numel() if isinstance(output, torch.Tensor) else 0
        peak[0] = max(peak[0], ins + outs)
        largest[0] = max(largest[0], outs)

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        out = module.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    outs = out.numel() if isinstance(out, torch.Tensor) else 0
    return (example.numel() + max(peak[0], outs) + largest[0]) // max(example.shape[0], 1)


def piece_cost(name: str, module: nn.Module, example: torch.Tensor, precision: str,
               measured_ms: float | None = None, params: int | None = None) -> PieceCost:
    """The :class:`PieceCost` of any module, counted and measured on ``example`` (batch 1)."""
    with torch.no_grad():
        out = module.eval()(example)
    params = count_params(module) if params is None else params
    kept = min(float_params(module, example[:1]), params) if PRECISIONS.get(precision).quantized else 0
    return PieceCost(
        name=name,
        params=params,
        macs=module_macs(module, example),
        weight_bytes=weight_bytes(params, precision, kept),
        activation_bytes=activation_values(module, example) * activation_bytes_per_value(precision),
        input_bytes=example[0].numel() * 4,
        output_bytes=out[0].numel() * 4,
        measured_ms=measured_ms,
    )
