"""The predictor on a synthetic graph and a fake profile whose timings are exactly linear in each
kernel's FLOPs and bytes: the prediction is exact (issue 15). Also: every op lands in one row,
unknown ops and uncalibrated kernels are reported, fusion needs private intermediates."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from predict_fakes import RUN_MS, SAMPLES, fake_profile, true_ms

from edgevit.errors import InvalidArgumentError
from edgevit.formats import Op, OpGraph, Tensor
from edgevit.predict import DeviceProfile, Kernel, KernelTiming, ReferenceTiming, fit, map_kernels, predict
from edgevit.predict.fit import SCALE_DAMPING, TOKEN_KINDS
from edgevit.predict.kernels import MAPPING_VERSION

# -- a synthetic ONNX-shaped graph: one transformer block, a conv stem and an unknown op ----------------


class GraphBuilder:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.tensors: dict[str, Tensor] = {}

    def tensor(self, name, shape, constant=False):
        self.tensors[name] = Tensor(name, shape, "float32", constant)
        return name

    def op(self, type_, inputs, output, shape, groups=1, perm=None):
        raw = SimpleNamespace(attribute=[SimpleNamespace(name="perm", ints=perm)] if perm else [])
        self.ops.append(Op(type_, f"n{len(self.ops)}", tuple(inputs), (output,), "", groups=groups, raw=raw))
        self.tensor(output, shape)
        return output

    def graph(self, *outputs):
        return OpGraph("onnx", tuple(self.ops), self.tensors, main="", inputs=("x",), outputs=outputs)


def block_graph():
    """x (1,3,16,16) -> conv stem -> tokens (1,16,32) -> attention + GELU MLP; expected kernels listed."""
    g, t = GraphBuilder(), None
    g.tensor("x", (1, 3, 16, 16))
    for name, shape in [("w_stem", (32, 3, 4, 4)), ("w_pw", (32, 32, 1, 1)), ("w_dw", (32, 1, 3, 3)),
                        ("shape", (3,)), ("w_qkv", (32, 96)), ("b_qkv", (96,)), ("scale", ()), ("w_fc", (32, 64)),
                        ("b_fc", (64,)), ("half", ()), ("one", ()), ("sqrt2", ()), ("gamma", (32,)), ("beta", (32,))]:
        g.tensor(name, shape, constant=True)
    t = g.op("Conv", ["x", "w_stem"], "stem", (1, 32, 4, 4))
    t = g.op("Conv", [t, "w_pw"], "pw", (1, 32, 4, 4))
    t = g.op("Conv", [t, "w_dw"], "dw", (1, 32, 4, 4), groups=32)
    t = g.op("Reshape", [t, "shape"], "flat", (1, 32, 16))
    tokens = g.op("Transpose", [t], "tokens", (1, 16, 32), perm=[0, 2, 1])
    t = g.op("LayerNormalization", [tokens, "gamma", "beta"], "ln", (1, 16, 32))
    t = g.op("MatMul", [t, "w_qkv"], "qkv0", (1, 16, 96))
    qkv = g.op("Add", [t, "b_qkv"], "qkv", (1, 16, 96))
    q = g.op("Slice", [qkv], "q", (1, 16, 32))
    k = g.op("Slice", [qkv], "k", (1, 16, 32))
    v = g.op("Slice", [qkv], "v", (1, 16, 32))
    q = g.op("Mul", [q, "scale"], "qs", (1, 16, 32))
    kt = g.op("Transpose", [k], "kt", (1, 32, 16), perm=[0, 2, 1])
    t = g.op("MatMul", [q, kt], "scores", (1, 16, 16))
    t = g.op("Softmax", [t], "attn", (1, 16, 16))
    t = g.op("MatMul", [t, v], "av", (1, 16, 32))
    res = g.op("Add", [t, tokens], "res", (1, 16, 32))
    t = g.op("MatMul", [res, "w_fc"], "fc0", (1, 16, 64))
    h = g.op("Add", [t, "b_fc"], "fc", (1, 16, 64))
    t = g.op("Div", [h, "sqrt2"], "d", (1, 16, 64))
    t = g.op("Erf", [t], "e", (1, 16, 64))
    t = g.op("Add", [t, "one"], "a", (1, 16, 64))
    t = g.op("Mul", ["half", t], "m", (1, 16, 64))
    t = g.op("Mul", [h, t], "gelu", (1, 16, 64))
    t = g.op("Frobnicate", [t], "out", (1, 16, 64))
    expected = [
        ("conv", dict(N=1, IH=16, IW=16, CIN=3, OH=4, OW=4, COUT=32, KH=4, KW=4, G=1)),
        ("conv1x1", dict(N=1, IH=4, IW=4, CIN=32, OH=4, OW=4, COUT=32, KH=1, KW=1, G=1)),
        ("dwconv", dict(N=1, IH=4, IW=4, CIN=32, OH=4, OW=4, COUT=32, KH=3, KW=3, G=32)),
        ("copy", dict(E=512)),  # the tokens transpose (not a last-two swap feeding a MatMul)
        ("layernorm", dict(ROWS=16, COLS=32)),
        ("linear", dict(M=16, K=32, N=96)),  # MatMul + bias Add
        ("copy", dict(E=512)), ("copy", dict(E=512)), ("copy", dict(E=512)),  # three slices
        ("matmul", dict(B=1, M=16, K=32, N=16)),  # scale Mul and K transpose folded in
        ("softmax", dict(ROWS=16, COLS=16)),
        ("matmul", dict(B=1, M=16, K=16, N=32)),
        ("elementwise", dict(E=512, I=2)),  # residual
        ("linear", dict(M=16, K=32, N=64)),
        ("gelu", dict(E=1024, I=1)),  # Div Erf Add Mul Mul
    ]
    return g.graph("out"), expected


def test_the_prediction_is_exact_on_a_fake_linear_profile():
    graph, expected = block_graph()
    prediction = predict(graph, fake_profile())
    assert prediction.total_ms == pytest.approx(RUN_MS + sum(true_ms(kind, dims) for kind, dims in expected), rel=1e-9)
    costed = [(r.kernel.kind, dict(r.kernel.dims)) for r in prediction.kernels if r.status == "ok"]
    assert costed == expected
    for row, (kind, dims) in zip([r for r in prediction.kernels if r.status == "ok"], expected, strict=True):
        assert row.ms == pytest.approx(true_ms(kind, dims), rel=1e-9, abs=1e-12)


def test_every_op_lands_in_one_row_and_an_unknown_op_is_reported():
    graph, _ = block_graph()
    prediction = predict(graph, fake_profile())
    covered = sorted(i for row in prediction.kernels for i in row.ops)
    assert covered == list(range(len(graph.main_ops)))
    assert prediction.unknown == {"Frobnicate": 1} and not prediction.complete
    assert [(r.op_types, r.fused) for r in prediction.kernels if r.fused] == [
        (("MatMul", "Add"), ("bias",)),
        (("MatMul", "Mul", "Transpose"), ("scale", "transpose")),
        (("MatMul", "Add"), ("bias",)), (("Div", "Erf", "Add", "Mul", "Mul"), ("gelu",))]
    assert "Frobnicate" in prediction.table() and prediction.to_dict()["unknown"] == {"Frobnicate": 1}


def test_a_kernel_kind_the_profile_never_timed_is_reported_not_guessed():
    graph, expected = block_graph()
    partial = {kind: dims for kind, dims in SAMPLES.items() if kind != "softmax"}
    prediction = predict(graph, fake_profile(partial))
    assert prediction.uncalibrated == {"softmax fp32": 1}
    assert prediction.total_ms == pytest.approx(
        RUN_MS + sum(true_ms(kind, dims) for kind, dims in expected if kind != "softmax"), rel=1e-9)


def test_an_intermediate_read_outside_the_pattern_blocks_the_fusion():
    g = GraphBuilder()
    g.tensor("x", (4, 8))
    g.tensor("w", (8, 16), constant=True)
    g.tensor("b", (16,), constant=True)
    y = g.op("MatMul", ["x", "w"], "y", (4, 16))
    g.op("Add", [y, "b"], "z", (4, 16))
    g.op("Relu", [y], "r", (4, 16))  # the MatMul's output is read twice: no bias fusion
    prediction = predict(g.graph("z"), fake_profile())
    assert [r.op_types for r in prediction.kernels] == [("MatMul",), ("Add",), ("Relu",)]


def test_ops_on_constants_alone_are_folded():
    g = GraphBuilder()
    g.tensor("x", (4, 8))
    g.tensor("a", (8,), constant=True)
    c = g.op("Mul", ["a", "a"], "c", (8,))
    g.op("Add", ["x", c], "y", (4, 8))
    prediction = predict(g.graph("y"), fake_profile())
    assert [r.status for r in prediction.kernels] == ["folded", "ok"]


def test_a_profile_of_another_backend_is_refused():
    graph, _ = block_graph()
    with pytest.raises(InvalidArgumentError, match="backend 'litert' cannot predict a onnx model"):
        predict(graph, fake_profile(backend="litert"))


def test_the_fit_recovers_the_fake_device_and_never_goes_negative():
    model = fit(fake_profile())
    assert model.run_ms == RUN_MS
    linear = model.models["linear", "fp32"]
    assert linear.overhead_ms == pytest.approx(0.003) and dict(linear.coefficients)["flops"] == pytest.approx(1e-8)
    noisy = fake_profile({"copy": [dict(E=e) for e in (10, 20, 30)]})
    timings = list(noisy.timings)
    timings[1] = KernelTiming(timings[1].kernel, timings[1].ms + 0.01)  # the smallest copy slowed: slope would go negative
    model = fit(DeviceProfile(**{**noisy.__dict__, "timings": tuple(timings)}))
    assert all(c >= 0 for _, c in model.models["copy", "fp32"].coefficients)
    assert np.isfinite(model.models["copy", "fp32"].max_error_ms)


def test_timings_with_extra_kernels_are_fitted_minus_the_extras():
    """A TFLite convolution's calibration model also runs two layout transposes: the fit takes them off."""
    profile = fake_profile()
    copies = lambda dims: (Kernel.of("copy", E=dims["IH"] * dims["IW"] * dims["CIN"]),  # noqa: E731
                           Kernel.of("copy", E=dims["OH"] * dims["OW"] * dims["COUT"]))
    timings = [t if t.kernel.kind != "conv" else
               KernelTiming(t.kernel, t.ms + sum(true_ms("copy", dict(k.dims)) for k in copies(dict(t.kernel.dims))),
                            extra=copies(dict(t.kernel.dims)))
               for t in profile.timings]
    model = fit(DeviceProfile(**{**profile.__dict__, "timings": tuple(timings)}))
    dims = dict(N=1, IH=16, IW=16, CIN=3, OH=4, OW=4, COUT=32, KH=4, KW=4, G=1)
    assert model.ms(Kernel.of("conv", **dims)) == pytest.approx(true_ms("conv", dims), rel=1e-9)


