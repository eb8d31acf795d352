"""Putting a plan's pieces on their devices: ``edgevit deploy PLAN_DIR --devices devices.toml``.

Each piece (sub-model or stage) goes to the device the plan placed it on, and with
``replicas=N`` to N standby devices chosen by the pure placement code
(:func:`edgevit.partition.placement.place_replicas`: memory respected, never the piece's own
device). Every upload goes through the agent's repository API and is checked ready; a device
that already serves the same files (same digest) is not sent them again. The fusion head stays
on the coordinator.

On the agents a piece is named ``<model>-<strategy>-<plan digest>-<piece>`` (the plan digest is
the first 8 hex digits of ``plan.json``'s sha256), so two plans never overwrite each other's
``sub0``. What went where is written next to the plan, atomically, as ``deployment.json``.

Example:
    >>> deployment = deploy_plan("plan/", load_devices("devices.toml"), replicas=1)
    >>> deployment.devices_of("sub0")
    ('pi-a', 'pi-c')
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgevit.cluster.transport import Endpoint
from edgevit.errors import AgentError, ArtifactError, InvalidArgumentError, PlanningError

DEPLOYMENT_NAME = "deployment.json"
DEPLOYMENT_FORMAT = "edgevit-deployment"


@dataclass(frozen=True)
class PieceDeployment:
    """One piece on its devices: ``devices[0]`` is the plan's, the rest are standbys."""

    piece: str
    model: str
    devices: tuple[str, ...]
    digest: str


@dataclass(frozen=True)
class Deployment:
    """What went where (``deployment.json``)."""

    plan_digest: str
    pieces: tuple[PieceDeployment, ...]
    addresses: dict[str, str]
    created: str = ""

    def piece(self, name: str) -> PieceDeployment:
        for piece in self.pieces:
            if piece.piece == name:
                return piece
        raise ArtifactError(f"the deployment has no piece {name!r}; pieces: {', '.join(p.piece for p in self.pieces)}")

    def devices_of(self, name: str) -> tuple[str, ...]:
        return self.piece(name).devices

    def to_dict(self) -> dict[str, Any]:
        return {"format": DEPLOYMENT_FORMAT, "plan_digest": self.plan_digest, "created": self.created,
                "addresses": dict(self.addresses),
                "pieces": [{"piece": p.piece, "model": p.model, "devices": list(p.devices), "digest": p.digest}
                           for p in self.pieces]}

    @classmethod
    def from_dict(cls, data: Any) -> Deployment:
        if not isinstance(data, dict) or data.get("format") != DEPLOYMENT_FORMAT:
            raise ArtifactError(f"not an edgevit deployment (format {data.get('format') if isinstance(data, dict) else data!r})")
        try:
            pieces = tuple(PieceDeployment(str(p["piece"]), str(p["model"]), tuple(map(str, p["devices"])),
                                           str(p["digest"])) for p in data["pieces"])
            return cls(str(data["plan_digest"]), pieces, {str(k): str(v) for k, v in data["addresses"].items()},
                       str(data.get("created", "")))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"deployment.json is malformed ({type(exc).__name__}: {exc}); deploy the plan again") \
                from exc


def plan_digest(plan_dir: str | Path) -> str:
    """sha256 of the plan's ``plan.json``."""
    from edgevit.partition.plan import PLAN_NAME

    return hashlib.sha256((Path(plan_dir) / PLAN_NAME).read_bytes()).hexdigest()


def agent_model_name(plan: Any, digest: str, piece: str) -> str:
    """The name a piece is served under on an agent (unique per plan; a valid agent model name)."""
    raw = f"{plan.model.get('name', 'plan')}-{plan.strategy}-{digest[:8]}-{piece}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)[:128]


def endpoints(cluster: Any, names: set[str] | None = None) -> dict[str, Endpoint]:
    """``{device: Endpoint}`` from a device file's addresses, tokens and CAs (only ``names`` when given).

    Raises:
        InvalidArgumentError: a device has no address, or its token file cannot be read.
    """
    out = {}
    for device in cluster.devices:
        if names is not None and device.name not in names:
            continue
        if device.address is None:
            raise InvalidArgumentError(f"device {device.name!r} in {cluster.source} has no address; add "
                                       "address = \"host:port\" of its agent (edgevit serve) to run plans on it")
        token = None
        if device.token_file is not None:
            try:
                token = Path(device.token_file).read_text().strip()
            except OSError as exc:
                raise InvalidArgumentError(f"device {device.name!r}: cannot read token_file {device.token_file!r}: "
                                           f"{exc}") from exc
        out[device.name] = Endpoint(device.address, token, Path(device.tls_ca) if device.tls_ca else None)
    return out


