"""The layout conversions onnxruntime adds (NCHWc reorders): the walk against onnxruntime's own
optimised graph on hand-built ONNX files, and predictions that cost them only on a CPU with blocks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from predict_fakes import RUN_MS, fake_profile, true_ms

from edgevit.environment import cpu_flags
from edgevit.predict import predict, read_graph
from edgevit.predict.layout import nchwc_block, nchwc_reorders, onnxruntime_reorders

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

BLOCK = nchwc_block(cpu_flags())  # this machine's: the walk is checked against onnxruntime here


def _model(path, nodes, inputs, outputs, weights):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                              [numpy_helper.from_array(np.random.default_rng(0).standard_normal(v.shape).astype(v.dtype)
                                                       if v.dtype == np.float32 else v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, str(path))
    return path


def _w(cout, cin, k=1):
    return np.zeros((cout, cin, k, k), np.float32)


def _conv(x, w, y, group=1, pad=0):
    return helper.make_node("Conv", [x, w], [y], group=group, pads=[pad] * 4)


GRAPHS = {
    # a stem reading NCHW (3 channels: no reorder in), a depthwise conv, GELU and ReLU kept blocked,
    # a residual Add of two blocked tensors, then a reduction that needs plain NCHW
    "stem-dw-residual-reduce": (
        [_conv("x", "w0", "a"), helper.make_node("Relu", ["a"], ["b"]), _conv("b", "w1", "c", group=16, pad=1),
         helper.make_node("Gelu", ["c"], ["d"]), helper.make_node("Add", ["b", "d"], ["e"]),
         helper.make_node("ReduceMean", ["e", "axes"], ["y"], keepdims=1)],
        [("x", [1, 3, 8, 8])], [("y", [1, 1, 8, 8])],
        {"w0": _w(16, 3), "w1": _w(16, 1, 3), "axes": np.array([1], np.int64)}),
    # a conv reading a graph input of 16 channels (reorder in), one output read by a conv and a
    # transpose (reorder out once), a scaling by a constant (not blocked), and a blocked graph output
    "fan-out-and-outputs": (
        [_conv("x", "w0", "a"), _conv("a", "w1", "b"), helper.make_node("Transpose", ["a"], ["t"], perm=[0, 2, 3, 1]),
         helper.make_node("Mul", ["b", "s"], ["m"]), _conv("m", "w2", "y")],
        [("x", [1, 16, 4, 4])], [("y", [1, 8, 4, 4]), ("t", [1, 4, 4, 24])],
        {"w0": _w(24, 16), "w1": _w(32, 24), "w2": _w(8, 32), "s": np.array([0.5], np.float32)}),
    # pools and a channel concat: a max pool reorders its plain input, the global pool stays blocked
    "pool-concat": (
        [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]), _conv("p", "w0", "a"),
         _conv("p", "w1", "b"), helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
         helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])],
        [("x", [1, 32, 8, 8])], [("y", [1, 64])],
        {"w0": _w(32, 32), "w1": _w(32, 32)}),
    # a narrow stem (3 -> 8 channels, then 8 -> 16, as test_cas_vit's): with 16-channel blocks the
    # second conv reads plain NCHW (8 < 16), so the first conv's blocked output goes back first
    "narrow-stem": (
        [_conv("x", "w0", "a"), helper.make_node("Relu", ["a"], ["b"]), _conv("b", "w1", "c", pad=1),
         helper.make_node("Relu", ["c"], ["d"]), helper.make_node("Transpose", ["d"], ["y"], perm=[0, 2, 3, 1])],
        [("x", [1, 3, 8, 8])], [("y", [1, 8, 8, 16])],
        {"w0": _w(8, 3), "w1": _w(16, 8, 3)}),
}


def test_the_block_follows_the_cpu():
    assert nchwc_block(("sse2", "avx", "avx2", "fma")) == 8
    assert nchwc_block(("avx2", "avx512f", "avx512_vnni")) == 16
    assert nchwc_block(("fp", "asimd", "asimddp")) == 1  # ARM: onnxruntime's default build has no NCHWc kernels
    assert nchwc_block(()) == 1  # unknown: no reorders assumed


@pytest.mark.parametrize("name", GRAPHS)
def test_the_walk_finds_the_reorders_onnxruntime_adds(tmp_path, name):
    if BLOCK == 1:
        pytest.skip("this CPU runs no NCHWc layout in onnxruntime: nothing to compare with")
    path = _model(tmp_path / f"{name}.onnx", *GRAPHS[name])
    mine = Counter(r.node for r in nchwc_reorders(read_graph(path), BLOCK))
    assert mine == onnxruntime_reorders(path)
    assert mine  # every case has some


def test_the_cases_reorder_where_the_rules_say(tmp_path):
    graph = read_graph(_model(tmp_path / "a.onnx", *GRAPHS["stem-dw-residual-reduce"]))
    reorders = nchwc_reorders(graph, 8)
    assert [(r.node, r.tensor, r.elements) for r in reorders] == [("ReorderOutput", "e", 16 * 8 * 8)]
    graph = read_graph(_model(tmp_path / "b.onnx", *GRAPHS["fan-out-and-outputs"]))
    assert sorted((r.node, r.tensor) for r in nchwc_reorders(graph, 8)) == [
        ("ReorderInput", "m"), ("ReorderInput", "x"), ("ReorderOutput", "a"), ("ReorderOutput", "b"), ("ReorderOutput", "y")]
    assert nchwc_reorders(graph, 1) == ()
    graph = read_graph(_model(tmp_path / "c.onnx", *GRAPHS["narrow-stem"]))
    assert [(r.node, r.tensor) for r in nchwc_reorders(graph, 8)] == [("ReorderOutput", "d")]
    assert [(r.node, r.tensor) for r in nchwc_reorders(graph, 16)] == [("ReorderOutput", "b"), ("ReorderOutput", "d")]


def test_an_int8_convolution_is_not_blocked(tmp_path):
    """A QDQ conv reads its weight through DequantizeLinear and runs as QLinearConv, in NCHW."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["w"]),
             _conv("xd", "w", "y")]
    weights = {"sx": np.array(0.1, np.float32), "zx": np.array(0, np.int8), "sw": np.array(0.1, np.float32),
               "zw": np.array(0, np.int8), "wq": np.ones((16, 16, 1, 1), np.int8)}
    path = _model(tmp_path / "qdq.onnx", nodes, [("x", [1, 16, 4, 4])], [("y", [1, 16, 4, 4])], weights)
    assert nchwc_reorders(read_graph(path), 8) == ()
    if BLOCK > 1:
        assert onnxruntime_reorders(path) == Counter()


