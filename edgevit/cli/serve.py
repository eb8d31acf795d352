"""``edgevit serve``: run the device agent (a thin skin over :func:`edgevit.agent.serve`)."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  edgevit serve --repository ~/edgevit-models
      loopback only (127.0.0.1:8001), no tokens: for trying it out on this machine
  edgevit serve --host 0.0.0.0 --repository /var/lib/edgevit --threads 4 \\
      --token-file /etc/edgevit/token --admin-token-file /etc/edgevit/admin-token \\
      --tls-cert /etc/edgevit/agent.pem --tls-key /etc/edgevit/agent.key
      a device on the network: inference needs the token, uploads the admin token, all over TLS

make a token:  python -c "import secrets; print(secrets.token_urlsafe(32))" > token && chmod 600 token
see docs/agent.md for the protocol, systemd and Raspberry Pi / Jetson set-up."""


def add_parser(sub) -> None:
    from edgevit.agent.config import DEFAULT_MAX_QUEUE, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT

    p = sub.add_parser(
        "serve",
        help="run the device agent (Open Inference Protocol over gRPC)",
        description="Serve artifacts from a repository folder over the Open Inference Protocol (KServe v2, as "
                    "Triton) on gRPC: uploads, inference with device timings, statistics and health checks. "
                    "Needs no torch: pip install 'edgevit[agent,onnxruntime]'.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface, which needs "
                        "credentials or --insecure)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--repository", default="edgevit-repository",
                   help="folder the artifacts are kept in and loaded from at start (default ./edgevit-repository)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per model (default: the backend's, all cores)")
    p.add_argument("--spin", action="store_true",
                   help="onnxruntime: intra-op threads spin between ops instead of blocking; faster on a device that "
                        "runs only the agent, slower when the cores are shared (default off)")
    p.add_argument("--max-concurrent", type=int, default=1,
                   help="inference requests run at once; more wait in the queue (default 1)")
    p.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
                   help=f"requests allowed to wait; beyond it RESOURCE_EXHAUSTED (default {DEFAULT_MAX_QUEUE})")
    p.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest artifact accepted, in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    auth = p.add_argument_group("security")
    auth.add_argument("--token-file", help="file with the bearer token for health, metadata, inference, statistics")
    auth.add_argument("--admin-token-file", help="file with the bearer token for uploads and unloads")
    auth.add_argument("--tls-cert", help="TLS certificate chain (PEM)")
    auth.add_argument("--tls-key", help="TLS private key (PEM)")
    auth.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mutual TLS)")
    auth.add_argument("--insecure", action="store_true",
                      help="allow a non-loopback address without tokens or client certificates")
    p.add_argument("--drain-seconds", type=float, default=30.0,
                   help="on SIGTERM, how long requests in flight may finish (default 30)")
    p.add_argument("--name", default=None, help="the device's name in its device record (default: host name)")
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    from edgevit.agent.config import AgentConfig

    extra = {"name": args.name} if args.name else {}
    return AgentConfig(
        host=args.host, port=args.port, repository=args.repository, threads=args.threads,
        spin=True if args.spin else None,
        max_concurrent=args.max_concurrent, max_queue=args.max_queue, max_upload_mb=args.max_upload_mb,
        token_file=args.token_file, admin_token_file=args.admin_token_file, tls_cert=args.tls_cert,
        tls_key=args.tls_key, tls_client_ca=args.tls_client_ca, insecure=args.insecure,
        drain_seconds=args.drain_seconds, **extra,
    )


def run(args: argparse.Namespace) -> int:
    from edgevit.agent.server import serve

    return serve(config_from_args(args))
