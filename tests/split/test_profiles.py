"""Splits with devices given by measured profiles: pieces exported and predicted per device.

The profiles are fake devices built from ``KernelTiming``s (``tests/predict/predict_fakes.py``:
timings exactly linear in each kernel's features), written to real JSON files that real device
files point at; the pieces are real exports of the tiny ``test_vit``. A device profiled 4x slower
(every timing of the fast profile times 4) is predicted exactly 4x slower, since the fit is linear.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevit.cli import main
from edgevit.devices import load_devices
from edgevit.errors import InvalidArgumentError, ProfileError
from edgevit.partition.predict import predict_plan
from edgevit.predict import save_profile
from edgevit.predict.fit import PREDICTOR_VERSION
from edgevit.predict.kernels import MAPPING_VERSION
from edgevit.split.profiles import PiecePredictor, load_profiles, profile_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "predict"))
from predict_fakes import SAMPLES, fake_profile  # noqa: E402

SLOWER = 4.0

DEVICE = """
[[device]]
name = "{name}"
memory_mb = 64
profile = "profiles/{name}.json"
link_mbps = 1000
link_latency_ms = 0.05
"""


def _slowed(profile, factor):
    return dataclasses.replace(profile, device=f"{profile.device} x{factor:g}",
                               timings=tuple(dataclasses.replace(t, ms=t.ms * factor) for t in profile.timings))


def _device_file(folder: Path, profiles: dict) -> Path:
    """A device file in ``folder`` with one device per profile (in this order), each pointing at its file."""
    for name, profile in profiles.items():
        save_profile(profile, folder / "profiles" / f"{name}.json")
    path = folder / "devices.toml"
    path.write_text("".join(DEVICE.format(name=name) for name in profiles))
    return path


@pytest.fixture
def fast_and_slow(tmp_path):
    """``slow`` (first in the chain) is profiled 4x slower than ``fast``."""
    return _device_file(tmp_path, {"slow": _slowed(fake_profile(), SLOWER), "fast": fake_profile()})


# -- refusals, before any export ---------------------------------------------------------------


def test_a_profile_whose_backend_does_not_run_the_target_is_refused(fast_and_slow):
    cluster = load_devices(fast_and_slow)
    assert set(load_profiles(cluster, "onnx")) == {"slow", "fast"}
    with pytest.raises(InvalidArgumentError) as error:
        load_profiles(cluster, "tflite")
    message = str(error.value)
    assert "device 'slow' of" in message and "is described by a profile of backend 'onnxruntime'" in message
    assert "which runs onnx files, but this split exports tflite" in message
    assert "split with --target onnx, or probe the device with --backend litert" in message
    with pytest.raises(InvalidArgumentError, match="no profile backend runs coreml files"):
        load_profiles(cluster, "coreml")


def test_a_litert_profile_asks_for_a_tflite_split(tmp_path):
    devices = _device_file(tmp_path, {"pi": fake_profile(backend="litert")})
    with pytest.raises(InvalidArgumentError, match="runs tflite files, but this split exports onnx: .* split with "
                                                   "--target tflite, or probe the device with --backend onnxruntime"):
        load_profiles(load_devices(devices), "onnx")


def test_split_refuses_a_mismatch_and_a_corrupt_profile_in_one_line_before_any_work(fast_and_slow, tmp_path, capsys):
    out = tmp_path / "plan"
    code = main(["split", "test_vit", "--strategy", "pipeline", "--target", "tflite", "--devices", str(fast_and_slow),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("InvalidArgumentError: device 'slow' of") and "this split exports tflite" in err
    (fast_and_slow.parent / "profiles" / "fast.json").write_text('{"format": "edgevit-device-profile"')
    code = main(["split", "test_vit", "--strategy", "pipeline", "--devices", str(fast_and_slow), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"ProfileError: device 'fast' of {fast_and_slow}: ")
    assert "fast.json: not a readable device profile (corrupt JSON" in err and "re-probe the device" in err
    assert not out.exists()
    with pytest.raises(ProfileError, match=r"^device 'fast' of .*devices.toml: .*fast.json: not a readable"):
        load_profiles(load_devices(fast_and_slow), "onnx")


def test_a_profile_mapped_by_another_kernel_mapping_is_warned_about_and_recorded_in_the_plan(tmp_path):
    devices = _device_file(tmp_path, {"old": dataclasses.replace(fake_profile(), mapping_version=None),
                                      "new": fake_profile()})
    with pytest.warns(UserWarning) as caught:
        profiles = load_profiles(load_devices(devices), "onnx")
    (warning,) = [str(w.message) for w in caught]  # one, for the old profile only
    assert warning.startswith(f"device 'old' of {devices}: fake's profile does not record which kernel mapping "
                              "its probe used") and "probe the device again" in warning
    assert profiles["old"].to_dict()["notes"] == [warning.split(": ", 1)[1]]
    assert profiles["old"].to_dict()["mapping_version"] is None
    assert profiles["new"].to_dict()["notes"] == [] and profiles["new"].to_dict()["mapping_version"] == MAPPING_VERSION


# -- predicting pieces (exports: slow) ----------------------------------------------------------


@pytest.mark.slow
def test_a_piece_is_exported_once_and_predicted_on_every_device(fast_and_slow, tmp_path):
    from edgevit.models import create_model

    model = create_model("test_vit", num_classes=6, image_size=16).eval()
    example = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    profiles = load_profiles(load_devices(fast_and_slow), "onnx")
    with PiecePredictor(profiles, "onnx", "fp32") as predictor:
        times = predictor.times("unsplit", model, example)
        again = predictor.times("unsplit", copy.deepcopy(model), example)  # the same module: not exported again
        assert predictor.exports == 1 and again == times
        folder = predictor._folder
        assert folder is not None and not any(folder.iterdir()), "exports are removed once predicted"
    assert not folder.exists()
    fast, slow = times["fast"], times["slow"]
    assert fast.complete and slow.complete and fast.ms > fast.run_ms > 0
    assert slow.ms == pytest.approx(SLOWER * fast.ms, rel=1e-6)  # a linear fit of timings 4x as long
    assert fast.profile == str(fast_and_slow.parent / "profiles" / "fast.json")
    assert fast.profile_sha256 == profiles["fast"].sha256 and len(fast.profile_sha256) == 64
    assert fast.backend == "onnxruntime" and fast.predictor_version == PREDICTOR_VERSION

    # a profile that never timed a softmax: the prediction is a lower bound, warned about and recorded
    partial = {kind: dims for kind, dims in SAMPLES.items() if kind != "softmax"}
    devices = _device_file(tmp_path / "partial", {"pi": fake_profile(partial)})
    with PiecePredictor(load_profiles(load_devices(devices), "onnx"), "onnx", "fp32") as predictor, \
            pytest.warns(UserWarning, match=r"the predicted time of unsplit \(pi [0-9.]+ ms\) is a lower bound: "
                                            r"not costed: softmax fp32 x4 \(op types"):
        timed = predictor.times("unsplit", model, example)["pi"]
    assert not timed.complete and timed.not_costed == (("softmax fp32", 4),) and timed.ms < fast.ms


@pytest.mark.slow
def test_a_pipeline_gives_the_device_profiled_slower_fewer_segments(fast_and_slow, tmp_path, capsys):
    out = tmp_path / "plan"
    code = main(["split", "test_vit", "--strategy", "pipeline", "--devices", str(fast_and_slow), "--out", str(out),
                 "--image-size", "16", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    plan = json.loads((out / "plan.json").read_text())
    slow, fast = plan["pieces"]
    assert (slow["device"], fast["device"]) == ("slow", "fast")
    segments = {p["device"]: p["info"]["segment_range"][1] - p["info"]["segment_range"][0] + 1 for p in plan["pieces"]}
    assert segments["slow"] < segments["fast"], segments
    profiles = plan["latency"]["profiles"]
    for piece in plan["pieces"]:
        source = piece["predicted"]["compute_from"]
        recorded = profiles[piece["device"]]
        assert source["from"] == "profile" and source["complete"] is True
        assert source["profile_sha256"] == recorded["profile_sha256"] and source["predictor_version"] == PREDICTOR_VERSION
        assert source["profile"] == recorded["profile"] == str(fast_and_slow.parent / "profiles" /
                                                               f"{piece['device']}.json")
        assert piece["predicted"]["compute_ms"] == piece["cost"]["profiled"][piece["device"]]["ms"]
    assert {s["compute_from"] for s in plan["latency"]["per_stage"]} == {"profile"}
    assert plan["devices"]["device"][0]["profile"] == profiles["slow"]["profile"]
    assert "predicted from its profile" in printed and f"predictor version {PREDICTOR_VERSION}" in printed

    # the same figures for predict_plan, and predicting the plan's own artifacts gives them again
    from edgevit.cluster.plans import load_plan

    cluster = load_devices(fast_and_slow)
    loaded = load_plan(out)
    predicted = predict_plan(loaded, cluster)
    for piece in loaded.pieces:
        assert predicted["pieces"][piece.name]["compute_ms"] == pytest.approx(piece.predicted["compute_ms"])
    again = predict_plan(profile_plan(out, cluster), cluster)  # a stage file predicted whole, not as its segments
    for name, entry in predicted["pieces"].items():
        assert again["pieces"][name]["compute_ms"] == pytest.approx(entry["compute_ms"], rel=1e-6)


@pytest.mark.slow
def test_a_classwise_split_places_by_predicted_time(base_vit, digits6, tmp_path):
    """Two equal sub-models, one device profiled 4x slower: both run on the fast one (one after
    the other, 2t, beats t on the fast and 4t on the slow); the plan says so and why."""
    from edgevit.cli.split import plan_warnings
    from edgevit.split import SplitOptions, split

    devices = _device_file(tmp_path, {"fast": fake_profile(), "slow": _slowed(fake_profile(), SLOWER)})
    options = SplitOptions(reduction=4, prune_steps=1, recover_epochs=1, fusion_epochs=5, measure_rounds=3,
                           verify=False)
    plan = split(base_vit, digits6, devices, tmp_path / "plan", options, progress=False)
    assert [p.device for p in plan.pieces] == ["fast", "fast"]
    assert any("slow is left idle" in w for w in plan_warnings(plan))
    for piece in plan.pieces:
        profiled = piece.cost["profiled"]
        assert profiled["slow"]["ms"] == pytest.approx(SLOWER * profiled["fast"]["ms"], rel=1e-6)
        assert piece.predicted["compute_ms"] == profiled["fast"]["ms"]
        assert piece.predicted["compute_from"]["profile"].endswith("fast.json")
    assert plan.latency["unsplit_compute_from"]["profile"].endswith("fast.json")
    assert set(plan.latency["profiles"]) == {"fast", "slow"}
    assert any("predicted from each device's profile" in note for note in plan.notes)
