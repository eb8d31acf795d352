"""``edgevit run PLAN_DIR IMAGES... --devices devices.toml``: a split plan answered by its devices."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a split plan on its device agents (class-wise fan-out or pipeline)",
        description="Send each image to the plan's pieces on the device agents of a device file (edgevit serve "
                    "on each; edgevit deploy first), fuse or chain their answers on this machine, and print the "
                    "classes. A piece whose device fails is tried on a standby, hedged when slow, and a class-wise "
                    "sub-model that no device answers in time is left out: the answer is then marked degraded.",
        epilog="example:\n  edgevit deploy plan/ --devices fleet/devices.toml --replicas 1\n"
               "  edgevit run plan/ cat.png dog.png --devices fleet/devices.toml --deadline-ms 250",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("plan", help="plan folder written by edgevit split")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--devices", required=True, help="device file with each device's address (and token_file, tls_ca)")
    p.add_argument("--deadline-ms", type=float, default=1000.0, help="each image's end-to-end budget (default 1000)")
    p.add_argument("--no-hedge", action="store_true", help="do not send a second copy to a standby when slow")
    p.add_argument("--top-k", type=int, default=3, help="classes to print per image (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from edgevit.cluster.policy import Policy
    from edgevit.cluster.session import connect
    from edgevit.errors import InvalidArgumentError

    if args.top_k < 1:
        raise InvalidArgumentError(f"--top-k must be a positive integer, got {args.top_k}")
    policy = Policy(deadline_ms=args.deadline_ms, hedge=not args.no_hedge)
    failed = 0
    with connect(args.plan, args.devices, policy=policy) as session:
        for path, answer in zip(args.images, session.stream(args.images)):
            if not answer.ok:
                failed += 1
                print(f"{path}: no answer: {answer.error}", file=sys.stderr)
                continue
            scores = np.exp(answer.logits - answer.logits.max())
            scores /= scores.sum()
            top = np.argsort(-scores)[: args.top_k]
            labels = session.plan.labels
            if args.json:
                print(json.dumps({"image": path, "labels": [labels[i] for i in top],
                                  "scores": [round(float(scores[i]), 5) for i in top], "degraded": answer.degraded,
                                  "missing": list(answer.missing), "latency_ms": round(answer.latency_ms, 3),
                                  "pieces": answer.pieces}))
                continue
            classes = ", ".join(f"{labels[i]} {scores[i]:.3f}" for i in top)
            note = f"  DEGRADED (without {', '.join(answer.missing)})" if answer.degraded else ""
            where = ", ".join(f"{name}@{t['device']}" + (" hedged" if t["hedged"] else "")
                              + (" failed over" if t["failed_over"] else "") for name, t in answer.pieces.items())
            print(f"{path}: {classes}  ({answer.latency_ms:.1f} ms; {where}){note}")
        stats = session.stats()
    policy_counts = stats["policy"]
    print(f"{len(args.images) - failed}/{len(args.images)} answered; hedged {policy_counts['hedged']}, failed over "
          f"{policy_counts['failed_over']}, devices down: {', '.join(stats['down']) or 'none'}", file=sys.stderr)
    return 1 if failed else 0