def test_a_kind_timed_alone_and_in_chains_has_its_isolation_fitted_apart_and_left_out_of_predictions():
    """A linear alone pays 0.05 ms more than inside a model; its chains of four (the copies in
    ``extra``) pay it once: the fit recovers the in-model cost exactly and predictions leave the 0.05 ms out."""
    from edgevit.predict.fit import copies

    isolation = 0.05
    profile = fake_profile()
    timings = []
    for t in profile.timings:
        if t.kernel.kind != "linear":
            timings.append(t)
            continue
        timings.append(KernelTiming(t.kernel, t.ms + isolation))
        chain = (t.kernel,) * 3
        timings.append(KernelTiming(t.kernel, RUN_MS + isolation + 4 * true_ms("linear", dict(t.kernel.dims)), chain))
    profile = DeviceProfile(**{**profile.__dict__, "timings": tuple(timings)})
    assert sorted({copies(t) for t in timings if t.kernel.kind == "linear"}) == [1, 4]
    model = fit(profile)
    linear = model.models["linear", "fp32"]
    assert linear.isolation_ms == pytest.approx(isolation) and model.models["copy", "fp32"].isolation_ms == 0
    dims = dict(M=16, K=32, N=96)
    assert model.ms(Kernel.of("linear", **dims)) == pytest.approx(true_ms("linear", dims), rel=1e-9)
    alone = fit(DeviceProfile(**{**profile.__dict__, "timings": tuple(t for t in timings if copies(t) == 1)}))
    assert alone.ms(Kernel.of("linear", **dims)) > true_ms("linear", dims) + 0.04  # no chains: isolation is the kernel's


