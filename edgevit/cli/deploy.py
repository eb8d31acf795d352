"""``edgevit deploy ARTIFACT... --url HOST:PORT``: push artifacts to a device agent;
``edgevit deploy PLAN_DIR --devices devices.toml [--replicas N]``: a split plan's pieces to their devices."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "deploy",
        help="upload artifacts to a device agent, or a split plan's pieces to its devices",
        description="Upload artifact folders to a device agent (--url), or every piece of a split plan to the "
                    "device the plan placed it on (--devices, with standby copies on other devices with "
                    "--replicas), and check that each is loaded and ready. Files an agent already serves are not "
                    "sent again. A plan's deployment is written next to it as deployment.json.",
        epilog="examples:\n  edgevit deploy cas_vit_xs-onnx-int8 --url pi-a.local:8001 --token-file admin-token "
               "--tls-ca ca.pem\n  edgevit deploy plan/ --devices devices.toml --replicas 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                   help="artifact folders (served under their folder name), or one plan folder with --devices")
    add_connection_arguments(p, admin=True, required=False)
    p.add_argument("--devices", help="device file with addresses: deploy the plan folder's pieces to its devices")
    p.add_argument("--replicas", type=int, default=0, help="standby copies of each piece on other devices (plans)")
    p.add_argument("--force", action="store_true", help="upload even if the agent has the same files")
    p.set_defaults(run=run)


def add_connection_arguments(p: argparse.ArgumentParser, admin: bool = False, required: bool = True) -> None:
    """``--url``, ``--token-file`` and the TLS flags of a command that talks to an agent."""
    p.add_argument("--url", required=required, metavar="HOST:PORT", help="the agent's address")
    p.add_argument("--token-file", help="file with the bearer token" + (" (the admin token: uploads need it)"
                                                                          if admin else ""))
    p.add_argument("--tls-ca", help="CA certificate (PEM) to verify the agent with; enables TLS")
    p.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
    p.add_argument("--tls-key", help="client private key (PEM) for mutual TLS")


def connection(args: argparse.Namespace) -> dict:
    return {"token_file": args.token_file, "tls_ca": args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key}


def run(args: argparse.Namespace) -> int:
    from edgevit.agent.client import deploy
    from edgevit.errors import InvalidArgumentError

    if args.devices is not None:
        return _deploy_plan(args)
    if args.url is None:
        raise InvalidArgumentError("say where to deploy: --url HOST:PORT for artifacts, or --devices devices.toml "
                                   "for a plan folder")
    for upload in deploy(args.artifacts, args.url, force=args.force, **connection(args)):
        what = (f"uploaded {upload.bytes / 2**20:.1f} MB in {upload.seconds:.1f} s" if upload.uploaded
                else "already there (same files)")
        print(f"{upload.name}: ready on {args.url}, {what}, sha256 {upload.digest[:12]}")
    return 0


def _deploy_plan(args: argparse.Namespace) -> int:
    from edgevit.cluster.deploy import DEPLOYMENT_NAME, deploy_plan
    from edgevit.devices import load_devices
    from edgevit.errors import InvalidArgumentError

    if len(args.artifacts) != 1 or args.url is not None:
        raise InvalidArgumentError("with --devices give exactly one plan folder and no --url (each device's address "
                                   "is in the device file)")
    deployment = deploy_plan(args.artifacts[0], load_devices(args.devices), replicas=args.replicas, force=args.force,
                             log=print)
    for piece in deployment.pieces:
        standby = f", standby on {', '.join(piece.devices[1:])}" if len(piece.devices) > 1 else ""
        print(f"{piece.piece}: {piece.model} on {piece.devices[0]}{standby}")
    print(f"wrote {args.artifacts[0].rstrip('/')}/{DEPLOYMENT_NAME}")
    return 0
