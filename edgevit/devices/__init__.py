"""Edge devices as data: a TOML file loaded and validated into frozen dataclasses.

A device file lists the devices a plan may use, each with the memory it has for the model,
its speed and its link to the coordinator (the machine that sends the input and, for the
class-wise split, runs the fusion head)::

    # devices.toml
    [coordinator]
    speed = 1.0                    # optional; runs the fusion head (default 1.0)

    [[device]]
    name = "pi-a"
    memory_mb = 256                # memory available for the model (weights + activations), 10^6 bytes
    speed = 0.25                   # relative to the machine the plan is measured on (1.0 = same)
    speed_origin = "edgevit bench, Raspberry Pi 4, 2 threads"   # where the figure came from
    link_mbps = 100                # bandwidth to the coordinator, megabits per second
    link_latency_ms = 2.0          # one-way latency to the coordinator

    [[device]]
    name = "jetson"
    memory_mb = 2048
    gmacs_per_s = 40.0             # a measured throughput instead of a relative speed
    link_mbps = 1000
    link_latency_ms = 0.5
    address = "jetson.local:8001"  # where its agent (edgevit serve) listens; optional
    token_file = "tokens/jetson"   # optional, relative to this file: the agent's bearer token
    tls_ca = "ca.pem"              # optional, relative to this file: verify the agent's TLS certificate

    [[device]]
    name = "pi-b"
    memory_mb = 512
    profile = "profiles/pi-b-onnxruntime.json"   # relative to this file: a measured device profile
    link_mbps = 100
    link_latency_ms = 2.0

Each device gives exactly one of ``speed`` (relative to the measuring machine),
``gmacs_per_s`` (measured throughput) or ``profile``: a device profile written by ``edgevit
devices probe`` (:mod:`edgevit.predict`), from which the planner predicts each piece's time on
the device, piece by piece (``edgevit split`` exports the pieces and predicts them). The
loader checks that the profile file exists; the profile itself is read by the layer that uses
it (``edgevit.split``), since this package knows nothing of profiles. ``address``,
``token_file`` and ``tls_ca`` say how to reach the device's agent: the planner ignores them,
``edgevit deploy`` and ``edgevit run`` use them (a plan made without addresses runs with a
device file that has them). :func:`parse_devices` validates a parsed dict and is pure;
:func:`load_devices` reads the file (the I/O edge), calls it and checks that the profile files
exist.

Example:
    >>> cluster = load_devices("devices.toml")
    >>> [d.name for d in cluster.devices]
    ['pi-a', 'jetson']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevit.errors import InvalidArgumentError

__all__ = ["Cluster", "Device", "load_devices", "parse_devices", "equal_devices"]

MB = 1_000_000

_REQUIRED = ("name", "memory_mb", "link_mbps", "link_latency_ms")
_OPTIONAL = ("speed", "gmacs_per_s", "profile", "speed_origin", "address", "token_file", "tls_ca")
#: the ways a device's compute speed is given; a device gives exactly one
_SPEED_KEYS = ("speed", "gmacs_per_s", "profile")
_DEVICE_KEYS = _REQUIRED + _OPTIONAL
_CONNECTION_KEYS = ("address", "token_file", "tls_ca")
_COORDINATOR_KEYS = ("speed", "speed_origin")


@dataclass(frozen=True)
class Device:
    """One edge device.

    Attributes:
        memory_mb: memory available for the model (weights and activations), in 10^6 bytes.
        speed: compute speed relative to the machine the plan's costs were measured on
            (2.0 = twice as fast); None when ``gmacs_per_s`` or ``profile`` is given.
        gmacs_per_s: measured throughput in 10^9 multiply-accumulates per second; None when
            ``speed`` or ``profile`` is given.
        profile: the device profile file (``edgevit devices probe``) the planner predicts each
            piece's time from (absolute, or relative to the device file when read from one);
            None when ``speed`` or ``gmacs_per_s`` is given.
        link_mbps: bandwidth of the link to the coordinator, megabits per second.
        link_latency_ms: one-way latency of that link.
        speed_origin: where the speed figure came from (free text, recorded in the plan).
        address: ``host:port`` of the device's agent (None: not reachable over the network).
        token_file / tls_ca: the agent's bearer token file and the CA that signed its TLS
            certificate (absolute, or relative to the device file when read from one).
    """

    name: str
    memory_mb: float
    link_mbps: float
    link_latency_ms: float
    speed: float | None = None
    gmacs_per_s: float | None = None
    speed_origin: str | None = None
    profile: str | None = None
    address: str | None = None
    token_file: str | None = None
    tls_ca: str | None = None

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_mb * MB)

    @property
    def speed_from(self) -> str:
        """How the device file gives its compute speed: ``"profile"``, ``"gmacs_per_s"`` or ``"speed"``."""
        return "profile" if self.profile is not None else "gmacs_per_s" if self.gmacs_per_s is not None else "speed"

    def to_dict(self, connection: bool = False) -> dict[str, Any]:
        """The device as data; ``connection`` adds how to reach its agent (plans leave it out)."""
        keys = _DEVICE_KEYS if connection else tuple(k for k in _DEVICE_KEYS if k not in _CONNECTION_KEYS)
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass(frozen=True)
class Cluster:
    """The devices of one device file, in file order (the chain order for pipelines)."""

    devices: tuple[Device, ...]
    coordinator_speed: float = 1.0
    source: str = "<memory>"
    coordinator_origin: str | None = field(default=None)

    def __len__(self) -> int:
        return len(self.devices)

    def device(self, name: str) -> Device:
        for device in self.devices:
            if device.name == name:
                return device
        raise InvalidArgumentError(
            f"no device {name!r} in {self.source}; devices: {', '.join(d.name for d in self.devices)}"
        )

    def to_dict(self) -> dict[str, Any]:
        coordinator: dict[str, Any] = {"speed": self.coordinator_speed}
        if self.coordinator_origin:
            coordinator["speed_origin"] = self.coordinator_origin
        return {"coordinator": coordinator, "device": [d.to_dict() for d in self.devices]}


def load_devices(path: str | Path) -> Cluster:
    """Read and validate a device file.

    Raises:
        InvalidArgumentError: the file is missing, is not TOML, or a device is invalid; the
            message names the file, the device and the field.
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"device file {str(path)!r} does not exist; see `edgevit split --help` for its format")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"device file {str(path)!r} is not valid TOML: {exc}") from exc
    cluster = parse_devices(data, source=str(path), base=path.parent)
    for device in cluster.devices:
        if device.profile is not None and not Path(device.profile).is_file():
            raise InvalidArgumentError(
                f"{path}: device {device.name!r} points at the profile {device.profile!r}, which does not exist; "
                f"probe the device to write it (edgevit devices probe ... -o {device.profile}), or give the "
                "device speed or gmacs_per_s instead"
            )
    return cluster


