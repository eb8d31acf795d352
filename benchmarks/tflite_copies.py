"""What a TFLite copy (TRANSPOSE, SLICE) costs inside a model, against what the predictor prices it at (issue 15, not a test)

The predictor over-prices the attention transposes of TFLite files (``predictor_quiet_here.md``:
TinyViT-5M +15.5%, ViT-Tiny +12.2%, their copies 7-17% of the prediction). This measures why,
in one process, with LiteRT (XNNPACK, 2 threads):

1. **In context.** Small models built from ViT-Tiny's attention at 224 px (197 tokens, 192
   channels, 3 heads), each in pairs that differ by one copy: the qkv linear alone and followed by
   the head transpose (and one q/k/v slice); an attention product alone and with a transpose before
   it; a product and the output linear, with and without the transpose between them. The added
   time of a pair is what the copy costs inside a model.
2. **Alone.** The probe's own calibration model of a copy (a 2-D transpose of the same sizes),
   timed as the probe times it (``session.run``: the input copied in, the output copied out) and
   as LiteRT's ``invoke`` alone.
3. **Priced.** With ``--profile``, the predictor's price of the same copies (the difference of the
   pair's predictions; the kernels' sum, no reference scale).

Every model is timed in the same rounds (``--runs``, order rotated); the claim is ratios: in
context / priced, and whole call / invoke alone.

Usage::

    python benchmarks/tflite_copies.py --profile /tmp/predbench/profiles/here-litert.json

Writes ``benchmarks/results/tflite_copies.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from latency import _write, log  # noqa: E402 - the latency benchmark's helpers

RESULTS = HERE / "results"
TOKENS, WIDTH, HEADS = 197, 192, 3
#: (pair name, the model without the copy, the model with it, what the copy is)
PAIRS = (
    ("qkv transpose", "fc", "fc+T", "TRANSPOSE of (197, 3, 3, 64) to (3, 1, 3, 197, 64): 113,472 floats"),
    ("q slice", "fc+T", "fc+T+slice", "SLICE of q from it: 37,824 floats"),
    ("transpose before a product", "bmm", "T+bmm", "TRANSPOSE (197, 3, 64) to (3, 197, 64): 37,824 floats"),
    ("transpose after a product", "bmm+fc", "bmm+T+fc", "TRANSPOSE (3, 197, 64) to (197, 3, 64): 37,824 floats"),
)
ALONE = (("2-D transpose, 37,824", (1, TOKENS, WIDTH)), ("2-D transpose, 113,472", (1, TOKENS, 3 * WIDTH)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgevit.environment import environment

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="edgevit-copies-") as work:
        files = build(Path(work))
        times = [measure(files, args) for _ in range(args.passes)]
        priced = price(files, args.profile) if args.profile else {}
    results = summarize(times, priced, args, environment(), load)
    args.out.with_suffix(".json").parent.mkdir(parents=True, exist_ok=True)
    _write(args.out.with_suffix(".json"), json.dumps(results, indent=1) + "\n")
    _write(args.out.with_suffix(".md"), markdown(results))
    log(f"wrote {args.out}.md and .json")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="timed rounds (every model once per round)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--passes", type=int, default=5, help="passes of --runs rounds; the claim is the median over them")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", type=Path, help="a LiteRT device profile of this machine, for the prices")
    parser.add_argument("--out", type=Path, default=RESULTS / "tflite_copies")
    return parser.parse_args(argv)


def build(work: Path) -> dict[str, Path]:
    """The TFLite files: the in-context variants and the alone transposes."""
    import litert_torch
    import torch

    torch.manual_seed(0)
    hd = WIDTH // HEADS
    qkv, proj = torch.nn.Linear(WIDTH, 3 * WIDTH), torch.nn.Linear(WIDTH, WIDTH)
    scores = torch.randn(HEADS, TOKENS, TOKENS) * 0.01

    def heads(x):
        return qkv(x).reshape(1, TOKENS, 3, HEADS, hd).permute(2, 0, 3, 1, 4)

    variants = {
        "fc": (lambda x: qkv(x), (1, TOKENS, WIDTH)),
        "fc+T": (heads, (1, TOKENS, WIDTH)),
        "fc+T+slice": (lambda x: heads(x)[0], (1, TOKENS, WIDTH)),
        "bmm": (lambda x: scores @ x.reshape(HEADS, TOKENS, hd), (1, TOKENS, WIDTH)),
        "T+bmm": (lambda x: scores @ x.reshape(TOKENS, HEADS, hd).transpose(0, 1), (1, TOKENS, WIDTH)),
        "bmm+fc": (lambda x: proj((scores @ x.reshape(HEADS, TOKENS, hd)).reshape(1, TOKENS, WIDTH)), (1, TOKENS, WIDTH)),
        "bmm+T+fc": (lambda x: proj((scores @ x.reshape(HEADS, TOKENS, hd)).transpose(0, 1).reshape(1, TOKENS, WIDTH)),
                     (1, TOKENS, WIDTH)),
        **{name: (lambda x: x.transpose(1, 2), shape) for name, shape in ALONE},
    }

    class Module(torch.nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body, self.qkv, self.proj = body, qkv, proj

        def forward(self, x):
            return self.body(x)

    files = {}
    for name, (body, shape) in variants.items():
        path = work / f"{len(files):02d}.tflite"
        litert_torch.convert(Module(body).eval(), (torch.randn(*shape),)).export(str(path))
        files[name] = path
    return files


def measure(files: dict[str, Path], args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """``{model: {"call": [...], "invoke": [...]}}`` in ms: a whole ``session.run`` and LiteRT's ``invoke`` alone."""
    from edgevit import runtime

    sessions = {name: runtime.load(path, backend="litert", threads=args.threads) for name, path in files.items()}
    feeds = {name: {s.input_specs[0].name: np.random.default_rng(0).standard_normal(s.input_specs[0].shape)
                    .astype(np.float32)} for name, s in sessions.items()}
    interpreters = {name: s.backend_model.interpreter for name, s in sessions.items()}  # the session's own
    samples = {name: {"call": [], "invoke": []} for name in files}
    order = list(files)
    for index in range(args.warmup + args.runs):
        shift = index % len(order)
        for name in order[shift:] + order[:shift]:
            start = time.perf_counter_ns()
            sessions[name].run(feeds[name])
            middle = time.perf_counter_ns()
            interpreters[name].invoke()
            end = time.perf_counter_ns()
            if index >= args.warmup:
                samples[name]["call"].append((middle - start) / 1e6)
                samples[name]["invoke"].append((end - middle) / 1e6)
    return samples


