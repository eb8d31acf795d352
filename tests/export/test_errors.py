"""Bad input: each error names what was wrong and what is allowed, before any conversion work,
and an export that fails leaves nothing behind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import edgevit
from edgevit.errors import (
    CheckpointMismatchError,
    ConversionError,
    InvalidArgumentError,
    UnknownNameError,
    VerificationError,
)
from edgevit.export import pipeline
from edgevit.export.targets.onnx import OnnxTarget


@pytest.fixture
def no_model_building(monkeypatch):
    """Fail the test if an export gets as far as building the model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the bad input was refused")

    monkeypatch.setattr(pipeline, "prepare_model", refuse)


def test_unknown_target_lists_the_valid_ones(tmp_path, no_model_building):
    with pytest.raises(UnknownNameError, match=r"unknown export target 'onxx'; closest: onnx.*coreml, executorch, onnx, tflite"):
        edgevit.export("test_vit", target="onxx", out=tmp_path)


def test_unknown_precision_lists_the_valid_ones(tmp_path, no_model_building):
    with pytest.raises(UnknownNameError, match=r"unknown precision 'fp8'.*fp16, fp32"):
        edgevit.export("test_vit", target="onnx", precision="fp8", out=tmp_path)


def test_precision_a_target_lacks_lists_what_it_has(tmp_path, monkeypatch, no_model_building):
    monkeypatch.setattr(OnnxTarget, "precisions", ("fp32",))
    with pytest.raises(UnknownNameError, match=r"precision 'fp16' not supported by this target \(onnx\): valid are fp32"):
        edgevit.export("test_vit", target="onnx", precision="fp16", out=tmp_path)


@pytest.mark.parametrize(("changes", "message"), [
    ({"target": "tflite", "batch": "dynamic"}, "tflite target cannot export a dynamic batch"),
    ({"target": "onnx", "channels_last": True}, "onnx target takes NCHW input, not NHWC"),
    ({"target": "onnx", "batch": 0}, "batch must be a positive integer"),
    ({"target": "onnx", "opset": 11}, "opset must be an integer >= 18"),
    ({"target": "coreml", "deployment_target": "iOS12"}, "valid: iOS15, iOS16, iOS17, iOS18"),
])
def test_options_a_target_cannot_honour(tmp_path, no_model_building, changes, message):
    with pytest.raises(InvalidArgumentError, match=message):
        edgevit.export("test_vit", out=tmp_path, **changes)


def test_unwritable_out_fails_before_any_work(tmp_path, no_model_building):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(InvalidArgumentError, match="cannot write artifacts to .*a-file/sub.*--out"):
        edgevit.export("test_vit", target="onnx", out=blocker / "sub")
    with pytest.raises(InvalidArgumentError, match="is a file, not a folder"):
        edgevit.export("test_vit", target="onnx", out=blocker)


def test_weights_of_another_model_give_the_zoo_mismatch_error(tmp_path):
    weights = tmp_path / "vit.pth"
    torch.save(edgevit.create_model("test_vit").state_dict(), weights)
    out = tmp_path / "out"
    with pytest.raises(CheckpointMismatchError):
        edgevit.export("test_cas_vit", target="onnx", weights=weights, out=out)
    assert list(out.iterdir()) == []


def test_a_converter_failure_names_the_op_and_module_and_leaves_nothing(tmp_path):
    class CumProd(nn.Module):
        def forward(self, x):
            return torch.cumprod(x, dim=1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.mixer = CumProd()
            self.head = nn.Linear(4, 10)

        def forward(self, x):
            return self.head(self.mixer(self.stem(x)).mean(dim=(2, 3)))

    with pytest.raises(ConversionError) as info:
        edgevit.export(Net().eval(), target="onnx", image_size=16, out=tmp_path, name="net")
    message = str(info.value)
    assert "onnx conversion of net failed at op prims.prod in module mixer (CumProd)" in message
    assert "torch.cumprod" in message  # the source line
    assert list(tmp_path.iterdir()) == []


def test_a_failure_mid_conversion_leaves_nothing(tmp_path, monkeypatch):
    def half_written(self, model, example, options, path):
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(OnnxTarget, "convert", half_written)
    with pytest.raises(ConversionError, match="disk full"):
        edgevit.export("test_vit", target="onnx", out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_verification_names_the_output_and_writes_nothing(tmp_path, monkeypatch):
    from edgevit.export import verify

    impossible = verify.Tolerance(max_rel_err=1e-4, min_cosine=2.0, min_top1=1.0, why="test")
    monkeypatch.setitem(verify.TOLERANCES, "fp32", impossible)
    with pytest.raises(VerificationError, match=r"output 'logits': cosine similarity 1\.0+ < 2.*--no-verify"):
        edgevit.export("test_vit", target="onnx", out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_export_takes_one_target(tmp_path, no_model_building):
    with pytest.raises(InvalidArgumentError, match="export_all"):
        edgevit.export("test_vit", target="onnx,tflite", out=tmp_path)
