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
        epilog="examples:\n  edgevit predict test_vit-onnx-fp32 --profile here-ort.json --top 10\n"
               "  edgevit predict test_vit-onnx-fp32 --profile here-ort.json --plot test_vit-here.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artifact", help="artifact folder, or an .onnx / .tflite file")
    p.add_argument("--profile", required=True, help="device profile (JSON) written by `edgevit devices probe`")
    p.add_argument("--top", type=int, default=10, help="the slowest kernels to list (default 10)")
    p.add_argument("--json", action="store_true", help="print the whole prediction as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw where the time goes (by kernel kind, the slowest kernels)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgevit._files import check_output_file
    from edgevit.predict import load_profile, predict

    if args.plot:
        check_output_file(args.plot, "--plot")
    prediction = predict(args.artifact, load_profile(args.profile))
    print(json.dumps(prediction.to_dict(), indent=1) if args.json else prediction.table(top=args.top))
    if args.plot:
        from edgevit.predict.plot import plot_prediction

        print(f"wrote {plot_prediction(prediction, args.plot, top=args.top)}")
    return 0
