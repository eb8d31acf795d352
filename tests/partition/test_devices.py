"""Device files: loading, validation errors that name the device and the field. No torch."""

from __future__ import annotations

import pytest

from edgevit.devices import Cluster, Device, equal_devices, load_devices, parse_devices
from edgevit.errors import InvalidArgumentError

GOOD = """
[coordinator]
speed = 2.0

[[device]]
name = "pi-a"
memory_mb = 256
speed = 0.25
speed_origin = "edgevit bench on a Raspberry Pi 4"
link_mbps = 100
link_latency_ms = 2.0

[[device]]
name = "jetson"
memory_mb = 2048
gmacs_per_s = 40.0
link_mbps = 1000
link_latency_ms = 0.5
"""


def _device(**overrides):
    entry = {"name": "d", "memory_mb": 64, "speed": 1.0, "link_mbps": 100, "link_latency_ms": 1.0}
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


def test_loads_a_device_file(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text(GOOD)
    cluster = load_devices(path)
    assert isinstance(cluster, Cluster) and len(cluster) == 2
    pi, jetson = cluster.devices
    assert pi == Device("pi-a", 256.0, 100.0, 2.0, speed=0.25, speed_origin="edgevit bench on a Raspberry Pi 4")
    assert jetson.gmacs_per_s == 40.0 and jetson.speed is None
    assert pi.memory_bytes == 256_000_000
    assert cluster.coordinator_speed == 2.0
    assert cluster.device("jetson") is jetson
    assert parse_devices(cluster.to_dict()).devices == cluster.devices  # round trip


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (_device(memory_mb=None), "missing memory_mb"),
        (_device(speed=None), "got none of them"),
        (_device(gmacs_per_s=3.0), "got speed and gmacs_per_s"),
        (_device(memory_mb=-1), "memory_mb must be positive"),
        (_device(link_mbps=0), "link_mbps must be positive"),
        (_device(link_latency_ms=-0.1), "link_latency_ms must be >= 0"),
        (_device(speed="fast"), "speed must be a number"),
        (_device(name=""), "name must be a non-empty string"),
        (_device(ram=4), "unknown key(s) ram"),
    ],
)
def test_invalid_device_names_device_and_field(entry, fragment):
    with pytest.raises(InvalidArgumentError) as info:
        parse_devices({"device": [_device(name="ok"), entry]}, source="devices.toml")
    message = str(info.value)
    assert fragment in message
    assert "devices.toml: device 2" in message


