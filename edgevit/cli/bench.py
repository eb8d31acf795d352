"""``edgevit bench ARTIFACT [ARTIFACT ...]``: time artifacts side by side on this machine."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "bench",
        help="time exported artifacts (and optionally PyTorch eager) side by side",
        description=(
            "Load each artifact with the torch-free runtime and time it: cold load, first run, then "
            "min/p50/p90/p99/mean/std latency after warm-up, throughput, peak memory and file size, "
            "with the machine stamped. Models run interleaved so machine drift hits them equally."
        ),
    )
    parser.add_argument("artifacts", nargs="*", metavar="ARTIFACT", help="artifact folders or model files")
    parser.add_argument("--backend", default="auto", help=backend_help("runtime backend for every artifact", every=True))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per model (default: backend's)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per model (default 10)")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per model (default 100)")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument("--spin", action="store_true",
                        help="onnxruntime: intra-op threads spin between ops instead of blocking (faster when the "
                             "cores are free, slower when they are shared; default off)")
    parser.add_argument("--torch", metavar="MODEL", default=None, help="add zoo MODEL in PyTorch eager as the baseline")
    parser.add_argument(
        "--torch-threads",
        metavar="N[,N]",
        default=None,
        help="run the --torch baseline at these thread counts (e.g. 1,2); speed-ups are against its fastest",
    )
    parser.add_argument("--json", metavar="FILE", help="write every measurement (and the raw timings) as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write one CSV row per model")
    parser.add_argument("--plot", metavar="FILE.png", help="write a latency-distribution plot")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-model subprocess (cold start, memory)")
    parser.add_argument("--sequential", action="store_true", help="time models one after another, not interleaved")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    remote = parser.add_argument_group("on a device (through its agent, edgevit serve)")
    from edgevit.cli.deploy import add_connection_arguments

    add_connection_arguments(remote, admin=False, required=False)
    remote.add_argument("--device", help="instead of --url: a device of --devices (its address, token_file, tls_ca)")
    remote.add_argument("--devices", help="the device file --device is read from")
    parser.add_argument("--keep-fastest", action="store_true",
                        help="with --backend all: record in each artifact folder which backend was fastest here "
                             "(backend_choice.json); runtime.load(..., backend='auto') then uses it on this machine")
    remote.add_argument("--compare", action="store_true",
                        help="with --url or --device: time each artifact on this machine too, in the same table")
    parser.set_defaults(run=run)


def backend_help(what: str, every: bool = False) -> str:
    """``--backend`` help naming the registered backends (a plugin's too) and the file types they run."""
    from edgevit.runtime import BACKENDS

    names = []
    for name in BACKENDS.names():
        try:
            names.append(f"{name} ({', '.join(BACKENDS.get(name).suffixes)})")
        except (ImportError, AttributeError):  # a backend module that does not import is not offered
            continue
    every_one = "all (every installed backend that opens the file, side by side), " if every else ""
    return (f"{what}: auto (default: by file type, the fastest measured here with bench --keep-fastest, else the "
            f"preferred one installed), {every_one}or one of {', '.join(names)}")


def run(args: argparse.Namespace) -> int:
    from edgevit._files import check_output_file, write_or_rescue
    from edgevit.bench.report import write_csv, write_json
    from edgevit.bench.runner import BenchOptions, benchmark

    outputs = {"--json": args.json, "--csv": args.csv, "--plot": args.plot}
    for option, path in outputs.items():
        if path:
            check_output_file(path, option)

    from edgevit.errors import InvalidArgumentError

    artifacts: list = list(args.artifacts)
    if args.keep_fastest and args.backend != "all":
        raise InvalidArgumentError("--keep-fastest records the fastest of several backends: add --backend all")
    if args.backend == "all":
        if args.url is not None or args.device is not None:
            raise InvalidArgumentError("--backend all times the backends of this machine; a device's agent picks its "
                                       "own backend by file type (leave out --url/--device)")
        from edgevit.bench.runner import every_backend

        artifacts = every_backend(artifacts)
    options = BenchOptions(
        backend="auto" if args.backend == "all" else args.backend,
        threads=args.threads,
        warmup=args.warmup,
        runs=args.runs,
        batch=args.batch,
        memory=not args.no_memory,
        interleave=not args.sequential,
        spin=True if args.spin else None,
    )
    report = benchmark(
        artifacts,
        options,
        torch_model=args.torch,
        torch_threads=_counts(args.torch_threads),
        progress=False if args.quiet else None,
        remote=_remote(args),
        compare=args.compare,
    )
    print(report.table())
    if args.keep_fastest:
        from edgevit.bench.runner import keep_fastest

        for folder, fastest, p50 in keep_fastest(report):
            timed = ", ".join(f"{name} {ms:.3g} ms" for name, ms in sorted(p50.items(), key=lambda kv: kv[1]))
            print(f"kept: {folder.name} runs with {fastest} under backend='auto' on this machine (p50 {timed}); "
                  f"recorded in {folder / 'backend_choice.json'}")
    writers = {"--json": write_json, "--csv": write_csv}
    if args.plot:
        from edgevit.bench.plot import plot_latency

        writers["--plot"] = plot_latency
    for option, path in outputs.items():
        if not path:
            continue
        print(f"wrote {write_or_rescue(path, lambda where, write=writers[option]: write(report, where))}")
    return 0


def _counts(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        from edgevit.errors import InvalidArgumentError

        raise InvalidArgumentError(f"--torch-threads takes positive integers separated by commas, got {text!r}")
    return counts


def _remote(args: argparse.Namespace) -> dict | None:
    from edgevit.cli.deploy import connection
    from edgevit.errors import InvalidArgumentError

    if args.device is not None or args.devices is not None:
        if args.device is None or args.devices is None or args.url is not None:
            raise InvalidArgumentError("--device NAME needs --devices FILE (and no --url): the device's address, "
                                       "token and CA come from the device file")
        from edgevit.devices import load_devices

        device = load_devices(args.devices).device(args.device)
        if device.address is None:
            raise InvalidArgumentError(f"device {device.name!r} in {args.devices} has no address; add "
                                       "address = \"host:port\" of its agent")
        return {"url": device.address, "token_file": device.token_file or args.token_file,
                "tls_ca": device.tls_ca or args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key}
    if args.url is None:
        if args.compare:
            from edgevit.errors import InvalidArgumentError

            raise InvalidArgumentError("--compare compares this machine with a device: give the device's --url")
        return None
    return {"url": args.url, **connection(args)}