def parse_devices(data: dict[str, Any], source: str = "<memory>", base: str | Path | None = None) -> Cluster:
    """Validate a parsed device file (a dict with a ``device`` array of tables).

    ``base``: the folder relative ``profile``, ``token_file`` and ``tls_ca`` paths are taken
    from (the device file's; None keeps them as written). Pure: whether a profile file exists
    is checked by :func:`load_devices`."""
    unknown = sorted(set(data) - {"device", "coordinator"})
    if unknown:
        raise InvalidArgumentError(
            f"{source}: unknown top-level key(s) {', '.join(unknown)}; allowed: [coordinator] and [[device]]"
        )
    entries = data.get("device")
    if not isinstance(entries, list) or not entries:
        raise InvalidArgumentError(
            f"{source}: no devices; add at least one [[device]] table with {', '.join(_REQUIRED)} "
            "and one of speed, gmacs_per_s or profile"
        )
    devices = tuple(_parse_device(entry, i, source, base) for i, entry in enumerate(entries))
    names = [d.name for d in devices]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidArgumentError(f"{source}: device names must be unique; repeated: {', '.join(duplicates)}")
    speed, origin = _parse_coordinator(data.get("coordinator", {}), source)
    return Cluster(devices=devices, coordinator_speed=speed, source=source, coordinator_origin=origin)


def equal_devices(count: int, memory_mb: float = 1024.0, link_mbps: float = 1000.0,
                  link_latency_ms: float = 0.5, speed: float = 1.0) -> Cluster:
    """``count`` identical devices (``dev0``, ``dev1``...), e.g. for the "K equal devices" benchmark."""
    if count < 1:
        raise InvalidArgumentError(f"count must be >= 1, got {count}")
    devices = tuple(
        Device(f"dev{i}", memory_mb, link_mbps, link_latency_ms, speed=speed, speed_origin="equal devices")
        for i in range(count)
    )
    return Cluster(devices=devices, source=f"{count} equal devices")