def test_file_level_errors(tmp_path):
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        load_devices(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[device]\nname = ")
    with pytest.raises(InvalidArgumentError, match="not valid TOML"):
        load_devices(bad)
    with pytest.raises(InvalidArgumentError, match="no devices"):
        parse_devices({})
    with pytest.raises(InvalidArgumentError, match="repeated: a"):
        parse_devices({"device": [_device(name="a"), _device(name="a")]})
    with pytest.raises(InvalidArgumentError, match="unknown top-level key"):
        parse_devices({"device": [_device()], "devices": []})
    with pytest.raises(InvalidArgumentError, match=r"\[coordinator\] has unknown key"):
        parse_devices({"device": [_device()], "coordinator": {"memory_mb": 3}})


def test_equal_devices():
    cluster = equal_devices(3, memory_mb=100)
    assert [d.name for d in cluster.devices] == ["dev0", "dev1", "dev2"]
    assert all(d.speed == 1.0 and d.memory_mb == 100 for d in cluster.devices)
    with pytest.raises(InvalidArgumentError):
        equal_devices(0)


def test_addresses_tokens_and_cas_resolve_relative_to_the_file(tmp_path):
    path = tmp_path / "fleet" / "devices.toml"
    path.parent.mkdir()
    path.write_text('[[device]]\nname = "pi-a"\nmemory_mb = 64\nspeed = 1.0\nlink_mbps = 100\nlink_latency_ms = 1\n'
                    'address = "pi-a.local:8001"\ntoken_file = "tokens/pi-a"\ntls_ca = "/etc/edgevit/ca.pem"\n'
                    '[[device]]\nname = "v6"\nmemory_mb = 64\nspeed = 1.0\nlink_mbps = 100\nlink_latency_ms = 1\n'
                    'address = "[::1]:8001"\n')
    cluster = load_devices(path)
    device = cluster.device("pi-a")
    assert device.address == "pi-a.local:8001" and device.tls_ca == "/etc/edgevit/ca.pem"
    assert device.token_file == str(path.parent / "tokens" / "pi-a")
    assert cluster.device("v6").address == "[::1]:8001"
    assert "address" not in cluster.to_dict()["device"][0], "plans record devices without how to reach them"
    assert device.to_dict(connection=True)["address"] == "pi-a.local:8001"


@pytest.mark.parametrize(("overrides", "message"), [
    (dict(address="pi-a.local"), "address must be \"host:port\" of the device's agent"),
    (dict(address="pi-a:99999"), "address must be"),
    (dict(address="http://pi-a:8001/"), "address must be"),
    (dict(address=8001), "address must be"),
    (dict(token_file="t"), "token_file and tls_ca say how to reach the device's agent; give its address too"),
    (dict(address="a:1", tls_ca=""), "tls_ca must be a file path"),
])
def test_bad_connection_fields_name_the_device(overrides, message):
    with pytest.raises(InvalidArgumentError) as error:
        parse_devices({"device": [_device(**overrides)]}, source="f.toml")
    assert "f.toml: device 1 ('d')" in str(error.value) and message in str(error.value), str(error.value)


PROFILED = """
[[device]]
name = "pi-a"
memory_mb = 256
profile = "profiles/pi-a-onnxruntime.json"
speed_origin = "edgevit devices probe, Raspberry Pi 4"
link_mbps = 100
link_latency_ms = 2.0

[[device]]
name = "pi-b"
memory_mb = 256
speed = 0.5
link_mbps = 100
link_latency_ms = 2.0
"""


def test_a_device_may_point_at_a_profile_relative_to_the_file(tmp_path):
    folder = tmp_path / "fleet"
    (folder / "profiles").mkdir(parents=True)
    (folder / "profiles" / "pi-a-onnxruntime.json").write_text("{}")  # read by the planner, not the loader
    (folder / "devices.toml").write_text(PROFILED)
    cluster = load_devices(folder / "devices.toml")
    pi_a, pi_b = cluster.devices
    assert pi_a.profile == str(folder / "profiles" / "pi-a-onnxruntime.json")
    assert pi_a.speed is None and pi_a.gmacs_per_s is None and pi_a.speed_from == "profile"
    assert pi_b.profile is None and pi_b.speed_from == "speed"
    recorded = cluster.to_dict()["device"][0]
    assert recorded["profile"] == pi_a.profile, "plans record the profile a device was planned with"
    assert recorded["speed_origin"] == "edgevit devices probe, Raspberry Pi 4"
    assert parse_devices(cluster.to_dict()).devices == cluster.devices  # round trip, as a plan re-reads it


@pytest.mark.parametrize(("overrides", "given"), [
    (dict(profile="p.json"), "speed and profile"),
    (dict(speed=None, gmacs_per_s=2.0, profile="p.json"), "gmacs_per_s and profile"),
    (dict(gmacs_per_s=2.0, profile="p.json"), "speed and gmacs_per_s and profile"),
    (dict(speed=None), "none of them"),
])
def test_exactly_one_of_speed_gmacs_and_profile(overrides, given):
    with pytest.raises(InvalidArgumentError) as error:
        parse_devices({"device": [_device(**overrides)]}, source="f.toml")
    message = str(error.value)
    assert message.startswith("f.toml: device 1 ('d'): give exactly one of speed")
    assert "gmacs_per_s (measured throughput) or profile (a device profile file" in message
    assert message.endswith(f"got {given}")


def test_a_missing_profile_file_is_refused_when_the_device_file_is_loaded(tmp_path):
    (tmp_path / "devices.toml").write_text(PROFILED)
    with pytest.raises(InvalidArgumentError) as error:
        load_devices(tmp_path / "devices.toml")
    message = str(error.value)
    assert "device 'pi-a' points at the profile" in message and "does not exist" in message
    assert str(tmp_path / "profiles" / "pi-a-onnxruntime.json") in message
    assert "edgevit devices probe" in message and "speed or gmacs_per_s" in message
    with pytest.raises(InvalidArgumentError, match="profile must be a file path"):
        parse_devices({"device": [_device(speed=None, profile="")]})
