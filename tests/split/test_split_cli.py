"""``edgevit split``: bad input gets one clear line; a pipeline plan from the command line."""

from __future__ import annotations

import pytest

from edgevit.cli import main
from edgevit.devices import equal_devices
from edgevit.errors import PlanningError
from edgevit.split import split

DEVICE = """
[[device]]
name = "{name}"
memory_mb = {memory}
speed = 1.0
link_mbps = 100
link_latency_ms = 1.0
"""


def _devices(tmp_path, *entries):
    path = tmp_path / "devices.toml"
    path.write_text("".join(DEVICE.format(name=n, memory=m) for n, m in entries))
    return path


@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory):
    """An (untrained) 10-class test_vit: the errors below come before any training."""
    from edgevit.models import create_model
    from edgevit.train import save_weights

    path = tmp_path_factory.mktemp("weights") / "test_vit_digits.safetensors"
    model = create_model("test_vit", num_classes=10, image_size=16)
    return save_weights(model, path, labels=[str(c) for c in range(10)], metadata={"image_size": "16"})


def test_device_too_small_for_any_sub_model(tmp_path, capsys, digits_weights):
    devices = _devices(tmp_path, ("pi-a", 64), ("watch", 0.001))
    code = main(["split", "test_vit", "--data", "digits", "--devices", str(devices), "--weights", str(digits_weights),
                 "--out", str(tmp_path / "plan")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("PlanningError: device 'watch' has 0.001 MB")
    assert "smallest feasible sub-model needs" in err
    assert not (tmp_path / "plan").exists()


def test_more_devices_than_classes(tmp_path, capsys, digits_weights):
    devices = _devices(tmp_path, *[(f"d{i}", 64) for i in range(11)])
    code = main(["split", "test_vit", "--data", "digits", "--devices", str(devices), "--weights", str(digits_weights),
                 "--out", str(tmp_path / "plan")])
    assert code == 1
    assert "PlanningError: 11 devices but only 10 classes" in capsys.readouterr().err


def test_dataset_classes_must_match_the_head(base_vit, tmp_path):
    from edgevit.data.datasets import load_dataset
    from edgevit.errors import DataError

    digits = (load_dataset("digits", "train"), load_dataset("digits", "val"))
    with pytest.raises(DataError) as info:
        split(base_vit, digits, equal_devices(2), tmp_path / "plan", progress=False)
    message = str(info.value)
    assert "10 classes (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)" in message and "head has 6 (0, 1, 2, 3, 4, 5)" in message


def test_classwise_needs_weights_and_data(tmp_path, capsys):
    devices = _devices(tmp_path, ("a", 64), ("b", 64))
    assert main(["split", "test_vit", "--data", "digits", "--devices", str(devices), "--out", str(tmp_path / "p")]) == 1
    assert "needs trained weights" in capsys.readouterr().err
    with pytest.raises(PlanningError, match="3 devices but only 2 classes"):
        from edgevit.data.datasets import load_dataset

        two = (load_dataset("digits", "train").with_classes([0, 1]), load_dataset("digits", "val").with_classes([0, 1]))
        from edgevit.models import create_model

        split(create_model("test_vit", num_classes=2, image_size=16), two, equal_devices(3), tmp_path / "p",
              progress=False)


def test_unknown_strategy_lists_the_valid_ones(tmp_path, capsys):
    devices = _devices(tmp_path, ("a", 64))
    assert main(["split", "test_vit", "--devices", str(devices), "--strategy", "diagonal", "--out", str(tmp_path)]) == 1
    assert "unknown partition strategy 'diagonal'" in capsys.readouterr().err


def test_fusion_drop_out_of_range_is_one_clear_line(tmp_path, capsys, digits_weights):
    devices = _devices(tmp_path, ("a", 64), ("b", 64))
    code = main(["split", "test_vit", "--data", "digits", "--devices", str(devices), "--weights", str(digits_weights),
                 "--fusion-drop", "1", "--out", str(tmp_path / "plan")])
    assert code == 1
    assert capsys.readouterr().err.startswith("InvalidArgumentError: fusion_drop must be at least 0 and below 1")
