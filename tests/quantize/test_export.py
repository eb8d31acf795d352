"""``edgevit export --precision int8|w8|w6|w4``: the whole pipeline (calibration, sensitivity pass,
default recipe, verification, --data accuracy, manifest) and its bad inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image
from quantize_helpers import weights
from tolerances import INT8_CALIBRATION_AGREEMENT

from edgevit.artifact import read_manifest
from edgevit.cli import main
from edgevit.errors import InvalidArgumentError
from edgevit.export import ExportOptions
from edgevit.quantize.recipe import group_name
from edgevit.runtime import load
from edgevit.runtime.cpu import Int8KernelWarning, int8_path


@pytest.mark.slow
def test_int8_export_on_every_target_writes_recipe_sensitivity_and_accuracy(tmp_path, capsys):
    model = "test_vit"
    code = main(["export", model, "--weights", str(weights(model)), "--target", "onnx,tflite,coreml,executorch",
                 "--precision", "int8", "--deployment-target", "iOS17", "--calib-size", "16",
                 "--calib-method", "percentile", "--data", "digits", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    for target in ("onnx", "tflite", "coreml", "executorch"):
        manifest = read_manifest(tmp_path / f"{model}-{target}-int8")
        assert manifest.precision == "int8" and manifest.options["calib_method"] == "percentile"
        quantization = manifest.extra["quantization"]
        recipe = quantization["recipe"]
        assert recipe["precision"] == "int8" and recipe["chosen_by"] == "default"
        assert (recipe["calib_source"], recipe["calib_used"], recipe["calib_method"]) == ("digits", 16, "percentile")
        assert quantization["calibration"] == {"source": "digits", "asked": 16, "used": 16, "method": "percentile"}
        groups = {row["group"] for row in quantization["sensitivity"]}
        assert {"kind:linear", "first", "last", "block:blocks.0", "block:blocks.3"} <= groups, groups
        assert set(recipe["reasons"]) >= {group_name(k) for k in recipe["float_kinds"]}
        assert quantization["agreement_on_calibration"]["top1_agreement"] >= INT8_CALIBRATION_AGREEMENT.value

        verification = manifest.verification
        assert verification["status"] == "passed", verification["failures"]
        assert verification["tolerance"]["precision"] == "int8"
        # judged on digits the calibration did not use (validation split); photos and random tensors reported
        held_out = verification["samples"]["held_out"]
        assert len(held_out) == 16 and all(name.startswith("digits_val_") for name in held_out)
        assert verification["judged_samples"] == held_out
        assert "logits" in verification["not_judged"]
        accuracy = verification["accuracy"]
        assert accuracy["data"] == "digits" and accuracy["images"] == 359
        assert abs(accuracy["top1_drop"]) <= 3.0, accuracy
        sizes = sum(manifest.files.values())
        assert sizes > 0
        # where it was verified: the int8 kernel path of this CPU (the runtime compares its own with it)
        assert verification["cpu"] == int8_path().to_dict()
        if target == "onnx":
            assert recipe["options"]["int8_format"] == "u8s8-reduced"
            assert quantization["runtime_kernels"]["u8s8_saturation"]["free"]
            with warnings.catch_warnings():
                warnings.simplefilter("error", Int8KernelWarning)
                load(tmp_path / f"{model}-{target}-int8").close()
    assert out.count("quantize  int8 (default recipe)") == 4 and out.count("accuracy  digits (val") == 4


def test_an_unsupported_precision_lists_what_the_target_supports(capsys):
    assert main(["export", "test_vit", "--target", "onnx", "--precision", "w4"]) == 1
    assert "precision 'w4' not supported by this target (onnx): valid are fp32, fp16, int8" in capsys.readouterr().err
    assert main(["export", "test_vit", "--target", "tflite", "--precision", "w6"]) == 1
    assert "valid are fp32, fp16, int8, w8" in capsys.readouterr().err


def test_an_unknown_onnx_int8_format_lists_each_with_where_it_is_exact(capsys):
    with pytest.raises(InvalidArgumentError, match=r"unknown ONNX int8 format 's8s8'; valid: u8s8-reduced \(exact on "
                                                   r"every CPU"):
        ExportOptions(target="onnx", precision="int8", onnx_int8_format="s8s8")
    with pytest.raises(SystemExit):
        main(["export", "test_vit", "--precision", "int8", "--onnx-int8-format", "s8s8"])
    assert "invalid choice: 's8s8'" in capsys.readouterr().err


def test_coreml_int8_needs_ios17(capsys):
    assert main(["export", "test_vit", "--target", "coreml", "--precision", "int8"]) == 1
    err = capsys.readouterr().err
    assert "InvalidArgumentError" in err and "need iOS17 or newer" in err and "--deployment-target iOS17" in err


def test_an_empty_or_unreadable_calibration_folder_is_named_before_any_work(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", "test_vit", "--precision", "int8", "--calib", str(empty), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"DataError: calibration folder {str(empty)!r} is empty or has no images" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    assert main(["export", "test_vit", "--precision", "int8", "--calib", str(broken), "--out", str(tmp_path)]) == 1
    assert f"calibration folder {str(broken)!r} has no readable images" in capsys.readouterr().err
    assert main(["export", "test_vit", "--precision", "int8", "--calib", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "nothing may be left behind"


def test_fewer_calibration_images_than_asked_warns_with_the_count_used(tmp_path):
    from edgevit.data.preprocess import PreprocessSpec
    from edgevit.quantize import calibration_set

    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(9):
        Image.fromarray(np.full((40, 40, 3), 25 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "bad.jpg").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="asked for 16 calibration images but .* has only 9 readable ones; using those"):
        calib = calibration_set(folder, 16, PreprocessSpec(size=32))
    assert calib.images.shape == (9, 3, 32, 32) and calib.describe() == {"source": str(folder), "asked": 16, "used": 9}


def test_data_with_another_class_count_is_refused(tmp_path, capsys):
    assert main(["export", "test_vit", "--num-classes", "5", "--data", "digits", "--no-verify",
                 "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "DataError: --data 'digits' has 10 classes" in err and "the model has 5 outputs" in err


def test_held_out_images_are_the_calibration_sources_unused_images(tmp_path):
    from edgevit.data.preprocess import PreprocessSpec
    from edgevit.quantize import calibration_set
    from edgevit.quantize.calibration import held_out_set

    spec = PreprocessSpec(size=16)
    names, images = held_out_set("digits", 5, 128, spec)
    assert images.shape == (5, 3, 16, 16) and len(set(names)) == 5
    assert all(name.startswith("digits_val_") for name in names)

    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "bad.png").write_bytes(b"broken")
    calib = calibration_set(folder, 4, spec)
    names, images = held_out_set(folder, 16, 4, spec)
    assert len(names) == 2 and images.shape == (2, 3, 16, 16) and "bad.png" not in names
    used = {round(float(img.mean()), 4) for img in calib.images}
    assert not used & {round(float(img.mean()), 4) for img in images}, "held-out images must not be calibration images"
    assert held_out_set(folder, 16, 6, spec) == ([], None)


@pytest.mark.slow
def test_int8_without_held_out_images_is_judged_on_the_photos(tmp_path):
    from edgevit.export import export

    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    artifact = export("test_vit", target="onnx", precision="int8", weights=weights("test_vit"), calib=str(folder),
                      calib_size=8, out=tmp_path / "out", quiet=True)
    verification = artifact.manifest.verification
    assert "held_out" not in verification["samples"]
    assert verification["judged_samples"] == verification["samples"]["photos"]


def test_int8_of_random_init_weights_says_so_before_any_work(tmp_path, monkeypatch):
    """Issue 17, finding 2: int8 of a random-init model is judged on outputs that barely depend on the image."""
    from edgevit.export import export
    from edgevit.export.targets.onnx import OnnxTarget

    def stop(*args, **kwargs):
        raise RuntimeError("stopped after the warning")

    monkeypatch.setattr(OnnxTarget, "convert", stop)
    with pytest.warns(UserWarning, match="random-init weights.*quantize trained weights"), \
            pytest.raises(Exception, match="stopped after the warning"):
        export("test_vit", target="onnx", precision="int8", out=tmp_path, quiet=True)
