"""The ONNX rewrites of the export (edgevit.export.targets.onnx_forms): a convolution split on its
channels becomes one convolution per part, with the same outputs in onnxruntime, fewer
layout reorders, no weight stored twice; the cases it must not touch are left alone."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgevit.export.targets.onnx_forms import faster_forms

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(0)


def _save(path, nodes, outputs, weights, channels=16):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 6, 6])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", "c", "h", "w"]) for name in outputs],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    return path


def _run(path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = RNG.standard_normal((1, 16, 6, 6)).astype(np.float32)
    return session.run(None, {"x": x}), x


def _outputs(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


CASES = {  # name -> (nodes, outputs, weights, rewrites expected)
    "equal-parts-no-bias": (
        [helper.make_node("Conv", ["x", "w"], ["qkv"], pads=[1, 1, 1, 1]),
         helper.make_node("Split", ["qkv"], ["q", "k", "v"], axis=1, num_outputs=3),
         helper.make_node("Add", ["q", "k"], ["a"]), helper.make_node("Mul", ["a", "v"], ["y"])],
        ["y"], {"w": _w(48, 16, 3, 3)}, 1),
    "sized-parts-with-bias": (
        [helper.make_node("Conv", ["x", "w", "b"], ["c"]),
         helper.make_node("Split", ["c", "sizes"], ["p", "q"], axis=-3)],
        ["p", "q"], {"w": _w(32, 16, 1, 1), "b": _w(32), "sizes": np.array([8, 24], np.int64)}, 1),
    "conv-read-twice": (  # the conv's output has another reader: the split cannot take it over
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Split", ["c"], ["p", "q"], axis=1, num_outputs=2),
         helper.make_node("Relu", ["c"], ["r"])],
        ["p", "q", "r"], {"w": _w(32, 16, 1, 1)}, 0),
    "grouped-conv": (
        [helper.make_node("Conv", ["x", "w"], ["c"], group=2),
         helper.make_node("Split", ["c"], ["p", "q"], axis=1, num_outputs=2)],
        ["p", "q"], {"w": _w(32, 8, 1, 1)}, 0),
    "spatial-split": (
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Split", ["c"], ["p", "q"], axis=2, num_outputs=2)],
        ["p", "q"], {"w": _w(32, 16, 1, 1)}, 0),
}


@pytest.mark.parametrize("name", CASES)
def test_a_conv_split_on_channels_becomes_one_conv_per_part_with_the_same_outputs(tmp_path, name):
    nodes, outputs, weights, expected = CASES[name]
    path = _save(tmp_path / "m.onnx", nodes, outputs, weights)
    before, x = _run(path)
    size, types = path.stat().st_size, Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    counts = faster_forms(path)
    assert counts == ({"conv_split": expected} if expected else {})
    after = _outputs(path, x)
    for a, b in zip(before, after, strict=True):  # the same sums; a kernel of another width may round differently
        assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    now = Counter(n.op_type for n in model.graph.node)
    if expected:
        parts = len(next(n for n in nodes if n.op_type == "Split").output)
        assert now["Split"] == types["Split"] - 1 and now["Conv"] == types["Conv"] - 1 + parts
        assert path.stat().st_size <= size + 200 * parts  # the weights sliced, not copied (names and node headers only)
    else:
        assert now == types and path.stat().st_size == size


def test_the_rewrite_halves_onnxruntimes_reorders_into_the_blocked_layout(tmp_path):
    """Three parts, each read by a convolution: before, the split's output leaves the blocked layout and
    each part re-enters it; after, nothing leaves it (on a CPU where onnxruntime blocks convolutions)."""
    from edgevit.environment import cpu_flags
    from edgevit.predict import read_graph
    from edgevit.predict.layout import nchwc_block, nchwc_reorders, onnxruntime_reorders

    nodes = [helper.make_node("Conv", ["x", "w"], ["qkv"]),
             helper.make_node("Split", ["qkv"], ["q", "k", "v"], axis=1, num_outputs=3),
             *(helper.make_node("Conv", [p, f"w{p}"], [f"o{p}"]) for p in "qkv"),
             helper.make_node("Sum", ["oq", "ok", "ov"], ["y"])]
    weights = {"w": _w(48, 16, 1, 1), **{f"w{p}": _w(16, 16, 1, 1) for p in "qkv"}}
    path = _save(tmp_path / "m.onnx", nodes, ["y"], weights)
    before = Counter(r.node for r in nchwc_reorders(read_graph(path), 8))
    faster_forms(path)
    after = Counter(r.node for r in nchwc_reorders(read_graph(path), 8))
    assert before == {"ReorderInput": 4, "ReorderOutput": 2} and after == {"ReorderInput": 1, "ReorderOutput": 1}
    block = nchwc_block(cpu_flags())
    if block > 1:  # onnxruntime agrees on this machine
        assert onnxruntime_reorders(path) == {"ReorderInput": 1, "ReorderOutput": 1}