def qdq_linear() -> GraphBuilder:
    """``x -> QuantizeLinear -> DequantizeLinear -> MatMul(DequantizeLinear(int8 weight))``: an ONNX QDQ linear to ``y``."""
    g = GraphBuilder()
    g.tensor("x", (1, 4, 8))
    for name, shape in (("s", ()), ("z", ())):
        g.tensor(name, shape, constant=True)
    g.tensors["w8"] = Tensor("w8", (8, 16), "int8", constant=True)
    xq = g.op("QuantizeLinear", ["x", "s", "z"], "xq", (1, 4, 8))
    g.tensors[xq] = Tensor(xq, (1, 4, 8), "uint8")
    w = g.op("DequantizeLinear", ["w8", "s", "z"], "w", (8, 16))
    xd = g.op("DequantizeLinear", [xq, "s", "z"], "xd", (1, 4, 8))
    g.op("MatMul", [xd, w], "y", (1, 4, 16))
    return g


def test_an_onnx_qdq_group_runs_as_one_int8_kernel_with_its_weight_folded():
    g = qdq_linear()
    g.op("QuantizeLinear", ["y", "s", "z"], "yq", (1, 4, 16))
    rows = map_kernels(g.graph("yq"), "onnxruntime")
    assert [(r.op_types, r.status, r.kernel.describe() if r.kernel else None, r.fused) for r in rows] == [
        (("QuantizeLinear",), "ok", "quantize[E=32,I=1] fp32", ()),
        (("DequantizeLinear",), "folded", None, ()),
        (("MatMul", "DequantizeLinear", "QuantizeLinear"), "ok", "linear[M=4,K=8,N=16] int8", ("qdq",)),
    ]


