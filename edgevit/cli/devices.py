"""``edgevit devices probe (--local | --url HOST:PORT | NAME --devices FILE) -o PROFILE``: measure a device's profile for the predictor;
``edgevit devices merge PROFILE... -o PROFILE``: one profile from probes of a device taken at several times."""

from __future__ import annotations

import argparse

from edgevit.cli.deploy import add_connection_arguments, connection


def add_parser(sub) -> None:
    p = sub.add_parser("devices", help="device profiles: probe a device for the latency predictor",
                       description="Work with device profiles (edgevit.predict).")
    commands = p.add_subparsers(dest="devices_command", metavar="SUBCOMMAND", required=True,
                                help="probe: time a device and write its profile; merge: combine probes of one device")
    probe = commands.add_parser(
        "probe",
        help="time the calibration kernels on this machine or a device agent and write its profile",
        description="Export small calibration models (the kernels vision transformers are made of), time each on "
                    "this machine (--local) or on a device agent (--url, device-side timings), and write a device "
                    "profile (JSON) that `edgevit predict` reads.",
        epilog="examples:\n  edgevit devices probe --local --backend onnxruntime --threads 2 -o here-ort.json\n"
               "  edgevit devices probe --url pi-a.local:8001 --token-file admin-token -o pi-a-ort.json\n"
               "  edgevit devices probe pi-a --devices devices.toml --backend litert -o pi-a-litert.json\n"
               "  edgevit devices probe --local --reference cas_vit_xs-onnx-fp32 --reference vit_tiny-onnx-fp32 -o here.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probe.add_argument("name", nargs="?", metavar="DEVICE",
                       help="a device of --devices: probe its agent at the address (and token_file, tls_ca) the file gives")
    probe.add_argument("--devices", metavar="FILE", help="device file naming DEVICE (default: none; or give --url or --local)")
    probe.add_argument("--local", action="store_true", help="time in this process (or give --url, or DEVICE --devices)")
    add_connection_arguments(probe, admin=True, required=False)
    probe.add_argument("--backend", default="onnxruntime", help="onnxruntime (ONNX files) or litert (TFLite files)")
    probe.add_argument("--preset", default="standard", help="calibration set: standard (135 fp32 kernels, 252 models "
                                                            "with their chains; int8 adds 60 and 116) or quick")
    probe.add_argument("--precisions", default="fp32", help="fp32, or fp32,int8 to time the int8 linear and conv kernels too")
    probe.add_argument("--rounds", type=int, default=20, help="timed runs per model (the profile keeps the median)")
    probe.add_argument("--warmup", type=int, default=3, help="untimed runs before them")
    probe.add_argument("--passes", type=int, default=3, help="sweeps over the set in shuffled orders; each kernel keeps "
                                                            "the median of its passes (1-20; a drifting device needs 3+)")
    probe.add_argument("--window-ms", type=float, default=100.0,
                       help="time each model back to back for at least this long and keep the mean run (0-10000)")
    probe.add_argument("--chain", type=int, default=4, help="also time chains of this many copies of a kernel, to tell "
                                                           "its cost inside a model from its cost alone (1-16; 1: none)")
    probe.add_argument("--threads", type=int, help="backend CPU threads (--local; an agent uses its own setting)")
    probe.add_argument("--device", help="the profile's device name (--local; default: this host's name)")
    probe.add_argument("-o", "--out", required=True, help="the profile file to write (JSON)")
    probe.add_argument("--workdir", help="keep the calibration models in this folder and reuse them when probing the "
                                         "next device with the same backend (it then costs only the timing)")
    probe.add_argument("--seed", type=int, help="shuffle the first pass too, with this seed (for one-pass probes "
                                                "taken at several times and merged; default: the set's order)")
    probe.add_argument("--reference", action="append", default=[], metavar="ARTIFACT",
                       help="an exported model of the backend's target (repeatable): timed in the same passes and kept "
                            "in the profile, whose predictions are then scaled by how its models measured against their "
                            "kernels (one model per family and precision you predict; random weights do)")
    probe.add_argument("--idle-gap-ms", type=float, default=20.0,
                       help="after the passes, also time 24 calibration models of spread sizes and each reference "
                            "one request at a time, each after this long idle, so that predictions give a model's "
                            "time when asked once in a while, as split pieces are (0-10000; 0: not)")
    probe.add_argument("--quiet", action="store_true", help="no progress display")
    probe.set_defaults(run=run)
    merge = commands.add_parser(
        "merge",
        help="one profile from probes of the same device taken at several times (each timing their median)",
        description="Merge device profiles of one device and backend, probed with the same settings at several "
                    "times: each kernel's timing becomes the median over the profiles, and their passes add up. A "
                    "device that drifts over minutes (a shared VM, a throttling board) is then priced over its "
                    "phases, not in the one phase a single probe caught.",
        epilog="example:\n  for i in 1 2 3; do edgevit devices probe --local --passes 1 --seed $i -o p$i.json; "
               "sleep 600; done\n  edgevit devices merge p1.json p2.json p3.json -o here-ort.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    merge.add_argument("profiles", nargs="+", metavar="PROFILE", help="profile files of one device and backend")
    merge.add_argument("-o", "--out", required=True, help="the merged profile file to write (JSON)")
    merge.set_defaults(run=run_merge)


def run(args: argparse.Namespace) -> int:
    from edgevit._files import check_output_file
    from edgevit.errors import InvalidArgumentError
    from edgevit.predict import save_profile
    from edgevit.probe import probe_local, probe_remote

    if (args.name is None) != (args.devices is None):
        raise InvalidArgumentError("a device is probed by name with its device file: give both DEVICE and --devices FILE")
    if sum((args.local, args.url is not None, args.name is not None)) != 1:
        raise InvalidArgumentError("say where to probe: exactly one of --local (this machine), --url HOST:PORT "
                                   "(a device agent) or DEVICE --devices FILE (the agent a device file names)")
    if args.name is not None:
        _from_device_file(args)
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    if not precisions or set(precisions) - {"fp32", "int8"}:
        raise InvalidArgumentError(f"--precisions takes fp32 and int8, comma-separated; got {args.precisions!r}")
    check_output_file(args.out, "--out")  # before minutes of probing
    options = {"preset": args.preset, "precisions": precisions, "rounds": args.rounds, "warmup": args.warmup,
               "passes": args.passes, "chain": args.chain, "seed": args.seed, "references": tuple(args.reference),
               "window_ms": args.window_ms, "idle_gap_ms": args.idle_gap_ms, "workdir": args.workdir, "progress": False if args.quiet else None}
    if args.local:
        result = probe_local(args.backend, threads=args.threads, device=args.device, **options)
    else:
        if args.threads is not None or args.device is not None:
            raise InvalidArgumentError("--threads and --device apply to --local; an agent reports its own")
        given = {key: value for key, value in connection(args).items() if value is not None}
        result = probe_remote(args.url, args.backend, **given, **options)
    path = save_profile(result.profile, args.out)
    for kernel, why in result.skipped:
        print(f"skipped {kernel.describe()}: {why}")
    print(f"{result.profile.summary()}; probed in {result.seconds:.0f} s")
    print(f"wrote {path}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from edgevit._files import check_output_file
    from edgevit.predict import load_profile, merge_profiles, save_profile

    check_output_file(args.out, "--out")
    merged = merge_profiles([load_profile(path) for path in args.profiles])
    path = save_profile(merged, args.out)
    print(f"{merged.summary()}; merged from {len(args.profiles)} profiles")
    print(f"wrote {path}")
    return 0


def _from_device_file(args: argparse.Namespace) -> None:
    """Fill ``args.url`` and the connection files from the device file's entry for ``args.name``."""
    from edgevit.devices import load_devices
    from edgevit.errors import InvalidArgumentError

    device = load_devices(args.devices).device(args.name)
    if device.address is None:
        raise InvalidArgumentError(f"device {args.name!r} of {args.devices} has no address: add address = "
                                   "\"host:port\" (where its edgevit serve listens) to its entry, or probe it with --url")
    given = [flag for flag, value in (("--token-file", args.token_file), ("--tls-ca", args.tls_ca)) if value]
    if given:
        raise InvalidArgumentError(f"{' and '.join(given)} come from the device file for a device probed by name; "
                                   "drop them, or give --url instead of DEVICE --devices")
    args.url, args.token_file, args.tls_ca = device.address, device.token_file, device.tls_ca
