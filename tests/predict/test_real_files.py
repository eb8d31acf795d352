"""The op-to-kernel mapping on files edgevit really exports (the tiny ``test_*`` zoo models, random
weights, not verified): every op of the main graph lands in one row, none is unknown, the ViT's
kernels are found with the counts the architecture implies, and a profile covering every kind
prices the whole file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from predict_fakes import fake_profile

from edgevit.models import list_models
from edgevit.predict import map_kernels, predict, read_graph

#: (model, target) -> expected kernel counts (test_vit: depth 4, 4 heads; the head is one more linear)
EXPECTED = {
    ("test_vit", "onnx"): {"linear": 4 * 4 + 1, "matmul": 4 * 2, "softmax": 4, "gelu": 4, "layernorm": 4 * 2 + 1, "conv": 1},
    ("test_vit", "tflite"): {"linear": 4 * 4 + 1, "matmul": 4 * 2, "softmax": 4, "gelu": 4, "conv": 1},
    ("test_tiny_vit", "onnx"): {"softmax": 5, "matmul": 10},
    ("test_tiny_vit", "tflite"): {"softmax": 5, "matmul": 10},
}
BACKEND = {"onnx": "onnxruntime", "tflite": "litert"}
TEST_MODELS = [m for m in list_models(include_test=True) if m.startswith("test_")]


def _cases():
    for model, target in EXPECTED:
        marks = [pytest.mark.slow] if target == "tflite" else []
        yield pytest.param(model, target, id=f"{model}-{target}", marks=marks)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from edgevit.export import export

    root, cache = tmp_path_factory.mktemp("predict-artifacts"), {}

    def get(model: str, target: str):
        if (model, target) not in cache:
            cache[model, target] = export(model, target=target, out=root, verify=False, quiet=True).path
        return cache[model, target]

    return get


@pytest.mark.parametrize(("model", "target"), _cases())
def test_every_op_of_an_exported_model_is_mapped(exported, model, target):
    path = exported(model, target)
    graph = read_graph(path)
    prediction = predict(path, fake_profile(backend=BACKEND[target]))
    assert sorted(i for row in prediction.kernels for i in row.ops) == list(range(len(graph.main_ops)))
    assert prediction.unknown == {} and prediction.uncalibrated == {} and prediction.complete
    assert {row.status for row in prediction.kernels} <= {"ok", "free", "folded"}
    kinds = Counter(row.kernel.kind for row in prediction.kernels if row.status == "ok")
    assert {kind: kinds[kind] for kind in EXPECTED[model, target]} == EXPECTED[model, target]
    assert prediction.total_ms == pytest.approx(prediction.run_ms + sum(row.ms for row in prediction.kernels))
    if model == "test_tiny_vit":  # its conv stages: 3x3 stem, pointwise and depthwise (MBConv)
        assert kinds["conv"] and kinds["conv1x1"] and kinds["dwconv"]


@pytest.mark.slow
@pytest.mark.parametrize(("target", "backend"), [("onnx", "onnxruntime"), ("tflite", "litert")])
def test_an_int8_export_maps_its_products_to_int8_kernels(tmp_path, target, backend):
    """ONNX int8 is QDQ: DequantizeLinear -> Gemm/MatMul/Conv [-> QuantizeLinear] is one int8 kernel."""
    from edgevit.export import export

    path = export("test_vit", target=target, precision="int8", out=tmp_path, verify=False, quiet=True).path
    rows = map_kernels(path, backend)
    assert not [r for r in rows if r.status in ("unknown", "unsized")]
    kinds = Counter((r.kernel.kind, r.kernel.dtype) for r in rows if r.status == "ok")
    assert kinds["linear", "int8"] == 17 and kinds["conv", "int8"] == 1
    if target == "onnx":
        assert kinds["matmul", "int8"] == 8


@pytest.mark.parametrize("model", [pytest.param(m, marks=[] if m in ("test_cas_vit", "test_efficientformerv2")
                                                else [pytest.mark.slow]) for m in TEST_MODELS])
def test_the_reorders_predicted_are_those_onnxruntime_adds_to_an_exported_model(exported, model, tmp_path):
    """edgevit's own ONNX export of every family, against onnxruntime's optimised graph on this CPU."""
    from edgevit.environment import cpu_flags
    from edgevit.predict.layout import nchwc_block, nchwc_reorders

    block = nchwc_block(cpu_flags())
    if block == 1:
        pytest.skip("this CPU runs no NCHWc layout in onnxruntime: nothing to compare with")
    pytest.importorskip("onnxruntime")
    from edgevit.artifact import read_manifest
    from edgevit.predict.layout import onnxruntime_reorders

    folder = Path(exported(model, "onnx"))
    mine = Counter(r.node for r in nchwc_reorders(read_graph(folder), block))
    assert mine == onnxruntime_reorders(folder / read_manifest(folder).model_file)
    if model in ("test_cas_vit", "test_efficientformerv2"):
        assert mine["ReorderInput"] and mine["ReorderOutput"]
