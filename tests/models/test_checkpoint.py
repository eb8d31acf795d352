"""Checkpoint reading and loading: containers, formats, refusals and mismatch reports."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch

from edgevit.errors import CheckpointError, CheckpointMismatchError, InvalidArgumentError, UnknownNameError
from edgevit.models import EdgeVitWarning, create_model, list_models, model_info

NAME = "test_vit"


@pytest.fixture(scope="module")
def model():
    return create_model(NAME)


def _same(a, b):
    x = torch.randn(2, *model_info(NAME).input_size)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("container", ["model", "model_ema", "state_dict", "bare", "module_prefix"])
def test_official_containers(model, tmp_path, container):
    sd = model.state_dict()
    if container == "bare":
        obj = sd
    elif container == "module_prefix":
        obj = {"model": {f"module.{k}": v for k, v in sd.items()}}
    else:
        obj = {container: sd, "epoch": 3, "args": {"lr": 0.1}}
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    _same(create_model(NAME, weights=path), model)


def test_safetensors_with_labels(model, tmp_path):
    import json

    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    labels = [f"class{i}" for i in range(10)]
    save_file(model.state_dict(), str(path), metadata={"labels": json.dumps(labels)})
    loaded = create_model(NAME, weights=path)
    _same(loaded, model)
    assert loaded.labels == labels


def test_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"model": Evil()}, fh)
    with pytest.raises(CheckpointError, match="refusing to unpickle|cannot read"):
        create_model(NAME, weights=path)


def test_truncated_file_is_one_clear_error(model, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        create_model(NAME, weights=path)
    assert "\n" not in str(info.value) and "w.pth" in str(info.value)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model(NAME, weights=tmp_path / "nope.pth")
    odd = tmp_path / "w.h5"
    odd.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown suffix"):
        create_model(NAME, weights=odd)


def test_mismatch_lists_missing_unexpected_and_misshaped(model, tmp_path):
    sd = dict(model.state_dict())
    sd.pop("blocks.0.norm1.weight")
    sd["blocks.0.extra"] = torch.zeros(3)
    sd["blocks.1.mlp.fc1.weight"] = torch.zeros(7, 64)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError) as info:
        create_model(NAME, weights=path)
    text = str(info.value)
    assert "1 missing" in text and "blocks.0.norm1.weight" in text
    assert "1 unexpected" in text and "blocks.0.extra" in text
    assert "blocks.1.mlp.fc1.weight: [7, 64] vs [256, 64]" in text


def test_weights_of_another_model_are_refused(tmp_path):
    other = [n for n in list_models("test_*") if n != NAME][0] if len(list_models("test_*")) > 1 else None
    donor = create_model(other) if other else create_model("vit_tiny_patch16_224")
    path = tmp_path / "w.pth"
    torch.save(donor.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="does not fit test_vit") as info:
        create_model(NAME, weights=path)
    # issue 17, finding 11: the model the weights belong to is named, and the listing stays short
    text = str(info.value)
    assert f"it looks like a {other or 'vit_tiny_patch16_224'} checkpoint" in text.splitlines()[0]
    assert len(text.splitlines()) <= 30 and "... and" in text


def test_a_damaged_checkpoint_names_no_owner(model, tmp_path):
    sd = {k: v for i, (k, v) in enumerate(model.state_dict().items()) if i % 3}  # a third of the tensors gone
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError) as info:
        create_model(NAME, weights=path)
    assert "looks like" not in str(info.value) and "missing" in str(info.value)


def test_num_classes_reinitialises_only_the_head(model, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    with pytest.warns(EdgeVitWarning, match="10-class head .* 3 classes"):
        three = create_model(NAME, weights=path, num_classes=3)
    assert three.head.out_features == 3
    for key, value in model.state_dict().items():
        if not key.startswith("head."):
            torch.testing.assert_close(three.state_dict()[key], value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_model(NAME, weights=path)  # same class count: no warning


def test_unknown_model_lists_closest():
    with pytest.raises(UnknownNameError, match="closest: vit_tiny_patch16_224"):
        create_model("vit_tiny_patch16")


def test_fixed_size_models_refuse_sizes_they_cannot_take():
    with pytest.raises(InvalidArgumentError, match="multiples of 16"):
        create_model(NAME, image_size=40)
    assert create_model(NAME, image_size=48).pos_embed.shape[1] == 37
