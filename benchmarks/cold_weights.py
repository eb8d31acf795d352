"""Do linear layers cost more in a model than alone? Weights that stay in cache against weights that do not (issue 15).

Not a test. A calibration model times one linear layer (or a chain of four) over and over, so its
weights stay in the CPU's caches between calls. In a model every layer has its own weights, and a
ViT's do not fit in L2 (ViT-Tiny: 22 MB), so each layer reads them from L3 or memory. When the
layer does little work per weight (few tokens: a ViT at 64 px has 17) that reading is a large part
of its time, and a profile of hot layers prices the model too low.

Here, with onnxruntime on one thread, a ViT MLP pair (192 -> 768 -> 192, bias added) is timed
two ways at several token counts M, interleaved over passes:

* ``hot``: a model of that one pair, called back to back (what the probe's calibration model sees);
* ``distinct``: a model of N pairs with distinct weights (N x 1.2 MB), one pair's share of a call.

The ratio distinct / hot per pass is the cost of cold weights. The models are written with
``onnx.helper`` (random weights; timing does not need trained ones).

Usage::

    python benchmarks/cold_weights.py                  # writes benchmarks/results/cold_weights.md/.json
    python benchmarks/cold_weights.py --tokens 17 197 --pairs 12 --passes 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, settings, stamp, write  # noqa: E402

WIDTH, HIDDEN = 192, 768


def pairs_model(tokens: int, pairs: int, seed: int) -> bytes:
    """ONNX bytes: ``pairs`` MLP pairs (MatMul + Add, WIDTH -> HIDDEN -> WIDTH), each with its own weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights, x = [], [], "x"
    for p in range(pairs):
        for i, (k, n) in enumerate(((WIDTH, HIDDEN), (HIDDEN, WIDTH))):
            w = numpy_helper.from_array((rng.standard_normal((k, n)) * 0.05).astype(np.float32), f"w{p}_{i}")
            b = numpy_helper.from_array(np.zeros(n, np.float32), f"b{p}_{i}")
            weights += [w, b]
            nodes += [helper.make_node("MatMul", [x, w.name], [f"m{p}_{i}"]),
                      helper.make_node("Add", [f"m{p}_{i}", b.name], [f"y{p}_{i}"])]
            x = f"y{p}_{i}"
    graph = helper.make_graph(nodes, "pairs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, WIDTH])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, tokens, WIDTH])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def session(model: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def p50_ms(sess, x: np.ndarray, calls: int) -> float:
    for _ in range(max(3, calls // 10)):
        sess.run(None, {"x": x})
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        sess.run(None, {"x": x})
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[17, 49, 197])
    parser.add_argument("--pairs", type=int, default=12, help="distinct MLP pairs in the cold model (ViT-Tiny has 12)")
    parser.add_argument("--passes", type=int, default=9)
    parser.add_argument("--calls", type=int, default=1000, help="timed calls of the hot model per pass (cold: / pairs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "cold_weights")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    sessions = {m: (session(pairs_model(m, 1, 0), args.threads), session(pairs_model(m, args.pairs, 1), args.threads))
                for m in args.tokens}
    inputs = {m: np.random.default_rng(2).standard_normal((1, m, WIDTH)).astype(np.float32) for m in args.tokens}
    start = stamp(onnxruntime=ort.__version__)
    rows = {m: {"hot_ms": [], "distinct_ms": []} for m in args.tokens}
    for p in range(args.passes):
        for m in args.tokens:  # interleaved: every token count and both forms in each pass
            hot, cold = sessions[m]
            rows[m]["hot_ms"].append(p50_ms(hot, inputs[m], args.calls))
            rows[m]["distinct_ms"].append(p50_ms(cold, inputs[m], max(20, args.calls // args.pairs)) / args.pairs)
        print(f"pass {p + 1}/{args.passes}: " + ", ".join(
            f"M={m} x{rows[m]['distinct_ms'][-1] / rows[m]['hot_ms'][-1]:.2f}" for m in args.tokens), flush=True)
    for m, row in rows.items():
        ratios = [c / h for c, h in zip(row["distinct_ms"], row["hot_ms"], strict=True)]
        row.update(ratio=statistics.median(ratios), ratios=ratios, hot_p50_ms=statistics.median(row["hot_ms"]),
                   distinct_p50_ms=statistics.median(row["distinct_ms"]),
                   weight_mb_per_pair=2 * WIDTH * HIDDEN * 4 / 1e6, macs_per_pair=2 * m * WIDTH * HIDDEN)
    write(args.out, {"environment": stamp(start), "settings": settings(args),
                     "rows": {str(m): row for m, row in rows.items()}}, markdown)
    return 0



def markdown(results: dict) -> str:
    env, s = results["environment"], results["settings"]
    lines = ["# Linear layers with weights in cache (hot) and not (distinct)", "",
             f"Written by `benchmarks/cold_weights.py`. Machine: {env['cpu']}, onnxruntime {env['onnxruntime']}, "
             f"{s['threads']} thread(s); load average at the start {', '.join(f'{x:.1f}' for x in env['load_average_start'])}, "
             f"at the end {', '.join(f'{x:.1f}' for x in env['load_average_end'])}; {env['date']}.", "",
             f"One ViT MLP pair ({WIDTH} -> {HIDDEN} -> {WIDTH}, {2 * WIDTH * HIDDEN * 4 / 1e6:.2f} MB of weights) called "
             f"back to back (`hot`, as a calibration model runs) against one pair's share of a model of {s['pairs']} pairs "
             f"with distinct weights (`distinct`, as in a model); {s['passes']} interleaved passes, p50 of each.", "",
             "| tokens M | hot ms | distinct ms (per pair) | distinct / hot (median) | per pass |",
             "|---:|---:|---:|---:|---|"]
    for m, row in results["rows"].items():
        lines.append(f"| {m} | {row['hot_p50_ms']:.4f} | {row['distinct_p50_ms']:.4f} | **x{row['ratio']:.2f}** | "
                     + ", ".join(f"{r:.2f}" for r in row["ratios"]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