def test_a_dequantize_that_several_ops_read_still_lets_each_qdq_group_run_as_int8():
    """onnxruntime gives every QDQ group its own copy of a DequantizeLinear that others also read
    (EnsureUniqueDQForNodeUnit): two MatMuls reading one DequantizeLinear both run as int8 kernels,
    and the DequantizeLinear stays, costed once, for the float Add that also reads it."""
    g = qdq_linear()
    g.tensors["w8b"] = Tensor("w8b", (8, 16), "int8", constant=True)
    wb = g.op("DequantizeLinear", ["w8b", "s", "z"], "wb", (8, 16))
    g.op("MatMul", ["xd", wb], "y2", (1, 4, 16))
    g.op("Add", ["xd", "xd"], "x2", (1, 4, 8))
    rows = map_kernels(g.graph("y", "y2", "x2"), "onnxruntime")
    assert [(r.op_types, r.status, r.kernel.describe() if r.kernel else None, r.fused) for r in rows if r.status != "folded"] == [
        (("QuantizeLinear",), "ok", "quantize[E=32,I=1] fp32", ()),
        (("DequantizeLinear",), "ok", "dequantize[E=32,I=1] int8", ()),
        (("MatMul",), "ok", "linear[M=4,K=8,N=16] int8", ("qdq",)),
        (("MatMul",), "ok", "linear[M=4,K=8,N=16] int8", ("qdq",)),
        (("Add",), "ok", "elementwise[E=32,I=2] fp32", ()),
    ]


def test_an_int8_kernel_whose_kind_was_timed_only_in_float_is_costed_as_float_and_reported():
    """No calibration model times an int8 attention product or element-wise op (the recipes quantize them only
    inside a model): such a kernel costs what its float kind costs, and the prediction says it is approximated."""
    prediction = predict(qdq_linear().graph("y"), fake_profile())  # float timings only
    row = next(r for r in prediction.kernels if r.kernel and r.kernel.kind == "linear")
    assert (row.status, row.kernel.dtype) == ("approximated", "int8")
    assert row.ms == pytest.approx(true_ms("linear", dict(M=4, K=8, N=16)), rel=1e-9)
    assert prediction.approximated == {"linear int8": 1} and prediction.uncalibrated == {"quantize fp32": 1}
    assert not prediction.complete and "int8 costed as float: {'linear int8': 1}" in prediction.table()
    assert prediction.to_dict()["approximated"] == {"linear int8": 1}


