"""Probing a device through its agent (issue 15): the calibration models are uploaded to a real
loopback agent, timed there (the agent's device-side compute time) and unloaded; the profile
carries the agent's device record, not this process's."""

from __future__ import annotations

import pytest

from edgevit.predict import Kernel, fit, load_profile, save_profile
from edgevit.probe import probe_remote

KERNELS = (Kernel.of("run"), Kernel.of("linear", M=17, K=32, N=32), Kernel.of("linear", M=33, K=32, N=96),
           Kernel.of("copy", E=1088))


@pytest.mark.slow
def test_a_remote_probe_times_on_the_agent_and_records_its_device(agent, tmp_path):
    result = probe_remote(agent.url, "onnxruntime", kernels=KERNELS, rounds=2, warmup=1, progress=False)
    profile = result.profile
    record = agent.client().device()
    linears = [k for k in KERNELS if k.kind == "linear"]  # alone, then in chains of four
    assert result.skipped == () and [t.kernel for t in profile.timings] == [*KERNELS, *linears]
    assert profile.measurement.where == "agent" and profile.device == record["name"]
    assert profile.measurement.statistic == "mean" and profile.measurement.window_ms == 100.0
    assert profile.backend_version == record["backends"]["onnxruntime"]
    assert profile.environment.to_dict() == {**record["environment"], "load_average_1m": profile.environment.load_average_1m,
                                             "started_utc": profile.environment.started_utc}
    assert profile.cpu_flags == tuple(record["cpu_flags"])
    assert all(t.ms > 0 for t in profile.timings)
    assert not any(m["name"].startswith("calib") and m.get("state") == "READY" for m in agent.client().models())
    assert load_profile(save_profile(profile, tmp_path / "agent.json")) == profile
    assert set(fit(profile).models) == {("linear", "fp32"), ("copy", "fp32")}


def test_the_agent_timer_runs_a_model_back_to_back_for_its_whole_window(agent, dtype_artifacts):
    """At least ``rounds`` runs, and enough more to fill ``window_ms`` (as the warm-up request's run
    estimates them), in requests of at most 200; the mean run comes back."""
    import math

    import numpy as np

    from edgevit.probe.timers import MAX_REPEAT, MAX_RUNS, AgentTimer

    folder = dtype_artifacts["float32"]
    feeds = {"x": np.ones((1, 4), np.float32)}
    with AgentTimer("onnxruntime", agent.url) as timer:
        asked, real = [], timer.client.infer

        def recording(*args, **kwargs):
            result = real(*args, **kwargs)
            asked.append((kwargs.get("repeat"), result.timings))
            return result

        timer.client.infer = recording
        ms = timer.time(folder, feeds, rounds=3, warmup=0)
        assert [repeat for repeat, _ in asked] == [1, 3] and 0 < ms < 50
        asked.clear()
        ms = timer.time(folder, feeds, rounds=3, warmup=2, window_ms=60.0)
        estimate = asked[0][1]["compute_mean_ns"] / 1e6
        runs = [t["runs"] for _, t in asked[1:]]
        assert asked[0][0] == 2 and all(r <= MAX_REPEAT for r in runs)
        assert sum(runs) == min(max(3, math.ceil(60.0 / estimate)), MAX_RUNS) > 3
        mean = sum(t["compute_mean_ns"] * t["runs"] for _, t in asked[1:]) / sum(runs) / 1e6
        assert ms == pytest.approx(mean, rel=1e-3)


def test_the_agent_timer_times_one_request_after_each_idle_gap_device_side(agent, dtype_artifacts):
    """One request per run (no ``repeat``), each after the gap, the agent's own ``compute_ns`` of
    each; their median comes back, and the model is unloaded."""
    import time

    import numpy as np

    from edgevit.probe.timers import AgentTimer

    feeds = {"x": np.ones((1, 4), np.float32)}
    with AgentTimer("onnxruntime", agent.url) as timer:
        asked, real = [], timer.client.infer

        def recording(*args, **kwargs):
            result = real(*args, **kwargs)
            asked.append((time.perf_counter(), kwargs.get("repeat"), result.timings["compute_ns"]))
            return result

        timer.client.infer = recording
        ms = timer.time_idle(dtype_artifacts["float32"], feeds, rounds=4, warmup=1, gap_ms=40.0)
    assert [repeat for _, repeat, _ in asked] == [None] * 5
    assert all(later - earlier >= 0.04 for (earlier, _, _), (later, _, _) in zip(asked[1:], asked[2:]))
    assert ms == pytest.approx(float(np.median([ns for _, _, ns in asked[1:]])) / 1e6)
    assert not any(m.get("state") == "READY" for m in agent.client().models())


@pytest.mark.slow
def test_a_device_is_probed_by_name_through_the_address_its_device_file_gives(agent, tmp_path, capsys):
    from edgevit.cli import main

    devices = tmp_path / "devices.toml"
    devices.write_text(f'[[device]]\nname = "pi-a"\nmemory_mb = 256\nspeed = 0.25\nlink_mbps = 100\n'
                       f'link_latency_ms = 2.0\naddress = "{agent.url}"\n')
    out = tmp_path / "pi-a.json"
    assert main(["devices", "probe", "pi-a", "--devices", str(devices), "--preset", "quick", "--rounds", "1",
                 "--warmup", "0", "--quiet", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    profile = load_profile(out)
    assert profile.measurement.where == "agent" and profile.device == agent.client().device()["name"]


@pytest.mark.slow
def test_a_reference_model_is_timed_on_the_agent_and_unloaded(agent, tmp_path, capsys):
    """`--reference`: an exported model is uploaded, timed device-side in every pass, unloaded, and
    kept in the profile with the kernels it maps to."""
    from edgevit.cli import main
    from edgevit.export import export

    onnx = export("test_vit", target="onnx", out=tmp_path, verify=False, quiet=True).path
    out = tmp_path / "agent.json"
    assert main(["devices", "probe", "--url", agent.url, "--preset", "quick", "--rounds", "1", "--warmup", "0",
                 "--passes", "2", "--reference", str(onnx), "--quiet", "-o", str(out)]) == 0
    assert "1 reference models" in capsys.readouterr().out
    (reference,) = load_profile(out).references
    assert (reference.model, reference.family, reference.precision) == ("test_vit", "vit", "fp32")
    assert reference.ms > 0 and sum(n for _, n in reference.kernels) > 20
    assert not any(m.get("state") == "READY" for m in agent.client().models())