def _parse_device(entry: Any, index: int, source: str, base: str | Path | None = None) -> Device:
    where = f"{source}: device {index + 1}"
    if not isinstance(entry, dict):
        raise InvalidArgumentError(f"{where} is not a table; write it as [[device]] with key = value lines")
    if isinstance(entry.get("name"), str):
        where += f" ({entry['name']!r})"
    unknown = sorted(set(entry) - set(_DEVICE_KEYS))
    if unknown:
        raise InvalidArgumentError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_DEVICE_KEYS)}")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise InvalidArgumentError(f"{where}: missing {', '.join(missing)}")
    name = entry["name"]
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(f"{where}: name must be a non-empty string, got {name!r}")
    memory = _positive(entry["memory_mb"], "memory_mb", where)
    bandwidth = _positive(entry["link_mbps"], "link_mbps", where)
    latency = _non_negative(entry["link_latency_ms"], "link_latency_ms", where)
    given = [key for key in _SPEED_KEYS if key in entry]
    if len(given) != 1:
        raise InvalidArgumentError(
            f"{where}: give exactly one of speed (relative to the measuring machine, 1.0 = same), "
            "gmacs_per_s (measured throughput) or profile (a device profile file written by `edgevit devices "
            f"probe`); got {' and '.join(given) if given else 'none of them'}"
        )
    speed = _positive(entry["speed"], "speed", where) if "speed" in entry else None
    rate = _positive(entry["gmacs_per_s"], "gmacs_per_s", where) if "gmacs_per_s" in entry else None
    profile = _file(entry.get("profile"), "profile", where, base)
    origin = entry.get("speed_origin")
    if origin is not None and not isinstance(origin, str):
        raise InvalidArgumentError(f"{where}: speed_origin must be a string, got {origin!r}")
    address = _address(entry["address"], where) if "address" in entry else None
    token_file, tls_ca = (_file(entry.get(key), key, where, base) for key in ("token_file", "tls_ca"))
    if (token_file or tls_ca) and address is None:
        raise InvalidArgumentError(f"{where}: token_file and tls_ca say how to reach the device's agent; give its "
                                   "address too (address = \"host:port\")")
    return Device(name.strip(), memory, bandwidth, latency, speed=speed, gmacs_per_s=rate, speed_origin=origin,
                  profile=profile, address=address, token_file=token_file, tls_ca=tls_ca)


def _address(value: Any, where: str) -> str:
    """``host:port`` (IPv6 hosts in brackets), or an InvalidArgumentError naming the device."""
    text = value.strip() if isinstance(value, str) else ""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() or c == "/" for c in text):
        raise InvalidArgumentError(f"{where}: address must be \"host:port\" of the device's agent (e.g. "
                                   f"\"pi-a.local:8001\"), got {value!r}")
    return text


def _file(value: Any, key: str, where: str, base: str | Path | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{where}: {key} must be a file path, got {value!r}")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() or base is None else Path(base) / path)


def _parse_coordinator(entry: Any, source: str) -> tuple[float, str | None]:
    if not isinstance(entry, dict):
        raise InvalidArgumentError(f"{source}: [coordinator] must be a table")
    unknown = sorted(set(entry) - set(_COORDINATOR_KEYS))
    if unknown:
        raise InvalidArgumentError(
            f"{source}: [coordinator] has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_COORDINATOR_KEYS)}"
        )
    speed = _positive(entry.get("speed", 1.0), "speed", f"{source}: [coordinator]")
    origin = entry.get("speed_origin")
    return speed, origin if isinstance(origin, str) else None


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgumentError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _positive(value: Any, key: str, where: str) -> float:
    number = _number(value, key, where)
    if number <= 0:
        raise InvalidArgumentError(f"{where}: {key} must be positive, got {value!r}")
    return number


def _non_negative(value: Any, key: str, where: str) -> float:
    number = _number(value, key, where)
    if number < 0:
        raise InvalidArgumentError(f"{where}: {key} must be >= 0, got {value!r}")
    return number