def test_quantize_steps_timed_only_inside_int8_models_are_costed_as_element_wise_passes():
    """An int8 calibration model quantizes its input and dequantizes its output once, as it pays its
    isolation once: their cost is the element-wise model's on their own elements and bytes, and
    the int8 kernel's own cost comes out exact."""
    from edgevit.predict.fit import STAND_INS

    def step_ms(kernel):  # an element-wise pass as the fake device runs it, with the step's own bytes
        size = 4 if kernel.dtype == "fp32" else 1
        return 0.001 + 5e-7 * kernel.dim("E") + 1e-8 * size * kernel.dim("E") * 2

    profile = fake_profile()
    timings = list(profile.timings)
    for dims in SAMPLES["linear"]:
        kernel = Kernel.of("linear", "int8", **dims)
        steps = (Kernel.of("quantize", E=dims["M"] * dims["K"], I=1), Kernel.of("dequantize", "int8", E=dims["M"] * dims["N"], I=1))
        timings.append(KernelTiming(kernel, RUN_MS + 0.5 * true_ms("linear", dims) + sum(map(step_ms, steps)), steps))
    model = fit(DeviceProfile(**{**profile.__dict__, "timings": tuple(timings)}))
    assert STAND_INS == {"quantize": "elementwise", "dequantize": "elementwise"}
    quantize, elementwise = model.models["quantize", "fp32"], model.models["elementwise", "fp32"]
    assert (quantize.stand_in, quantize.samples, quantize.coefficients) == ("elementwise", 0, elementwise.coefficients)
    dims = dict(M=16, K=32, N=96)
    assert model.ms(Kernel.of("linear", "int8", **dims)) == pytest.approx(0.5 * true_ms("linear", dims), rel=1e-6)
    step = Kernel.of("dequantize", "int8", E=4096, I=1)
    assert model.ms(step) == pytest.approx(step_ms(step), rel=1e-6)


# -- reference models: whole models timed beside the kernels scale the kernel sums ---------------------


def _reference(model, family, kernels, factor):
    """A reference model of ``kernels`` ((kind, dims) pairs) that the fake device runs ``factor`` times
    as fast as the sum of its kernels alone (plus the run overhead, paid once)."""
    counts = {}
    for kind, dims in kernels:
        key = Kernel.of(kind, **dims)
        counts[key] = counts.get(key, 0) + 1
    ms = RUN_MS + factor * sum(true_ms(kind, dims) for kind, dims in kernels)
    return ReferenceTiming(model, family, ms, tuple(counts.items()))


def _token_rest(kernels):
    """The true sums of ``kernels``' token kinds and of the rest."""
    token = sum(true_ms(kind, dims) for kind, dims in kernels if kind in TOKEN_KINDS)
    return token, sum(true_ms(kind, dims) for kind, dims in kernels) - token


def _damped(references, damping):
    """The two factors from the normal equations of the damped least squares, solved by hand:
    ``references`` are ``(factor, kernels)`` as :func:`_reference` builds them."""
    rows = []
    for factor, kernels in references:
        token, rest = _token_rest(kernels)
        measured = RUN_MS + factor * (token + rest)
        rows.append((token / measured, rest / measured, factor * (token + rest) / measured))
    single = float(np.median([factor for factor, _ in references]))
    uu, uv, vv = (sum(u * u for u, _, _ in rows) + damping, sum(u * v for u, v, _ in rows),
                  sum(v * v for _, v, _ in rows) + damping)
    uw, vw = sum(u * w for u, _, w in rows) + damping * single, sum(v * w for _, v, w in rows) + damping * single
    det = uu * vv - uv * uv
    return (uw * vv - uv * vw) / det, (uu * vw - uv * uw) / det


def _assert_scaled(prediction, expected, token_factor, rest_factor):
    """Each row is its kernel's true time times its group's factor, and they add up to the total."""
    token, rest = _token_rest(expected)
    assert prediction.group_scale == (pytest.approx(token_factor), pytest.approx(rest_factor))
    assert prediction.total_ms == pytest.approx(RUN_MS + token_factor * token + rest_factor * rest, rel=1e-9)
    assert prediction.scale == pytest.approx((token_factor * token + rest_factor * rest) / (token + rest), rel=1e-9)
    assert sum(r.ms for r in prediction.kernels) == pytest.approx(prediction.total_ms - RUN_MS, rel=1e-12)
    for row in prediction.kernels:
        if row.kernel is not None and row.ms:
            factor = token_factor if row.kernel.kind in TOKEN_KINDS else rest_factor
            assert row.ms == pytest.approx(factor * true_ms(row.kernel.kind, dict(row.kernel.dims)), rel=1e-6)


