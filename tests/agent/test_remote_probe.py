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
    assert result.skipped == () and [t.kernel for t in profile.timings] == list(KERNELS)
    assert profile.measurement.where == "agent" and profile.device == record["name"]
    assert profile.backend_version == record["backends"]["onnxruntime"]
    assert profile.environment.to_dict() == {**record["environment"], "load_average_1m": profile.environment.load_average_1m,
                                             "started_utc": profile.environment.started_utc}
    assert profile.cpu_flags == tuple(record["cpu_flags"])
    assert all(t.ms > 0 for t in profile.timings)
    assert not any(m["name"].startswith("calib") and m.get("state") == "READY" for m in agent.client().models())
    assert load_profile(save_profile(profile, tmp_path / "agent.json")) == profile
    assert set(fit(profile).models) == {("linear", "fp32"), ("copy", "fp32")}


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
