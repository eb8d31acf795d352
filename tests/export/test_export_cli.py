"""``edgevit export`` through :func:`edgevit.cli.main`."""

from __future__ import annotations

from edgevit.cli import main


def test_several_precisions_print_reports_a_table_and_usage(tmp_path, capsys):
    assert main(["export", "test_vit", "--target", "onnx", "--precision", "fp32,fp16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test_vit -> onnx fp32" in out and "test_vit -> onnx fp16" in out
    assert "PASSED with onnxruntime" in out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert header.split()[:4] == ["model", "target", "precision", "verified"]
    assert "runtime.load(" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_vit-onnx-fp16", "test_vit-onnx-fp32"]


def test_quiet_prints_only_the_path(tmp_path, capsys):
    assert main(["export", "test_vit", "--target", "onnx", "--no-verify", "--quiet", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "test_vit-onnx-fp32")


def test_bad_target_is_one_line_error(tmp_path, capsys):
    assert main(["export", "test_vit", "--target", "onnx,tflitee", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("UnknownNameError: unknown export target 'tflitee'; closest: tflite")
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_bad_batch_and_unwritable_out(tmp_path, capsys):
    assert main(["export", "test_vit", "--batch", "many", "--out", str(tmp_path)]) == 1
    assert "batch must be a positive integer" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["export", "test_vit", "--out", str(blocker / "x")]) == 1
    assert "InvalidArgumentError: cannot write artifacts to" in capsys.readouterr().err


def test_failed_verification_exits_non_zero_naming_the_output(tmp_path, capsys, monkeypatch):
    from edgevit.export import verify

    monkeypatch.setitem(verify.TOLERANCES, "fp32", verify.Tolerance(0.0, 0.99999, 1.0, "test"))
    assert main(["export", "test_vit", "--target", "onnx", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("VerificationError: test_vit-onnx-fp32 does not match PyTorch: output 'logits': max rel err")
    assert list(tmp_path.iterdir()) == []