def test_reference_models_scale_the_prediction_and_leave_out_the_predicted_family():
    """Each precision's single factor is the median of its references' own; the prediction's two
    factors (token kinds, the rest) are the damped least squares around it; a family left out
    gives nothing to either."""
    graph, expected = block_graph()
    small, large = expected[:5], expected[5:]
    made = [("a1", "a", small, 0.8), ("a2", "a", large, 0.8), ("b1", "b", large, 0.9), ("c1", "c", expected, 1.5)]
    profile = replace(fake_profile(), references=tuple(_reference(m, f, k, x) for m, f, k, x in made))
    # the median of 0.8, 0.8, 0.9, 1.5 over all four; without family c: the median of 0.8, 0.8, 0.9
    assert fit(profile).scales["fp32"] == (pytest.approx(0.85), 4)
    assert fit(profile, leave_out="c").scales["fp32"] == (pytest.approx(0.8), 3)
    whole = predict(graph, profile)
    assert whole.scale_references == 4
    _assert_scaled(whole, expected, *_damped([(x, k) for _, _, k, x in made], SCALE_DAMPING))
    left = predict(graph, fit(profile, leave_out="c"))
    token, rest = _damped([(x, k) for _, f, k, x in made if f != "c"], SCALE_DAMPING)
    _assert_scaled(left, expected, token, rest)
    assert 0.8 < rest < 0.9 and 0.8 <= token < 0.9  # the rest-only reference ran at 0.8, the token-heavy ones 0.8 and 0.9
    assert (f"scaled by {left.scale:.3f}: token kinds x{token:.3f}, the rest x{rest:.3f} (fitted to 3 reference models)"
            in left.table())
    assert left.to_dict()["group_scale"] == [pytest.approx(token), pytest.approx(rest)]
    bare = predict(graph, fake_profile())
    assert bare.scale == 1.0 and bare.scale_range is None and bare.range_ms is None  # no references: kernels as fitted
    assert bare.group_scale is None and bare.to_dict()["group_scale"] is None
    assert "references ranged" not in bare.table() and bare.to_dict()["range_ms"] is None


def test_references_that_price_token_kinds_apart_from_the_rest_give_two_factors(monkeypatch):
    """References that run their token kernels at x0.7 and the rest at x1.3: undamped the fit
    finds both factors exactly; damped, each lands between its own and the single median; when
    every reference agrees on one factor, both are that factor, damped or not."""
    fit_module = sys.modules["edgevit.predict.fit"]
    graph, expected = block_graph()
    kernels = [expected[:3], expected[5:], expected, expected[3:], expected[:7]]

    def skewed(name, parts):
        token, rest = _token_rest(parts)
        counts = Counter(Kernel.of(kind, **dims) for kind, dims in parts)
        return ReferenceTiming(name, name, RUN_MS + 0.7 * token + 1.3 * rest, tuple(counts.items()))

    profile = replace(fake_profile(), references=tuple(skewed(f"r{i}", k) for i, k in enumerate(kernels)))
    single = fit(profile).scales["fp32"][0]
    damped = predict(graph, profile)
    assert 0.7 < damped.group_scale[0] < single < damped.group_scale[1] < 1.3
    monkeypatch.setattr(fit_module, "SCALE_DAMPING", 0.0)
    _assert_scaled(predict(graph, profile), expected, 0.7, 1.3)
    agreeing = replace(profile, references=tuple(_reference(f"r{i}", f"r{i}", k, 1.1) for i, k in enumerate(kernels)))
    for damping in (0.0, 3.0):
        monkeypatch.setattr(fit_module, "SCALE_DAMPING", damping)
        _assert_scaled(predict(graph, agreeing), expected, 1.1, 1.1)


def test_a_prediction_gives_the_range_its_references_own_factors_span():
    """The lowest and highest reference factor price the same kernels as the fitted factors do: a
    range around the prediction, shown in the table and the JSON; one reference gives no spread to show."""
    graph, expected = block_graph()
    kernel_sum = sum(true_ms(kind, dims) for kind, dims in expected)
    references = (_reference("a1", "a", expected, 0.7), _reference("b1", "b", expected[5:], 1.1),
                  _reference("c1", "c", expected[:5], 0.9))
    prediction = predict(graph, replace(fake_profile(), references=references))
    assert prediction.scale_range == (pytest.approx(0.7), pytest.approx(1.1))
    low, high = prediction.range_ms
    assert (low, high) == (pytest.approx(RUN_MS + 0.7 * kernel_sum, rel=1e-9), pytest.approx(RUN_MS + 1.1 * kernel_sum, rel=1e-9))
    assert low < prediction.total_ms < high
    assert f"the references ranged x0.700 to x1.100: {low:.3f} to {high:.3f} ms" in prediction.table()
    assert prediction.to_dict()["range_ms"] == [pytest.approx(low), pytest.approx(high)]
    alone = predict(graph, replace(fake_profile(), references=references[:1]))
    assert alone.range_ms == (pytest.approx(alone.total_ms), pytest.approx(alone.total_ms))
    assert "references ranged" not in alone.table()