def price(files: dict[str, Path], profile_path: Path) -> dict[str, float]:
    """The predictor's kernels' sum (no reference scale) of every file, from ``profile_path``."""
    from edgevit.predict import fit, load_profile, predict

    profile = load_profile(profile_path)
    model = fit(replace(profile, references=()))
    return {name: predict(path, model).total_ms for name, path in files.items()}


def summarize(times, priced, args, env, load) -> dict:
    """Each pass's medians; a figure is the median over the passes (``*_passes``: each pass's)."""
    per_pass = [{name: {how: float(np.median(v)) for how, v in t.items()} for name, t in one.items()} for one in times]
    median = {name: {how: float(np.median([p[name][how] for p in per_pass])) for how in ("call", "invoke")}
              for name in per_pass[0]}
    pairs = []
    for pair, without, with_copy, what in PAIRS:
        added = [p[with_copy]["invoke"] - p[without]["invoke"] for p in per_pass]
        row = {"pair": pair, "copy": what, "without": without, "with": with_copy,
               "in_context_ms": float(np.median(added)), "in_context_passes_ms": added}
        if priced:
            row["priced_ms"] = priced[with_copy] - priced[without]
            row["in_context_over_priced"] = row["in_context_ms"] / row["priced_ms"] if row["priced_ms"] > 0 else None
        pairs.append(row)
    alone = [{"model": name, "call_ms": median[name]["call"], "invoke_ms": median[name]["invoke"],
              "call_over_invoke": median[name]["call"] / median[name]["invoke"],
              **({"priced_ms": priced[name]} if priced else {})} for name, _ in ALONE]
    return {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average_start": load,
            "load_average_end": os.getloadavg()[0], "cpu": env.cpu_model, "cpu_features": _features(),
            "environment": env.to_dict(),
            "runs": args.runs, "passes": args.passes, "threads": args.threads, "profile": str(args.profile or ""),
            "median_ms": median, "pairs": pairs, "alone": alone}


def _features() -> list[str]:
    from edgevit.environment import cpu_flags

    return sorted(f for f in cpu_flags() if f.startswith(("avx", "fma", "amx")))


def markdown(r: dict) -> str:
    lines = [
        "# TFLite copies: inside a model, alone, and as priced (issue 15)", "",
        f"Written by `benchmarks/tflite_copies.py` on {r['utc']}. CPU: {r['cpu']} ({', '.join(r['cpu_features'])}); LiteRT (XNNPACK), {r['threads']} "
        f"threads; {r['passes']} passes of {r['runs']} rounds, every model once per round, order rotated, each "
        f"figure the median over the passes of each pass's median; load average "
        f"{r['load_average_start']:.2f} at the start, {r['load_average_end']:.2f} at the end. Medians. Priced: the "
        f"predictor's kernels' sum (no reference scale) from `{r['profile'] or 'no profile'}`.", "",
        "## A copy inside a model", "",
        "The added `invoke` time of a model with the copy over the same model without it.", "",
        "| copy | pair | in context ms | passes ms | priced ms | in context / priced |", "|---|---|---:|---|---:|---:|",
    ]
    for p in r["pairs"]:
        ratio = p.get("in_context_over_priced")
        spread = " / ".join(f"{v:.4f}" for v in p["in_context_passes_ms"])
        lines.append(f"| {p['copy']} | {p['without']} → {p['with']} | {p['in_context_ms']:.4f} | {spread} | "
                     f"{p.get('priced_ms', float('nan')):.4f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    lines += ["", "## The probe's calibration model of a copy, alone", "",
              "| model | whole call ms (how the probe times it) | `invoke` alone ms | call / invoke | priced ms |",
              "|---|---:|---:|---:|---:|"]
    for a in r["alone"]:
        lines.append(f"| {a['model']} floats | {a['call_ms']:.4f} | {a['invoke_ms']:.4f} | {a['call_over_invoke']:.2f} | "
                     f"{a.get('priced_ms', float('nan')):.4f} |")
    lines += ["", "## Every model", "", "| model | whole call ms | `invoke` ms |", "|---|---:|---:|"]
    lines += [f"| {name} | {m['call']:.4f} | {m['invoke']:.4f} |" for name, m in r["median_ms"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
