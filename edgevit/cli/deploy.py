"""``edgevit deploy ARTIFACT... --url HOST:PORT``: push artifacts to a device agent."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "deploy",
        help="upload artifacts to a device agent (edgevit serve)",
        description="Upload artifact folders to a device agent and check that each is loaded and ready. An "
                    "artifact the agent already serves with the same files is not sent again.",
        epilog="example:\n  edgevit deploy cas_vit_xs-onnx-int8 --url pi-a.local:8001 --token-file admin-token "
               "--tls-ca ca.pem", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifact folders (served under their folder name)")
    add_connection_arguments(p, admin=True)
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

    for upload in deploy(args.artifacts, args.url, force=args.force, **connection(args)):
        what = (f"uploaded {upload.bytes / 2**20:.1f} MB in {upload.seconds:.1f} s" if upload.uploaded
                else "already there (same files)")
        print(f"{upload.name}: ready on {args.url}, {what}, sha256 {upload.digest[:12]}")
    return 0
