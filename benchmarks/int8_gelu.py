"""Why int8 ONNX is not 0.6x fp32 on the convolutional ViTs: a probe (not a test).

For each model, the fp32 ONNX artifact that ``benchmarks/int8.py`` timed (224 px,
random init) is rewritten so that every GELU (opset 18: Div/Erf/Add/Mul/Mul) becomes
``x * sigmoid(1.702 x)``, whose Mul and Sigmoid have int8 kernels in onnxruntime. The
rewritten graph is then quantized whole (static QDQ, per-channel int8 weights, uint8
activations, 32 digits images), with nothing kept in float. Four files are timed interleaved
in onnxruntime (2 threads, sequential, no spinning, batch 1): fp32, edgevit's int8 artifact,
fp32 with the rewritten GELU, and the rewritten graph all in int8.

If even the all-int8 graph misses 0.6x, the float GELU is not the only cause: what is left is
the speed of onnxruntime's integer kernels themselves on these small convolutions.

Usage::

    python benchmarks/int8.py --phase latency      # makes the artifacts first
    python benchmarks/int8_gelu.py                  # writes benchmarks/results/int8_gelu.md
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("cas_vit_xs", "tiny_vit_5m_224", "efficientformerv2_s0")
GELU_K = 1.702


def rewrite_gelu(model):
    """Replace every Div/Erf/Add/Mul/Mul GELU by Mul(x, 1.702) -> Sigmoid -> Mul(x, .); returns the count."""
    from onnx import helper, numpy_helper

    graph = model.graph
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    producer = {out: node for node in graph.node for out in node.output}
    graph.initializer.append(numpy_helper.from_array(np.array(GELU_K, np.float32), "gelu_probe_k"))
    replace, drop = {}, set()
    for i, erf in enumerate(n for n in graph.node if n.op_type == "Erf"):
        div = producer[erf.input[0]]
        add = consumers[erf.output[0]][0]
        half = consumers[add.output[0]][0]
        final = consumers[half.output[0]][0]
        kinds = (div.op_type, add.op_type, half.op_type, final.op_type)
        if kinds != ("Div", "Add", "Mul", "Mul"):
            raise ValueError(f"unexpected GELU pattern around {erf.name}: {kinds}")
        x = div.input[0]
        drop.update(id(n) for n in (div, erf, add, half))
        replace[id(final)] = [
            helper.make_node("Mul", [x, "gelu_probe_k"], [f"gelu_probe_s{i}"], name=f"gelu_probe_mul{i}"),
            helper.make_node("Sigmoid", [f"gelu_probe_s{i}"], [f"gelu_probe_g{i}"], name=f"gelu_probe_sigmoid{i}"),
            helper.make_node("Mul", [x, f"gelu_probe_g{i}"], [final.output[0]], name=f"gelu_probe_out{i}"),
        ]
    nodes = []
    for node in graph.node:
        if id(node) in replace:
            nodes += replace[id(node)]
        elif id(node) not in drop:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replace)


def quantize_all(source: Path, out: Path, images: np.ndarray, work: Path) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(source), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{name: images[i:i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.feeds, None)

    prepared = work / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def probe(model: str, work: Path, runs: int) -> dict:
    import onnx

    from edgevit.models import model_info
    from edgevit.quantize import calibration_set

    fp32 = next((work / "latency" / f"{model}-onnx-fp32").glob("*.onnx"))
    int8 = next((work / "latency" / f"{model}-onnx-int8").glob("*.onnx"))
    images = calibration_set("digits", 32, model_info(model).preprocess.spec(224)).images
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        graph = onnx.load(str(fp32))
        count = rewrite_gelu(graph)
        rewritten = tmp / "sigmoid_gelu.onnx"
        onnx.save(graph, str(rewritten))
        all_int8 = tmp / "sigmoid_gelu_int8.onnx"
        quantize_all(rewritten, all_int8, images, tmp)
        files = {"fp32": fp32, "edgevit int8": int8, "fp32, sigmoid GELU": rewritten, "all int8, sigmoid GELU": all_int8}
        sessions = {k: session(p) for k, p in files.items()}
    name = sessions["fp32"].get_inputs()[0].name
    x = images[:1]
    times = collections.defaultdict(list)
    for _ in range(5):
        for s in sessions.values():
            s.run(None, {name: x})
    for _ in range(runs):  # interleaved: the machine's load hits every file alike
        for key, s in sessions.items():
            start = time.perf_counter()
            s.run(None, {name: x})
            times[key].append(time.perf_counter() - start)
    reference = np.concatenate([sessions["fp32"].run(None, {name: images[i:i + 1]})[0] for i in range(16)])
    base = float(np.median(times["fp32"]))
    rows = {}
    for key, s in sessions.items():
        out = np.concatenate([s.run(None, {name: images[i:i + 1]})[0] for i in range(16)])
        cosine = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
        rows[key] = {"p50_ms": float(np.median(times[key])) * 1e3, "ratio": float(np.median(times[key])) / base,
                     "min_cosine_vs_fp32": float(cosine.min())}
    return {"gelus": count, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--work", default=os.environ.get("EDGEVIT_INT8_WORK", "/tmp/edgevit-int8"))
    args = parser.parse_args(argv)
    lines = ["# int8 ONNX with an integer-friendly GELU: a probe", "",
             "fp32 and int8 ONNX files of benchmarks/int8.py (224 px, random init, batch 1, 2 threads, "
             f"onnxruntime, {args.runs} interleaved rounds). `sigmoid GELU`: every GELU rewritten as "
             f"x * sigmoid({GELU_K} x); `all int8`: that graph quantized whole (static QDQ, 32 digits images). "
             "The edgevit int8 artifact was exported from its own random initialization, so its cosine with "
             "this fp32 file is meaningless (`-`).", "",
             "| model | GELUs | file | p50 ms | vs fp32 | min cosine vs fp32 |", "|---|---:|---|---:|---:|---:|"]
    for model in args.models:
        result = probe(model, Path(args.work), args.runs)
        for key, row in result["rows"].items():
            cosine = "-" if key == "edgevit int8" else f"{row['min_cosine_vs_fp32']:.4f}"
            lines.append(f"| {model} | {result['gelus']} | {key} | {row['p50_ms']:.2f} | {row['ratio']:.2f} | {cosine} |")
        print(f"{model}: done", file=sys.stderr, flush=True)
    lines += ["", f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}.", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8_gelu.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
