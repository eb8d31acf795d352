"""What the ONNX quantizer does to an attention block beyond choosing ops: an Add that only a
softmax reads (an attention bias) goes with the softmax, so onnxruntime runs the softmax in float
instead of fusing a ``QLinearSoftmax`` around it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from edgevit.precision import precision  # noqa: E402
from edgevit.quantize.base import quiet  # noqa: E402
from edgevit.quantize.onnx import OnnxQuantizer  # noqa: E402
from edgevit.quantize.recipe import Recipe, Unit  # noqa: E402


def _attention_file(tmp_path):
    import torch
    from torch import nn

    from edgevit.export.options import ExportOptions
    from edgevit.export.targets import get_target

    class BiasedAttention(nn.Module):
        """One head of TinyViT's attention: (q k^T) * scale + a learned bias table, softmax, times v."""

        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(16, 48)
            self.bias = nn.Parameter(torch.randn(16, 16) * 0.1)
            self.proj = nn.Linear(16, 16)

        def forward(self, x):
            q, k, v = self.qkv(x.flatten(2).transpose(1, 2)).chunk(3, dim=-1)
            attention = (q @ k.transpose(1, 2)) * 0.25 + self.bias
            return self.proj(attention.softmax(dim=-1) @ v).mean(1)

    torch.manual_seed(0)
    path = tmp_path / "float.onnx"
    with quiet():
        get_target("onnx").convert(BiasedAttention().eval(), torch.randn(1, 16, 4, 4),
                                   ExportOptions(target="onnx", precision="int8"), path)
    return path


def test_an_add_only_a_softmax_reads_goes_with_the_softmax(tmp_path):
    quantizer = OnnxQuantizer(_attention_file(tmp_path), precision("int8"), tmp_path)
    units = quantizer.units()
    softmax = [u for u in units if u.kind == "softmax"]
    assert sorted(u.op for u in softmax) == ["Add", "Softmax"], units
    assert "softmax" not in quantizer.default_kinds()
    assert "an attention bias" in quantizer.kind_note("softmax")
    quantizer.calibrate(np.random.default_rng(0).standard_normal((8, 16, 4, 4)).astype(np.float32), "minmax")

    chosen = [u for u in units if u.kind in quantizer.default_kinds()]
    quantizer.build(chosen, Recipe("int8"), tmp_path / "int8.onnx")
    report = quantizer.describe_file(tmp_path / "int8.onnx")
    assert "QLinearSoftmax" not in report["integer_kernels"], report
    assert report["integer_kernels"].get("QLinearMatMul", 0) + report["integer_kernels"].get("MatMulIntegerToFloat", 0) \
        >= 1, report

    # the reason for the rule: the same Add quantized on its own makes onnxruntime fuse a QLinearSoftmax
    add = next(u for u in softmax if u.op == "Add")
    quantizer.build([*chosen, Unit(add.id, add.op, "add")], Recipe("int8"), tmp_path / "with_add.onnx")
    assert "QLinearSoftmax" in quantizer.describe_file(tmp_path / "with_add.onnx")["integer_kernels"]
