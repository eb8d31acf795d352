"""``edgevit bench ARTIFACT --url HOST:PORT``: the artifact is uploaded if the agent lacks it, timed
through the agent, and reported with the device's own compute time apart from the round trip,
beside a local run with ``--compare``."""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("grpc")

from edgevit.cli import main  # noqa: E402


@pytest.mark.slow  # exports zoo artifacts and uploads them to an agent
def test_remote_bench_with_compare(agent, zoo_artifacts, tmp_path, capsys):
    folder = zoo_artifacts["onnx-fp32"]
    code = main(["bench", str(folder), "--url", agent.url, "--compare", "--runs", "20", "--warmup", "3",
                 "--no-memory", "--quiet", "--json", str(tmp_path / "b.json"), "--csv", str(tmp_path / "b.csv")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "round trip p50 (ms)" in out and f"{folder.name}@{agent.url}" in out and "this machine" in out
    report = json.loads((tmp_path / "b.json").read_text())
    local, remote = report["results"]
    assert local["kind"] == "artifact" and remote["kind"] == "remote"
    assert remote["device_record"]["environment"]["cpu_model"] and remote["backend"] == "onnxruntime"
    assert len(remote["samples_ms"]) == 20
    device, trip, inside = remote["latency_ms"], remote["round_trip_ms"], remote["agent_ms"]
    assert 0 < device["p50_ms"] < inside["p50_ms"] < trip["p50_ms"], (device, inside, trip)
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert rows[1]["device"] and float(rows[1]["round_trip_p50_ms"]) == pytest.approx(trip["p50_ms"])
    # the agent already has the same files: a second run uploads nothing
    before = agent.log_text().count(f"load {folder.name}")
    assert main(["bench", str(folder), "--url", agent.url, "--runs", "5", "--warmup", "1", "--quiet"]) == 0
    assert agent.log_text().count(f"load {folder.name}") == before == 1


def test_compare_needs_a_url(zoo_artifacts, capsys):
    assert main(["bench", str(zoo_artifacts["onnx-fp32"]), "--compare"]) == 1
    assert "InvalidArgumentError: --compare compares this machine with a device" in capsys.readouterr().err


def test_an_unreachable_agent_is_one_line(zoo_artifacts, capsys):
    assert main(["bench", str(zoo_artifacts["onnx-fp32"]), "--url", "127.0.0.1:1", "--quiet", "--no-memory"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("AgentError: UNAVAILABLE: 127.0.0.1:1 ServerMetadata:") and "Traceback" not in err


def test_bench_on_a_device_named_in_the_device_file(agent, zoo_artifacts, tmp_path, capsys):
    devices = tmp_path / "devices.toml"
    devices.write_text('[[device]]\nname = "pi-a"\nmemory_mb = 64\nspeed = 1.0\nlink_mbps = 100\n'
                       f'link_latency_ms = 1\naddress = "{agent.url}"\n')
    folder = zoo_artifacts["onnx-fp32"]
    assert main(["bench", str(folder), "--device", "pi-a", "--devices", str(devices), "--runs", "5", "--warmup", "1",
                 "--quiet", "--no-memory"]) == 0
    assert f"{folder.name}@{agent.url}" in capsys.readouterr().out
    assert main(["bench", str(folder), "--device", "pi-a"]) == 1
    assert "InvalidArgumentError: --device NAME needs --devices FILE" in capsys.readouterr().err
