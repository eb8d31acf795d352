"""``edgevit eval MODEL_OR_ARTIFACT --data DIR|digits``: top-1/top-5 on a labelled set."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from edgevit.cli.bench import backend_help

    p = sub.add_parser(
        "eval",
        help="top-1/top-5 of a zoo model or an exported artifact on a labelled set",
        description="Evaluate a zoo model (through PyTorch) or an exported artifact (through the runtime).",
    )
    p.add_argument("model", help="zoo model name, or an artifact folder / model file")
    p.add_argument("--data", required=True, help="image folder (one sub-folder per class) or 'digits'")
    p.add_argument("--split", default="val", choices=["train", "val", "all"],
                   help="which part of --data to score; a folder without train/ and val/ is split 80/20 per class "
                        "(default val)")
    p.add_argument("--weights", default=None, help="weights for a zoo model")
    p.add_argument("--image-size", type=int, default=None,
                   help="build a zoo model at this size (default: the size recorded with --weights, else the model's)")
    p.add_argument("--backend", default="auto", help=backend_help("runtime backend for artifacts"))
    p.add_argument("--json", default=None, help="also write the result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgevit._files import check_output_file, write_json, write_or_rescue
    from edgevit.cli.models import zoo_name

    args.model = zoo_name(args.model, artifact_ok=True)  # before torch is imported
    from edgevit.evaluate import evaluate_source

    if args.json:
        check_output_file(args.json, "--json")
    result = evaluate_source(args.model, args.data, split=args.split, weights=args.weights,
                             image_size=args.image_size, backend=args.backend)
    print(f"{args.model} on {args.data} ({args.split}, {result['count']} images): "
          f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%")
    folder = Path(str(args.data))
    if args.split != "all" and folder.is_dir() and not (folder / args.split).is_dir():
        from edgevit.data.datasets import VAL_FRACTION

        share = VAL_FRACTION if args.split == "val" else 1 - VAL_FRACTION
        print(f"(the {args.split} split: a fixed {share:.0%} of each class of {args.data}, the part training held "
              f"{'out' if args.split == 'val' else 'in'}; --split all scores every image)")
    if args.json:
        write_or_rescue(args.json, lambda path: write_json(path, result))
    return 0