@pytest.mark.parametrize(("mapped", "words"), [
    (None, "does not record which kernel mapping its probe used"),
    (MAPPING_VERSION - 1, f"mapping version {MAPPING_VERSION - 1}; this edgevit maps with version {MAPPING_VERSION}"),
    (MAPPING_VERSION + 1, f"mapping version {MAPPING_VERSION + 1}; this edgevit maps with version {MAPPING_VERSION}"),
])
def test_a_profile_mapped_by_another_kernel_mapping_makes_every_prediction_say_so(mapped, words):
    graph, expected = block_graph()
    current = replace(fake_profile(), references=(_reference("a1", "a", expected, 0.8),))
    clean = predict(graph, current)
    assert clean.notes == () and "note:" not in clean.table() and clean.to_dict()["notes"] == []
    other = predict(graph, replace(current, mapping_version=mapped))
    assert other.total_ms == clean.total_ms  # the note changes no figure
    (note,) = other.notes
    assert note.startswith("fake's profile ") and words in note
    assert "probe the device again" in note
    assert f"note: {note}" in other.table() and other.to_dict()["notes"] == [note]
    assert fit(replace(current, mapping_version=mapped, timings=current.timings[:1])).notes == (note,)  # also with no kernels to fit


def test_references_scale_only_their_own_precision_and_one_with_an_unpriced_kernel_is_left_out():
    graph, expected = block_graph()
    int8 = ReferenceTiming("q", "a", 5.0, ((Kernel.of("linear", "int8", M=16, K=32, N=96), 1),))
    unpriced = ReferenceTiming("u", "a", 9.0, ((Kernel.of("pool", N=1, IH=4, IW=4, C=8, OH=1, OW=1, KH=4, KW=4), 1),))
    kinds = {k: v for k, v in SAMPLES.items() if k != "pool"}
    model = fit(replace(fake_profile(kinds), references=(int8, unpriced, _reference("f", "a", expected, 1.2))))
    assert set(model.scales) == {"fp32", "int8"} and model.scales["fp32"] == (pytest.approx(1.2), 1)
    assert model.scales["int8"][1] == 1  # priced as the float linear (approximated), as a prediction would
    assert predict(graph, model).scale == pytest.approx(1.2)


def test_models_timed_after_an_idle_gap_give_a_second_figure_from_a_curve_over_sizes():
    """``idle_ms = total_ms * ratio(total_ms)``: the ratio interpolated in log size between groups of
    the models timed both ways (each group's median), flat beyond the ends; the left-out family's
    references stay out; a profile without idle timings gives none."""
    from edgevit.predict.fit import idle_curve, idle_ratio

    curve = idle_curve([(0.1, 0.5), (0.11, 0.66), (0.12, 0.48), (10.0, 12.0), (1000.0, 1000.0)])
    assert curve == (pytest.approx((0.11, 5.0)), (10.0, 1.2), (1000.0, 1.0))  # 0.1-0.12 ms: one quarter decade
    assert idle_ratio(curve, (0.11 * 10.0) ** 0.5) == pytest.approx((5.0 + 1.2) / 2)  # halfway in log size
    assert idle_ratio(curve, 0.001) == 5.0 and idle_ratio(curve, 1e6) == 1.0 and idle_ratio((), 3.0) == 1.0
    graph, expected = block_graph()
    base = fake_profile()
    timings = tuple(replace(t, idle_ms=t.ms * 3.0) if t.kernel.kind == "linear" else t for t in base.timings)
    far = replace(_reference("far", "c", expected, 1.0), idle_ms=1e4)
    profile = replace(base, timings=timings, references=(far,), measurement=replace(base.measurement, idle_gap_ms=25.0))
    left = predict(graph, fit(profile, leave_out="c"))
    assert left.idle_ms == pytest.approx(3.0 * left.total_ms) and left.idle_points == len(SAMPLES["linear"])
    assert "one request after 25 ms idle:" in left.table() and "x3.00" in left.table()
    assert left.to_dict()["idle_ms"] == left.idle_ms and left.idle_gap_ms == 25.0
    assert predict(graph, profile).idle_points == len(SAMPLES["linear"]) + 1
    none = predict(graph, base)
    assert none.idle_ms is None and none.idle_gap_ms == 0.0 and "idle" not in none.table()