def test_a_prediction_costs_the_reorders_only_on_a_cpu_that_blocks(tmp_path):
    path = _model(tmp_path / "m.onnx", *GRAPHS["fan-out-and-outputs"])
    plain = predict(path, fake_profile(cpu_flags=("asimd",)))
    blocked = predict(path, fake_profile(cpu_flags=("avx2",)))
    rows = [r for r in blocked.kernels if r.kernel is not None and r.kernel.kind == "reorder"]
    assert sorted(r.op_types[0] for r in rows) == ["ReorderInput", "ReorderInput", "ReorderOutput", "ReorderOutput",
                                                     "ReorderOutput"]
    assert all(r.ops == () and r.fused == ("nchwc",) and r.status == "ok" for r in rows)
    assert not any(r.kernel is not None and r.kernel.kind == "reorder" for r in plain.kernels)
    extra = sum(true_ms("reorder", dict(r.kernel.dims)) for r in rows)
    assert blocked.total_ms - plain.total_ms == pytest.approx(extra, rel=1e-3)
    assert plain.total_ms > RUN_MS and blocked.complete
    first = next(i for i, r in enumerate(blocked.kernels) if r.op_types == ("ReorderInput",))
    assert blocked.kernels[first + 1].op_types[0] == "Conv"  # placed before the conv it feeds
