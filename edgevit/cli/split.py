"""``edgevit split MODEL --devices devices.toml --out DIR``: split a model across edge devices."""

from __future__ import annotations

import argparse

from edgevit.cli.export import precision_help, target_help

DEVICE_FILE_HELP = """device file (TOML), one [[device]] table per device:
  name = "pi-a"; memory_mb = 256; speed = 0.25 (relative to this machine) or gmacs_per_s = 12.0
  or profile = "profiles/pi-a-onnxruntime.json" (edgevit devices probe; relative to the file);
  speed_origin = "where the figure came from"; link_mbps = 100; link_latency_ms = 2.0"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from edgevit.split.options import GROUPINGS, TIMINGS, SplitOptions

    defaults = SplitOptions()
    p = sub.add_parser(
        "split",
        help="split a model across edge devices (ED-ViT class-wise sub-models, or pipeline stages)",
        description="Split a model across the devices of a device file and write a plan folder: one exported "
        "artifact per sub-model or stage, the fusion head (classwise), and plan.json with classes, devices, sizes, "
        "MACs and predicted latencies. Run it locally with edgevit.cluster.local.run_local(DIR, images).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="zoo model name (edgevit models)")
    p.add_argument("--devices", required=True, help=DEVICE_FILE_HELP)
    p.add_argument("--out", required=True, help="plan folder to write (replaced atomically)")
    p.add_argument("--data", default=None, help="image folder (one sub-folder per class) or 'digits'; "
                   "required by classwise")
    p.add_argument("--strategy", default="classwise", help="classwise (ED-ViT) or pipeline (default classwise)")
    p.add_argument("--weights", default=None, help="trained weights (required by classwise); edgevit train writes them")
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the weights' recorded size)")
    p.add_argument("--target", default=defaults.target, help=target_help(f" (default {defaults.target})"))
    p.add_argument("--precision", default=defaults.precision,
                   help="every piece's precision: " + precision_help(
                       f"; quantized ones are calibrated on the --data training images (default {defaults.precision})"))
    p.add_argument("--grouping", default=defaults.grouping, choices=GROUPINGS, help=f"class split (classwise; default {defaults.grouping})")
    p.add_argument("--reduction", type=float, default=defaults.reduction,
                   help="parameter reduction of each sub-model (classwise; default %(default)s)")
    p.add_argument("--prune-steps", type=int, default=defaults.prune_steps,
                   help=f"prune/recover rounds per sub-model (classwise; default {defaults.prune_steps})")
    p.add_argument("--recover-epochs", type=int, default=defaults.recover_epochs,
                   help=f"distillation epochs after each pruning round (default {defaults.recover_epochs})")
    p.add_argument("--fusion-epochs", type=int, default=defaults.fusion_epochs,
                   help=f"training epochs of the fusion head (classwise; default {defaults.fusion_epochs})")
    p.add_argument("--fusion-drop", type=float, default=defaults.fusion_drop,
                   help="probability that a sub-model's features are dropped while the fusion head trains, so it "
                   "still answers when devices are down (classwise; default %(default)s, 0: never)")
    p.add_argument("--threads", type=int, default=defaults.threads, help=f"threads when timing pieces (default {defaults.threads})")
    p.add_argument("--timing", default=defaults.timing, choices=TIMINGS,
                   help="runtime: time the exported pieces with edgevit.runtime in a fresh process (default); "
                   "pytorch: PyTorch eager only")
    p.add_argument("--no-verify", action="store_true", help="do not run the exported plan against PyTorch")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgevit.cli.models import zoo_name

    args.model = zoo_name(args.model)  # before torch is imported
    from edgevit.split.api import split
    from edgevit.split.options import SplitOptions

    options = SplitOptions(
        strategy=args.strategy, target=args.target, precision=args.precision, grouping=args.grouping,
        reduction=args.reduction, prune_steps=args.prune_steps, recover_epochs=args.recover_epochs,
        fusion_epochs=args.fusion_epochs, fusion_drop=args.fusion_drop, threads=args.threads, timing=args.timing,
        verify=not args.no_verify,
    )
    plan = split(args.model, args.data, args.devices, args.out, options, weights=args.weights,
                 image_size=args.image_size, progress=False if args.quiet else None)
    print(summary(plan, args.out))
    return 0


def summary(plan, out) -> str:
    """The plan as a table, then the predicted latency and the accuracy."""
    from edgevit._table import format_table

    rows = []
    for piece in plan.pieces:
        what = ",".join(plan.labels[c] for c in piece.classes) if piece.classes is not None else \
            f"{piece.span[0] or 'input'} .. {piece.span[1] or 'logits'}"
        rows.append([piece.name, what, piece.device, f"{piece.cost['params']:,}",
                     f"{plan.model['params'] / piece.cost['params']:.1f}x", f"{piece.cost['macs'] / 1e6:.2f}",
                     f"{piece.cost['memory_bytes'] / 1e6:.2f}", f"{piece.predicted.get('compute_ms', 0):.2f}"])
    table = format_table(["piece", "classes" if plan.strategy == "classwise" else "span", "device", "params",
                          "smaller", "MMACs", "memory MB", "compute ms"], rows)
    latency = plan.latency
    lines = [f"wrote {out} ({plan.strategy}, {len(plan.pieces)} pieces, {plan.target} {plan.precision})", table]
    line = (f"predicted end-to-end {latency['end_to_end_ms']:.2f} ms = measured compute {latency['measured_part_ms']:.2f}"
            f" ms + modelled transfers {latency['modelled_part_ms']:.2f} ms")
    if latency.get("unsplit_device_ms"):
        line += f"; unsplit on {latency['unsplit_device']}: {latency['unsplit_device_ms']:.2f} ms"
    if "bottleneck_ms" in latency:
        line += f"; stream: {latency['frames_per_second']:.1f} frames/s (slowest stage {latency['bottleneck_ms']:.2f} ms)"
    lines.append(line)
    lines.append(f"compute measured with {latency.get('measured_on', '?')}")
    for device, profile in (latency.get("profiles") or {}).items():
        lines.append(f"compute on {device} predicted from its profile {profile.get('profile')} "
                     f"({profile.get('summary', profile.get('backend'))}; predictor version "
                     f"{profile.get('predictor_version')})")
    acc = plan.accuracy
    if acc.get("unsplit_top1") is not None:
        text = f"validation top-1 ({acc['images']} images): unsplit {acc['unsplit_top1']:.2f}%"
        if acc.get("fused_top1") is not None:
            text += f", fused {acc['fused_top1']:.2f}%"
        exported = acc.get("exported", {})
        if "top1" in exported:
            text += f", exported plan {exported['top1']:.2f}% (agrees with PyTorch on {exported['agreement_with_pytorch']:.1%})"
        lines.append(text)
    if acc.get("degraded"):
        lines.append("with one sub-model missing: " + ", ".join(f"{name} {top1:.2f}%"
                                                              for name, top1 in acc["degraded"].items()))
    lines += [f"warning: {text}" for text in plan_warnings(plan)]
    return "\n".join(lines)


def plan_warnings(plan) -> list[str]:
    """What a user should not miss: devices the plan leaves idle, times predicted from a profile that
    are lower bounds, a plan predicted slower than the unsplit model on one device."""
    warnings = []
    given = [d.get("name") for d in plan.devices.get("device", []) if d.get("name")]
    used = {piece.device for piece in plan.pieces}
    idle = [name for name in given if name not in used]
    if idle:
        warnings.append(f"the plan uses {len(used)} of the {len(given)} devices given; {', '.join(idle)} "
                        f"{'is' if len(idle) == 1 else 'are'} left idle (too little memory, or more devices than "
                        "pieces are worth: see the table)")
    for piece in plan.pieces:
        source = piece.predicted.get("compute_from") or {}
        if source.get("from") == "profile" and not source.get("complete", True):
            what = ", ".join(f"{op} x{count}" for op, count in (source.get("not_costed") or {}).items())
            warnings.append(f"the compute time of {piece.name} on {piece.device} is a lower bound: the predictor "
                            f"could not cost {what}")
    latency = plan.latency
    split_ms, unsplit_ms = latency.get("end_to_end_ms"), latency.get("unsplit_device_ms")
    if split_ms and unsplit_ms and split_ms > unsplit_ms:
        warnings.append(f"the plan is predicted {split_ms / unsplit_ms:.1f}x slower end to end than the unsplit model on "
                        f"{latency.get('unsplit_device', 'one device')} ({split_ms:.2f} ms against {unsplit_ms:.2f} ms)"
                        + ("; a pipeline pays off in frames per second, not in latency" if plan.strategy == "pipeline"
                           else ""))
    return warnings