def test_the_copying_of_a_calls_inputs_and_outputs_is_fitted_apart_from_the_kernels():
    """A fake device whose every call also pays 2e-7 ms per byte of its inputs and outputs; GELU and
    math kernels timed alone and in chains of four (one call's copying for four kernels), copies
    only alone. ``io_cost`` recovers the per-byte cost, the kernels (the lone copies too) are priced
    without it, and a prediction charges it once, on the model's own inputs and outputs."""
    from edgevit.predict.fit import io_cost
    from edgevit.predict.mapping import io_bytes

    per_byte = 2e-7
    base = fake_profile()
    timings = []
    for t in base.timings:
        moved = 8 * max(dict(t.kernel.dims).get("E", 16), 16)  # what its input and output weigh
        timings.append(replace(t, ms=t.ms + per_byte * moved, io_bytes=moved))
        if t.kernel.kind in ("gelu", "math"):
            chain = RUN_MS + 4 * true_ms(t.kernel.kind, dict(t.kernel.dims)) + per_byte * moved
            timings.append(KernelTiming(t.kernel, chain, (t.kernel,) * 3, io_bytes=moved))
    profile = replace(base, timings=tuple(timings))
    assert io_cost(profile.timings, RUN_MS) == pytest.approx(per_byte, rel=1e-6)
    model = fit(profile)
    assert model.io_ms_per_byte == pytest.approx(per_byte, rel=1e-6)
    for kind, dims in (("copy", dict(E=512)), ("gelu", dict(E=1024, I=1)), ("linear", dict(M=16, K=32, N=96))):
        assert model.ms(Kernel.of(kind, **dims)) == pytest.approx(true_ms(kind, dims), rel=1e-5), kind
    graph, expected = block_graph()
    assert io_bytes(graph) == 4 * (3 * 16 * 16 + 16 * 64)
    prediction = predict(graph, model)
    assert prediction.io_ms == pytest.approx(per_byte * io_bytes(graph), rel=1e-6)
    assert prediction.total_ms == pytest.approx(RUN_MS + prediction.io_ms + sum(true_ms(k, d) for k, d in expected), rel=1e-5)
    assert "inputs and outputs" in prediction.table() and prediction.to_dict()["io_ms"] == prediction.io_ms
    assert fit(base).io_ms_per_byte == 0.0 and predict(graph, base).io_ms == 0.0  # not recorded: not charged


@pytest.mark.parametrize(("mode", "kernel"), [
    (b"linear", Kernel.of("resize", C=2 * 32, IH=7, IW=7, OH=14, OW=14)),  # the batch folded into the planes
    (b"cubic", Kernel.of("resize", C=2 * 32, IH=7, IW=7, OH=14, OW=14)),
    (b"nearest", Kernel.of("copy", E=2 * 32 * 14 * 14)),
    (None, Kernel.of("copy", E=2 * 32 * 14 * 14)),  # onnx's default mode is nearest
])
def test_an_interpolating_resize_is_a_resize_kernel_and_a_nearest_one_a_copy(mode, kernel):
    g = GraphBuilder()
    g.tensor("x", (2, 32, 7, 7))
    g.tensor("sizes", (4,), constant=True)
    g.op("Resize", ["x", "", "", "sizes"], "y", (2, 32, 14, 14))
    if mode is not None:
        g.ops[-1].raw.attribute.append(SimpleNamespace(name="mode", s=mode))
    (row,) = map_kernels(g.graph("y"), "onnxruntime")
    assert row.status == "ok" and row.kernel == kernel


def test_predict_reads_a_profile_file_and_refuses_what_is_not_a_profile(tmp_path):
    from edgevit.errors import ProfileError
    from edgevit.predict import save_profile

    graph, _ = block_graph()
    path = tmp_path / "here.json"
    save_profile(fake_profile(), path)
    assert predict(graph, path).total_ms == pytest.approx(predict(graph, fake_profile()).total_ms, rel=1e-12)
    assert predict(graph, str(path)).total_ms == pytest.approx(predict(graph, fake_profile()).total_ms, rel=1e-12)
    with pytest.raises(ProfileError, match="no such device profile"):
        predict(graph, tmp_path / "missing.json")
    with pytest.raises(InvalidArgumentError, match="got dict.*load_profile"):
        predict(graph, {"timings": []})
