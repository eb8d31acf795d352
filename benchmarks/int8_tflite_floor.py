"""How fast can int8 TFLite get on XNNPACK here? A probe of the floor (not a test).

``benchmarks/int8.py`` times edgevit's int8 artifacts, whose recipes keep some ops in float.
This probe asks what is left when as much as possible is int8. For each model (224 px, random
init, the torch model ``edgevit`` exports), three TFLite files are built and timed
interleaved in LiteRT (XNNPACK, 2 threads, batch 1):

* ``fp32``: the float file litert-torch writes;
* ``int8 conv/linear/add/mul``: every convolution, fully-connected layer, ADD and MUL in int8
  (the kinds edgevit's TFLite recipe quantizes by default), nothing kept float for accuracy;
* ``all int8, sigmoid GELU``: every GELU rewritten in torch as ``x * sigmoid(1.702 x)`` (int8
  LOGISTIC and MUL are XNNPACK kernels; int8 GELU is not), and every op kind XNNPACK takes in
  int8 quantized, LOGISTIC, MEAN and the like included.

Ops XNNPACK refuses are kept float by edgevit's quantizer in all files. The second file is the
best edgevit's default recipe could do; the third is about the most int8 XNNPACK can run.

Usage::

    python benchmarks/int8_tflite_floor.py     # writes benchmarks/results/int8_tflite_floor.md
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("cas_vit_xs", "tiny_vit_5m_224", "efficientformerv2_s0", "efficientformer_l1", "vit_tiny_patch16_224")
CALIB_SIZE = 32
GELU_K = 1.702
DEFAULT_KINDS = ("conv", "dwconv", "linear", "add", "mul")
#: the kinds XNNPACK runs in int8 (measured: BATCH_MATMUL, SOFTMAX, GELU and the LayerNorm arithmetic it does not)
XNNPACK_INT8_KINDS = DEFAULT_KINDS + ("other",)


def sigmoid_gelu(model):
    """A copy of ``model`` with every nn.GELU replaced by x * sigmoid(1.702 x); and the count."""
    from torch import nn

    class SigmoidApprox(nn.Module):  # the name must not contain "GELU": the quantizer classifies by module name
        def forward(self, x):
            return x * (GELU_K * x).sigmoid()

    model = copy.deepcopy(model)
    count = 0
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.GELU):
                setattr(module, name, SigmoidApprox())
                count += 1
    return model, count


def build(model_name: str, work: Path) -> tuple[dict[str, Path], int, dict[str, dict]]:
    import torch

    from edgevit.export.options import ExportOptions
    from edgevit.export.targets import get_target
    from edgevit.models import create_model, model_info
    from edgevit.precision import precision
    from edgevit.quantize.base import quiet
    from edgevit.quantize.calibration import calibration_set
    from edgevit.quantize.recipe import Recipe
    from edgevit.quantize.tflite import TfliteQuantizer

    torch.manual_seed(0)
    net = create_model(model_name).reparameterize().eval()
    rewritten, gelus = sigmoid_gelu(net)
    images = calibration_set("digits", CALIB_SIZE, model_info(model_name).preprocess.spec(224)).images
    files, reports = {}, {}
    for label, model, kinds in (("int8 conv/linear/add/mul", net, DEFAULT_KINDS),
                                ("all int8, sigmoid GELU", rewritten, XNNPACK_INT8_KINDS)):
        source = work / f"{len(files)}-float.tflite"
        with quiet():
            get_target("tflite").convert(model, torch.randn(1, 3, 224, 224),
                                         ExportOptions(target="tflite", precision="int8"), source)
        if not files:
            files["fp32"] = source
        quantizer = TfliteQuantizer(source, precision("int8"), work)
        quantizer.default_kinds = lambda kinds=kinds: kinds  # check every chosen kind for ops XNNPACK refuses
        quantizer.calibrate(images, "minmax")
        out = work / f"{len(files)}-int8.tflite"
        quantizer.build([u for u in quantizer.units() if u.kind in kinds], Recipe("int8"), out)
        quantizer.finish(out)
        files[label] = out
        reports[label] = quantizer.describe_file(out)
    return files, gelus, reports


def main(argv: list[str] | None = None) -> int:
    from edgevit.bench import BenchOptions, benchmark

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args(argv)
    lines = ["# int8 TFLite on XNNPACK: how far int8 alone goes", "",
             f"224 px, random init, LiteRT with XNNPACK, batch 1, 2 threads, {args.runs} interleaved rounds; "
             f"{CALIB_SIZE} digits images calibrate. See the script's docstring for the three files.", "",
             "| model | GELU modules | file | p50 ms | vs fp32 | size vs fp32 | int8 ops | XNNPACK | refused, kept float |",
             "|---|---:|---|---:|---:|---:|---:|---|---|"]
    for model in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            files, gelus, reports = build(model, Path(tmp))
            report = benchmark(list(files.values()),
                               BenchOptions(threads=2, runs=args.runs, warmup=5, memory=False, interleave=True))
            base, size = report.results[0].latency.p50_ms, files["fp32"].stat().st_size
            for (label, path), result in zip(files.items(), report.results):
                info = reports.get(label, {})
                refused = ", ".join(f"{op} x{n}" for op, n in (info.get("kept_float_refused_by_xnnpack") or {}).items())
                lines.append(f"| {model} | {gelus} | {label} | {result.latency.p50_ms:.2f} | "
                             f"{result.latency.p50_ms / base:.2f} | {path.stat().st_size / size:.3f} | "
                             f"{sum(info.get('int8_ops', {}).values()) or '-'} | {info.get('xnnpack_delegated', '-')} | "
                             f"{refused or '-'} |")
        print(f"{model}: done", file=sys.stderr, flush=True)
    lines += ["", f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}.", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8_tflite_floor.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
