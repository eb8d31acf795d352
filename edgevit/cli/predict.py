"""``edgevit predict ARTIFACT --profile PROFILE``: an artifact's latency on a profiled device."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict an artifact's latency on a device from its profile",
        description="Read the artifact's ops, group them into kernels with the profile backend's fusion rules, and "
                    "predict its latency from the per-kernel costs fitted to the device profile "
                    "(`edgevit devices probe`). Ops not costed (unknown, or kinds the profile never timed) are listed.",
        epilog="example:\n  edgevit predict test_vit-onnx-fp32 --profile here-ort.json --top 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artifact", help="artifact folder, or an .onnx / .tflite file")
    p.add_argument("--profile", required=True, help="device profile (JSON) written by `edgevit devices probe`")
    p.add_argument("--top", type=int, default=10, help="the slowest kernels to list (default 10)")
    p.add_argument("--json", action="store_true", help="print the whole prediction as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgevit.predict import load_profile, predict

    prediction = predict(args.artifact, load_profile(args.profile))
    print(json.dumps(prediction.to_dict(), indent=1) if args.json else prediction.table(top=args.top))
    return 0
