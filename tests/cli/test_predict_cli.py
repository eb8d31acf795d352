"""``edgevit predict`` and ``edgevit devices probe``, called through ``main(argv)``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevit.cli import main
from edgevit.environment import environment
from edgevit.predict import (
    DeviceProfile,
    Kernel,
    KernelTiming,
    Measurement,
    load_profile,
    predict,
    save_profile,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """``softmax(x @ W + b)``: one linear kernel and one softmax."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Add", ["y", "b"], ["z"]),
         helper.make_node("Softmax", ["z"], ["p"], axis=-1)],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 4, 16])],
        [numpy_helper.from_array(np.ones((8, 16), np.float32), "W"), numpy_helper.from_array(np.ones(16, np.float32), "b")],
    )
    path = tmp_path_factory.mktemp("predict-cli") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    timings = [KernelTiming(Kernel.of("run"), 0.01)]
    timings += [KernelTiming(Kernel.of("linear", M=m, K=k, N=n), 0.01 + 0.001 + 1e-7 * 2 * m * k * n)
                for m, k, n in ((2, 8, 8), (8, 16, 32), (16, 8, 64), (4, 32, 16))]
    timings += [KernelTiming(Kernel.of("softmax", ROWS=r, COLS=c), 0.01 + 0.002 + 1e-6 * r * c) for r, c in ((4, 8), (16, 16), (64, 8))]
    stamp = DeviceProfile("cli", "onnxruntime", "0", 1, Measurement(3, 1), environment(), (), "2026-11-30", "0.1.0",
                          tuple(timings))
    return save_profile(stamp, tmp_path_factory.mktemp("profiles") / "cli.json")


def test_predict_prints_the_breakdown(model, profile, capsys):
    assert main(["predict", str(model), "--profile", str(profile)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("predicted ") and "linear[M=4,K=8,N=16]" in out and "MatMul+Add" in out and "softmax" in out


def test_predict_json_is_the_prediction(model, profile, capsys):
    assert main(["predict", str(model), "--profile", str(profile), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_ms"] == pytest.approx(predict(model, load_profile(profile)).total_ms) and data["complete"]


def test_a_corrupt_profile_is_one_line_and_exit_1(model, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["predict", str(model), "--profile", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ProfileError: ") and str(bad) in err and "re-probe" in err


def test_probe_needs_exactly_one_place(tmp_path, capsys):
    assert main(["devices", "probe", "-o", str(tmp_path / "p.json")]) == 1
    assert "exactly one of --local" in capsys.readouterr().err
    assert main(["devices", "probe", "--local", "--url", "127.0.0.1:1", "-o", str(tmp_path / "p.json")]) == 1


def test_an_unwritable_profile_path_is_refused_before_probing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("edgevit.probe.probe_local", lambda *a, **k: pytest.fail("probed before checking --out"))
    assert main(["devices", "probe", "--local", "--preset", "quick", "-o", str(tmp_path)]) == 1
    assert "InvalidArgumentError: --out" in capsys.readouterr().err


@pytest.mark.slow
def test_a_quick_local_probe_from_the_cli_writes_a_profile(tmp_path, capsys):
    out = tmp_path / "here.json"
    assert main(["devices", "probe", "--local", "--preset", "quick", "--rounds", "1", "--warmup", "0", "--threads", "1",
                 "--device", "ci", "--quiet", "--workdir", str(tmp_path / "calibration"), "-o", str(out)]) == 0
    assert len(list((tmp_path / "calibration").iterdir())) == 7  # 5 alone, 2 in chains: kept for the next device
    assert f"wrote {out}" in capsys.readouterr().out
    profile = load_profile(out)
    assert profile.device == "ci" and profile.threads == 1 and len(profile.timings) == 7
    assert (profile.measurement.passes, profile.measurement.chain, profile.measurement.window_ms) == (3, 4, 100.0)


def test_predict_plot_draws_a_png_and_an_unwritable_plot_is_refused_first(model, profile, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots" / "tiny.png"
    assert main(["predict", str(model), "--profile", str(profile), "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {out}" in capsys.readouterr().out
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    assert main(["predict", str(model), "--profile", str(profile), "--plot", str(tmp_path)]) == 1
    err = capsys.readouterr()
    assert "InvalidArgumentError: --plot" in err.err and "is a folder" in err.err and "predicted" not in err.out


def test_probing_a_device_by_name_needs_its_file_and_an_address_there(tmp_path, capsys):
    devices = tmp_path / "devices.toml"
    devices.write_text('[[device]]\nname = "pi-a"\nmemory_mb = 256\nspeed = 0.25\nlink_mbps = 100\nlink_latency_ms = 2.0\n')
    out = str(tmp_path / "p.json")
    assert main(["devices", "probe", "pi-a", "-o", out]) == 1
    assert "give both DEVICE and --devices FILE" in capsys.readouterr().err
    assert main(["devices", "probe", "pi-a", "--devices", str(devices), "--local", "-o", out]) == 1
    assert "exactly one of --local" in capsys.readouterr().err
    assert main(["devices", "probe", "pi-b", "--devices", str(devices), "-o", out]) == 1
    assert "no device 'pi-b'" in capsys.readouterr().err
    assert main(["devices", "probe", "pi-a", "--devices", str(devices), "-o", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith("InvalidArgumentError: ") and "has no address" in err and "--url" in err
    with devices.open("a") as f:
        f.write('address = "127.0.0.1:1"\n')
    assert main(["devices", "probe", "pi-a", "--devices", str(devices), "--token-file", "t", "-o", out]) == 1
    assert "come from the device file" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_devices_merge_writes_the_median_profile_and_refuses_a_mismatch_first(profile, tmp_path, capsys):
    from dataclasses import replace

    first = load_profile(profile)
    slower = save_profile(replace(first, timings=tuple(replace(t, ms=3 * t.ms) for t in first.timings)),
                          tmp_path / "slower.json")
    out = tmp_path / "merged" / "cli.json"
    assert main(["devices", "merge", str(profile), str(slower), "-o", str(out)]) == 0
    assert "merged from 2 profiles" in capsys.readouterr().out
    merged = load_profile(out)
    assert merged.measurement.passes == 2
    assert [t.ms for t in merged.timings] == pytest.approx([2 * t.ms for t in first.timings])
    other = save_profile(replace(first, backend="litert"), tmp_path / "litert.json")
    again = tmp_path / "again.json"
    assert main(["devices", "merge", str(profile), str(other), "-o", str(again)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("InvalidArgumentError: profile 2 cannot be merged") and "backend" in err
    assert not again.exists()
    assert main(["devices", "merge", str(profile), str(tmp_path / "missing.json"), "-o", str(again)]) == 1
    assert capsys.readouterr().err.startswith("ProfileError: ") and not again.exists()
