"""The image size ``edgevit train`` records in its weights is the size every command that takes
``--weights`` builds the model at (issue: a 64-px model exported at 224 px classified at chance
while verification passed); a conflicting size is refused with both numbers."""

from __future__ import annotations

import pytest

from edgevit.cli import main
from edgevit.errors import InvalidArgumentError
from edgevit.models import create_model


@pytest.fixture(scope="module")
def weights16(tmp_path_factory):
    from edgevit.train import save_weights

    path = tmp_path_factory.mktemp("w") / "vit16.safetensors"
    model = create_model("test_vit", num_classes=10, image_size=16)
    save_weights(model, path, labels=[str(i) for i in range(10)], metadata={"image_size": "16"})
    return path


def test_create_model_builds_at_the_recorded_size_and_says_so(weights16):
    model = create_model("test_vit", weights=weights16)
    assert model.image_size == 16 and model.image_size_source == "recorded in vit16.safetensors"
    assert create_model("test_vit", weights=weights16, image_size=16).image_size == 16
    with pytest.raises(InvalidArgumentError, match="image size 32 conflicts with the 16 px the weights "
                                                   "'vit16.safetensors' were trained at"):
        create_model("test_vit", weights=weights16, image_size=32)
    assert create_model("test_vit").image_size_source.startswith("the model's default")


def test_export_and_eval_use_the_recorded_size(weights16, tmp_path, capsys):
    assert main(["export", "test_vit", "--weights", str(weights16), "--out", str(tmp_path), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "(image size 16, recorded in vit16.safetensors)" in out and "[1, 3, 16, 16]" in out
    assert main(["eval", "test_vit", "--weights", str(weights16), "--data", "digits", "--image-size", "32"]) == 1
    assert "InvalidArgumentError: image size 32 conflicts with the 16 px" in capsys.readouterr().err
