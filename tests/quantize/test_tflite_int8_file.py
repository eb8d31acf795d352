"""What the TFLite quantizer does to the file beyond choosing ops: int8 ops XNNPACK refuses are
kept in float (so the delegated graph is not cut), and the finished file drops internal tensor names."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("ai_edge_quantizer")
pytest.importorskip("ai_edge_litert")

from edgevit.precision import precision  # noqa: E402
from edgevit.quantize.base import quiet  # noqa: E402
from edgevit.quantize.recipe import Recipe  # noqa: E402
from edgevit.quantize.tflite import TfliteQuantizer, strip_tensor_names  # noqa: E402


def _tensor_names(path) -> tuple[list[str], set[str]]:
    from ai_edge_litert import interpreter as litert

    with quiet():
        interpreter = litert.Interpreter(model_path=str(path))
    io = {d["name"] for d in interpreter.get_input_details() + interpreter.get_output_details()}
    return [d["name"] for d in interpreter.get_tensor_details()], io


@pytest.mark.slow  # a full int8 quantization with its sensitivity pass
def test_stripping_names_keeps_the_model_and_its_input_output_names(float_file, calibration, tmp_path):
    model = "test_efficientformerv2"
    quantizer = TfliteQuantizer(float_file(model, "tflite"), precision("int8"), tmp_path)
    images = calibration(model).images
    quantizer.calibrate(images, "minmax")
    named = tmp_path / "named.tflite"
    quantizer.build([u for u in quantizer.units() if u.kind in quantizer.default_kinds()], Recipe("int8"), named)
    stripped = tmp_path / "stripped.tflite"
    shutil.copyfile(named, stripped)

    saved = strip_tensor_names(stripped)

    assert saved == named.stat().st_size - stripped.stat().st_size > 0
    before, io_before = _tensor_names(named)
    after, io_after = _tensor_names(stripped)
    assert len(after) == len(before) and io_after == io_before
    assert sum(bool(name) for name in after) == len(io_after) < sum(bool(name) for name in before)
    np.testing.assert_array_equal(quantizer.run(stripped, images), quantizer.run(named, images))
    assert strip_tensor_names(stripped) == 0  # nothing left to drop: the file is not rewritten


def test_int8_adds_xnnpack_refuses_are_kept_in_float(tmp_path):
    """A residual branch scaled by 1e-7 (as a zero-initialised BatchNorm or a 1e-5 layer scale makes
    it in an untrained model): its int8 ADD has an input scale XNNPACK cannot represent."""
    import torch
    from torch import nn

    from edgevit.export.options import ExportOptions
    from edgevit.export.targets import get_target
    from edgevit.runtime.backends.litert import xnnpack_delegation

    class TinyResidual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.branch = nn.Conv2d(8, 8, 1)
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            x = self.stem(x)
            x = x + 1e-7 * self.branch(x)
            return self.head(x.mean((2, 3)))

    torch.manual_seed(0)
    float_path = tmp_path / "float.tflite"
    with quiet():
        get_target("tflite").convert(TinyResidual().eval(), torch.randn(1, 3, 16, 16),
                                     ExportOptions(target="tflite", precision="int8"), float_path)
    quantizer = TfliteQuantizer(float_path, precision("int8"), tmp_path)
    images = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    quantizer.calibrate(images, "minmax")
    chosen = [u for u in quantizer.units() if u.kind in ("conv", "linear", "add", "mul")]
    assert any(u.op == "ADD" for u in chosen)
    out = tmp_path / "int8.tflite"

    quantizer.build(chosen, Recipe("int8"), out)

    report = quantizer.describe_file(out)
    assert report["kept_float_refused_by_xnnpack"] == {"ADD": 1}, report
    assert report["not_delegated"] == {} and "ADD" not in report["int8_ops"], report
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(report["int8_ops"]), report
    delegated, total, _ = xnnpack_delegation(out)
    assert delegated == total
