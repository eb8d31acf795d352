"""``edgevit models [PATTERN]``: the zoo as a table (or JSON); no torch is imported."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo", description="List the model zoo.")
    p.add_argument("pattern", nargs="?", default="*", help="glob over model names, e.g. 'tiny_vit*'")
    p.add_argument("--all", action="store_true", help="include the tiny test_* models")
    p.add_argument("--info", action="store_true", help="print every field of each model's info")
    p.add_argument("--json", action="store_true", help="print every matching model's info as a JSON list")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgevit._table import format_table
    from edgevit.errors import UnknownNameError
    from edgevit.models import MODELS, list_models, model_info

    names = list_models(args.pattern, include_test=args.all or args.pattern.startswith("test"))
    if not names:
        close = MODELS.closest(args.pattern.strip("*"))
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UnknownNameError(f"no model matches {args.pattern!r}{hint}")
    if args.json:
        import json

        print(json.dumps([model_info(name).to_dict() for name in names], indent=1))
        return 0
    if args.info:
        for name in names:
            info = model_info(name)
            print(name)
            for key, value in info.to_dict().items():
                print(f"  {key}: {value}")
        return 0
    rows = []
    for name in names:
        info = model_info(name)
        size = f"{info.image_size}" + (" (fixed)" if info.fixed_size else "")
        rows.append((name, f"{info.params / 1e6:.2f}M", f"{info.gmacs:.3g}", size, info.family))
    print(format_table(["model", "params", "GMACs", "input", "family"], rows, align="lrrll"))
    return 0


def zoo_name(name: str, artifact_ok: bool = False) -> str:
    """``name`` as the zoo spells it (case-insensitive), checked before anything heavy is imported:
    a typo is refused in a fraction of a second, with the closest names, instead of after torch
    loads. With ``artifact_ok`` an existing path (an artifact folder or model file) passes as is."""
    from pathlib import Path

    from edgevit.models import MODELS

    if artifact_ok and Path(name).exists():
        return name
    return MODELS.canonical(name)