def plan_placement(plan: Any, cluster: Any, replicas: int = 0) -> dict[str, tuple[str, ...]]:
    """``{piece: (device, standby...)}`` for a plan's pieces on the devices of ``cluster`` (pure)."""
    from edgevit.partition.placement import place_replicas

    names = {d.name for d in cluster.devices}
    for piece in plan.pieces:
        if piece.device not in names:
            raise InvalidArgumentError(f"the plan puts {piece.name} on device {piece.device!r}, which is not in "
                                       f"{cluster.source} ({', '.join(sorted(names))}); use the device file the plan "
                                       "was made with, or devices of the same names")
    memory = {d.name: d.memory_bytes for d in cluster.devices}
    for overflow in plan.memory_overflows(memory):
        raise PlanningError(f"device {overflow.device!r} in {cluster.source} has memory_mb = "
                            f"{overflow.available_bytes / 1e6:g}, but the plan's pieces on it "
                            f"({', '.join(overflow.pieces)}) need {overflow.needed_bytes / 1e6:.3g} MB as exported "
                            "(file bytes plus activations); raise its memory_mb if the device has it, or split "
                            "again with more devices or a smaller precision")
    pieces = {p.name: (p.device, p.memory_bytes) for p in plan.pieces}
    return place_replicas(pieces, memory, replicas)


def deploy_plan(plan_dir: str | Path, cluster: Any, replicas: int = 0, force: bool = False,
                log: Any = None) -> Deployment:
    """Upload every piece to its devices, check each is ready, write ``deployment.json``.

    Raises:
        AgentError: a device refused an upload or is unreachable (names the device and address).
        InvalidArgumentError / PlanningError: devices without addresses, or not enough room for replicas.
    """
    from edgevit.agent.client import AgentClient
    from edgevit.artifact import artifact_digest
    from edgevit.cluster.plans import load_plan

    say = log or (lambda message: None)
    folder = Path(plan_dir)
    plan = load_plan(folder)
    digest = plan_digest(folder)
    placement = plan_placement(plan, cluster, replicas)
    used = {d for devices in placement.values() for d in devices}
    reach = endpoints(cluster, used)
    clients = {name: AgentClient(e.address, token=e.token, tls_ca=e.tls_ca) for name, e in reach.items()}
    try:
        pieces = []
        for piece in plan.pieces:
            model = agent_model_name(plan, digest, piece.name)
            for device in placement[piece.name]:
                try:
                    upload = clients[device].upload(folder / piece.artifact, name=model, force=force)
                    ready = clients[device].model_ready(model)
                except AgentError as exc:
                    raise AgentError(exc.code, f"deploying {piece.name} to {device} ({reach[device].address}): "
                                               f"{exc.args[0]}") from None
                if not ready:
                    raise AgentError("UNAVAILABLE", f"{device} ({reach[device].address}) accepted {piece.name} but "
                                                    "does not report it ready")
                role = "piece" if device == placement[piece.name][0] else "standby"
                say(f"{piece.name} -> {device} ({role}): " + (f"uploaded {upload.bytes / 2**20:.1f} MB in "
                                                             f"{upload.seconds:.1f} s" if upload.uploaded else
                                                             "already there"))
            pieces.append(PieceDeployment(piece.name, model, placement[piece.name],
                                          artifact_digest(folder / piece.artifact)))
    finally:
        for client in clients.values():
            client.close()
    deployment = Deployment(digest, tuple(pieces), {name: e.address for name, e in reach.items()},
                            datetime.now(UTC).isoformat(timespec="seconds"))
    write_deployment(folder, deployment)
    return deployment


def write_deployment(plan_dir: str | Path, deployment: Deployment) -> Path:
    from edgevit._files import write_json

    return write_json(Path(plan_dir) / DEPLOYMENT_NAME, deployment.to_dict())


def read_deployment(plan_dir: str | Path) -> Deployment | None:
    """The plan's ``deployment.json``, or None when it has not been deployed."""
    path = Path(plan_dir) / DEPLOYMENT_NAME
    if not path.is_file():
        return None
    from edgevit._files import read_json

    return Deployment.from_dict(read_json(path, hint="deploy the plan again"))
