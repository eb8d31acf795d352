"""``edgevit export MODEL --target onnx,tflite,coreml,executorch``: a thin skin over ``edgevit.export``.

The flags parse into one :class:`~edgevit.export.ExportOptions`; the command calls
:func:`edgevit.export.export_all`, prints each artifact's report, one summary table when
several were asked for, and how to load the result. Exit code 1 when any cell failed.
"""

from __future__ import annotations

import argparse
import sys

from edgevit.export.options import DEFAULT_DEPLOYMENT_TARGET, DEFAULT_OPSET, DEPLOYMENT_TARGETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="convert a model to ONNX, TFLite, Core ML or ExecuTorch and verify it",
        description="Convert a zoo model to ONNX, TFLite, Core ML or ExecuTorch from its reparameterized graph, run "
        "the artifact with edgevit's runtime and compare it with PyTorch.",
    )
    p.add_argument("model", help="zoo model name (see 'edgevit models')")
    p.add_argument("--target", default="onnx", help=target_help("; several separated by commas (default onnx)"))
    p.add_argument("--precision", default="fp32", help=precision_help(
        "; auto: export fp32 and int8 (where the target has it), time them here, keep the fastest that passed "
        "verification (int8 only when >= 5%% faster); several separated by commas (default fp32)"))
    p.add_argument("--weights", help="checkpoint file for the model (default: random init)")
    p.add_argument("--image-size", type=int, help="square input size (default: the model's)")
    p.add_argument("--num-classes", type=int, help="classifier size (default: the checkpoint's or the model's)")
    p.add_argument("--batch", default="1", help="fixed batch size, or 'dynamic' (onnx, coreml) (default 1)")
    p.add_argument("--out", default=".", help="folder to write <model>-<target>-<precision>/ into (default .)")
    p.add_argument("--no-verify", action="store_true", help="skip running the artifact against PyTorch")
    p.add_argument("--quiet", action="store_true", help="print only the artifact paths (and errors)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON list on stdout instead of the reports: per target and precision, the "
                        "artifact's path and manifest (verification, ops, quantization), or the error")
    p.add_argument("--channels-last", action="store_true", help="NHWC input (tflite)")
    p.add_argument("--deployment-target", default=DEFAULT_DEPLOYMENT_TARGET, choices=DEPLOYMENT_TARGETS,
                   help=f"Core ML minimum deployment target (default {DEFAULT_DEPLOYMENT_TARGET})")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, 18 or newer (default {DEFAULT_OPSET})")
    p.add_argument("--ort-format", action="store_true",
                   help="ONNX: also write model.ort, the file onnxruntime's mobile and minimal builds load (graph "
                        "optimized once, portable to ARM; on x86 in a full onnxruntime model.onnx is faster), "
                        "verified like model.onnx")
    p.add_argument("--name", help="artifact name instead of the model name")
    q = p.add_argument_group("quantization (int8, w8, w6, w4)")
    q.add_argument("--calib", default="digits", help="calibration images: a folder, or 'digits' (default digits)")
    q.add_argument("--calib-size", type=int, default=128, help="number of calibration images (default 128)")
    q.add_argument("--calib-method", default="minmax", choices=["minmax", "percentile", "entropy"],
                   help="activation ranges for int8 (default minmax)")
    q.add_argument("--max-drop", type=float, default=None, metavar="P",
                   help="keep the most sensitive layers in float until top-1 agreement with float on the "
                        "calibration set is within P points")
    q.add_argument("--onnx-int8-format", default="u8s8-reduced", choices=["u8s8-reduced", "u8u8", "u8s8"],
                   help="int8 ONNX weights: u8s8-reduced (7-bit, exact on every CPU; default), u8u8 (8-bit, exact "
                        "everywhere, slower on x86), u8s8 (8-bit, exact only on x86 with VNNI and on ARM: x86 "
                        "CPUs with only AVX2 or AVX-512 saturate its sums)")
    p.add_argument("--data", default=None,
                   help="labelled set (folder or 'digits'): report the artifact's and PyTorch's accuracy on its "
                        "validation split")
    p.set_defaults(run=run)


def options_from_args(args: argparse.Namespace):
    """The :class:`ExportOptions` the flags describe (target/precision: the first of each list)."""
    from edgevit.export import ExportOptions
    from edgevit.export.options import split_names

    precision = split_names(args.precision)[0]
    return ExportOptions(
        target=split_names(args.target)[0], precision="fp32" if precision == "auto" else precision, weights=args.weights,
        image_size=args.image_size, num_classes=args.num_classes, batch=args.batch, out=args.out,
        verify=not args.no_verify, quiet=args.quiet or args.json, channels_last=args.channels_last,
        deployment_target=args.deployment_target, opset=args.opset, name=args.name,
        calib=args.calib, calib_size=args.calib_size, calib_method=args.calib_method, max_drop=args.max_drop,
        data=args.data, onnx_int8_format=args.onnx_int8_format, ort_format=args.ort_format,
    )


def run(args: argparse.Namespace) -> int:
    from edgevit.cli.models import zoo_name

    args.model = zoo_name(args.model)  # before torch is imported
    from edgevit.export import export_all, summary_table

    options = options_from_args(args)
    several = len(args.target.split(",")) > 1 or len(args.precision.split(",")) > 1
    outcomes = export_all(args.model, targets=args.target, precisions=args.precision, options=options,
                          raise_errors=not several and not args.json)
    done = [o.artifact for o in outcomes if o.artifact is not None]
    failed = [o for o in outcomes if o.error is not None]
    if args.json:
        import json

        print(json.dumps([outcome_dict(o) for o in outcomes], indent=1, default=str))
        for o in failed:
            print(f"{type(o.error).__name__}: {o.target} {o.precision}: {o.error}", file=sys.stderr)
        return 1 if failed else 0
    if args.quiet:
        for artifact in done:
            print(artifact.path)
    else:
        for artifact in done:
            print(artifact.report())
            print()
        if several:
            print(summary_table(outcomes))
            print()
        if done:
            print(done[0].usage())
    for o in failed:
        print(f"{type(o.error).__name__}: {o.target} {o.precision}: {o.error}", file=sys.stderr)
    return 1 if failed else 0


def target_help(tail: str) -> str:
    """``--target`` help from the target registry (listing names imports no converter)."""
    from edgevit.export.targets import TARGETS

    return ", ".join(TARGETS.names()) + tail


def precision_help(tail: str = "; several separated by commas (default fp32)") -> str:
    """``--precision`` help from the one precision table, with the targets of each quantized one."""
    from edgevit.precision import ordered
    from edgevit.quantize.base import QUANTIZERS, supported_precisions

    parts = []
    for p in ordered():
        makers = [t for t in QUANTIZERS.names() if p.name in supported_precisions(t)]
        parts.append(f"{p.name}: {p.description}" + (f" [{', '.join(makers)}]" if p.quantized else ""))
    return "; ".join(parts) + tail


def outcome_dict(outcome) -> dict:
    """One export cell as plain data, for ``--json``."""
    data = {"model": outcome.model, "target": outcome.target, "precision": outcome.precision, "ok": outcome.ok,
            "seconds": round(outcome.seconds, 3)}
    if outcome.artifact is not None:
        data["path"] = str(outcome.artifact.path)
        data["manifest"] = outcome.artifact.manifest.to_dict()
    if outcome.error is not None:
        data["error"] = {"type": type(outcome.error).__name__, "message": str(outcome.error)}
    return data
