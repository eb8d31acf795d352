"""Partition's memory model against real files: predicted weight bytes vs the artifact's size.

Placement decides whether a piece fits a device from its weight bytes at the export precision
(``edgevit.precision.Precision.weight_bytes``: parameters x bits / 8) plus an activation
estimate. This script exports zoo models at every precision each target makes and compares that
prediction with the bytes the artifact's files really take (``manifest.files``). The goal
(issue 14): within 10% for w8, w6 and w4.

Random-init weights (sizes do not depend on training), batch 1, verification off (sizes are the
point; the export matrix and the int8 table verify these cells). Quantized cells run the default
recipe, with its sensitivity pass; the recipe may keep some layers float, which is part of what
the prediction has to live with.

Usage::

    python benchmarks/memory_model.py                       # vit_tiny_patch16_224, cas_vit_xs
    python benchmarks/memory_model.py --models test_vit     # a quick look

Writes ``benchmarks/results/memory_model.md`` and ``.json`` after every cell; ``--resume`` keeps the
rows already there and measures the missing cells.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GOAL = 0.10
#: (target, precision) cells: every precision each target makes (Core ML int8 needs iOS17)
CELLS = (("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "fp16"),
         ("tflite", "int8"), ("tflite", "w8"), ("coreml", "fp32"), ("coreml", "fp16"), ("coreml", "int8"),
         ("coreml", "w8"), ("coreml", "w6"), ("coreml", "w4"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from edgevit.export import ExportOptions, export_all
    from edgevit.models import count_params, create_model
    from edgevit.precision import PRECISIONS

    torch.set_num_threads(2)
    json_path = RESULTS / "memory_model.json"
    rows = json.loads(json_path.read_text())["rows"] if args.resume and json_path.exists() else []
    done = {(row["model"], row["target"], row["precision"]) for row in rows if "error" not in row}
    load_before = os.getloadavg()
    for name in args.models:
        params = count_params(create_model(name))
        for target, precision in CELLS:
            if (name, target, precision) in done:
                continue
            with tempfile.TemporaryDirectory(prefix="edgevit-memory.") as out:
                options = ExportOptions(target=target, precision=precision, out=Path(out), verify=False, quiet=True,
                                        deployment_target="iOS17" if target == "coreml" else "iOS16")
                outcome = export_all(name, options=options, progress=False)[0]
                if outcome.error is not None:
                    rows.append({"model": name, "target": target, "precision": precision,
                                 "error": f"{type(outcome.error).__name__}: {outcome.error}"[:200]})
                    print(f"{name} {target} {precision}: {rows[-1]['error']}", file=sys.stderr, flush=True)
                    continue
                real = int(sum(outcome.artifact.manifest.files.values()))
            predicted = PRECISIONS.get(precision).weight_bytes(params)
            rows.append({"model": name, "params": params, "target": target, "precision": precision,
                         "predicted_bytes": predicted, "file_bytes": real, "ratio": round(real / predicted, 4)})
            print(f"{name} {target} {precision}: predicted {predicted / 1e6:.2f} MB, file {real / 1e6:.2f} MB "
                  f"({real / predicted:.3f}x)", file=sys.stderr, flush=True)
            write(rows, load_before)  # after every row: an interrupted run keeps what it measured
    print(report(write(rows, load_before)))
    return 0


def write(rows: list[dict], load_before: tuple[float, ...]) -> dict:
    data = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.processor() or
            platform.machine(), "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "goal": GOAL, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory_model.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "memory_model.md").write_text(report(data))
    return data


def report(data: dict) -> str:
    lines = ["# Partition's memory model against real files", "",
             f"Run {data['created']} on {data['machine']}; load average before {data['load_average_before']}, "
             f"after {data['load_average_after']}. Written by `benchmarks/memory_model.py`.", "",
             "Predicted: parameters x the precision's bits / 8 (`edgevit.precision`), the weight bytes placement "
             "uses. File: the bytes of the artifact's files. Goal: w8, w6 and w4 within "
             f"{data['goal']:.0%}.", "",
             "| model | target | precision | predicted MB | file MB | file / predicted | within 10% |",
             "|---|---|---|---:|---:|---:|---|"]
    for row in data["rows"]:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['target']} | {row['precision']} | | | | {row['error']} |")
            continue
        within = abs(row["ratio"] - 1) <= data["goal"]
        mark = " *" if row.get("from_progress_line") else ""
        lines.append(f"| {row['model']} | {row['target']} | {row['precision']}{mark} | "
                     f"{row['predicted_bytes'] / 1e6:.2f} | {row['file_bytes'] / 1e6:.2f} | {row['ratio']:.3f} | "
                     f"{'yes' if within else 'NO'} |")
    if any(row.get("from_progress_line") for row in data["rows"]):
        lines += ["", "\\* from the progress line of a run cut short by its time limit before it wrote its results "
                  "(file size to 10 kB, ratio to 3 decimals); `--resume` measured the remaining cells."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["vit_tiny_patch16_224", "cas_vit_xs"])
    parser.add_argument("--resume", action="store_true", help="keep the rows of the last run and measure the rest")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
