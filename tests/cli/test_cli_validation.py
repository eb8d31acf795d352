"""The whole request is checked before any work (issue 17 #5): options that mean nothing for the
targets and precisions asked are refused with the reason instead of being ignored, and target
and precision names are matched without regard to case."""

from __future__ import annotations

import json

import pytest

from edgevit.cli import main


@pytest.mark.parametrize(("argv", "flag", "applies_to"), [
    (["--target", "tflite", "--opset", "30"], "--opset", "ONNX"),
    (["--target", "onnx", "--deployment-target", "iOS18"], "--deployment-target", "Core ML"),
    (["--target", "onnx", "--calib", "/nonexistent"], "--calib", "the quantized precisions"),
    (["--target", "onnx", "--max-drop", "1"], "--max-drop", "the quantized precisions"),
    (["--target", "tflite", "--precision", "int8", "--onnx-int8-format", "u8u8"], "--onnx-int8-format", "ONNX int8"),
    (["--target", "tflite", "--ort-format"], "--ort-format", "ONNX"),
])
def test_export_refuses_options_that_apply_to_nothing_asked(argv, flag, applies_to, tmp_path, capsys):
    assert main(["export", "test_vit", "--out", str(tmp_path), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"InvalidArgumentError: {flag} applies only to {applies_to}") and f"drop {flag}" in err
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_an_option_that_applies_to_one_of_several_targets_is_accepted():
    from edgevit.export.options import ExportOptions, check_options_apply

    check_options_apply(ExportOptions(opset=20), ["tflite", "onnx"], ["fp32"])  # no error


def test_target_and_precision_names_ignore_case(tmp_path, capsys):
    from edgevit.export.options import ExportOptions

    assert ExportOptions(precision="Int8").precision == "int8"
    assert main(["export", "test_vit", "--target", "ONNX", "--precision", "FP16", "--no-verify", "--quiet",
                 "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().endswith("test_vit-onnx-fp16")
    assert main(["export", "test_vit", "--target", "onnx", "--precision", "fp32,fp16", "--no-verify", "--json",
                 "--out", str(tmp_path / "json")]) == 0  # --json: one machine-readable list on stdout
    cells = json.loads(capsys.readouterr().out)
    assert [(c["precision"], c["ok"]) for c in cells] == [("fp32", True), ("fp16", True)]
    assert cells[1]["manifest"]["precision"] == "fp16" and cells[1]["path"].endswith("test_vit-onnx-fp16")
    assert main(["export", "test_vit", "--precision", "fp32,w8", "--json", "--out", str(tmp_path / "json")]) == 1
    captured = capsys.readouterr()  # a request refused before any work: nothing on stdout, the reason on stderr
    assert captured.out == "" and "UnknownNameError: precision 'w8' not supported" in captured.err
    assert main(["export", "test_vit", "--target", "onxx", "--out", str(tmp_path)]) == 1
    assert "closest: onnx" in capsys.readouterr().err


def test_eval_refuses_options_for_the_other_kind_of_source(tmp_path, capsys):
    assert main(["eval", "test_vit", "--backend", "litert", "--data", "digits"]) == 1
    assert "--backend chooses the runtime of an artifact" in capsys.readouterr().err
    artifact = tmp_path / "art"
    artifact.mkdir()
    assert main(["eval", str(artifact), "--weights", "w.safetensors", "--data", "digits"]) == 1
    assert "--weights builds a zoo model" in capsys.readouterr().err


def test_weak_messages_say_what_is_wrong_and_how_to_fix_it(tmp_path, capsys):
    """Issue 17 #11: a text file as weights, a backend typo in bench, a folder too small to split."""
    import numpy as np
    from PIL import Image

    (tmp_path / "text.pth").write_text("hello")
    assert main(["eval", "test_vit", "--weights", str(tmp_path / "text.pth"), "--data", "digits"]) == 1
    err = capsys.readouterr().err
    assert "not a checkpoint edgevit can load" in err and ".safetensors" in err

    assert main(["bench", str(tmp_path / "anything"), "--backend", "onnxrt"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("UnknownNameError: unknown runtime backend 'onnxrt'; closest: onnxruntime")

    (tmp_path / "one" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "one" / "cat" / "a.png")
    assert main(["train", "test_vit", "--data", str(tmp_path / "one"), "--epochs", "1",
                 "--out", str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "1 image(s) in 1 class(es)" in err and "at least 3 images" in err and "train/ and val/" in err
