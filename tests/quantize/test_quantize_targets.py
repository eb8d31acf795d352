"""Every family's ``test_*`` model quantized to int8 on every target (parametrized over the
model registry and the quantizer registry): it agrees with float, it is smaller, and the
runtime really runs integer kernels. Candidates are built without the sensitivity pass here
(conv and linear layers only) to keep the suite fast; tests/quantize/test_export.py runs the
whole search through ``edgevit export``."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import (
    COREML_WEIGHT_AGREEMENT,
    INT8_CALIBRATION_AGREEMENT,
    INT8_SQNR_DB,
    KERNEL_SQNR_DB,
    W8_AGREEMENT,
    W8_SQNR_DB,
    XNNPACK_KERNEL_SQNR_DB,
)

from edgevit.models import list_models
from edgevit.quantize import QUANTIZERS, Recipe, quantize
from edgevit.quantize.base import module_blocks

pytestmark = pytest.mark.slow  # quantization of every test model on every target, with sensitivity passes

#: minimum agreement with float on the calibration images (digits-trained tiny models)
MIN_TOP1_AGREEMENT = INT8_CALIBRATION_AGREEMENT.value
MIN_SQNR_DB = INT8_SQNR_DB.value
#: int8 file size over the float file's: fp32 files for ONNX/TFLite, an fp16 program for Core ML. The
#: tiny models are ~200k parameters, so names, quantization parameters and graph structure weigh
#: more than in real models (benchmarks/int8.py measures those against 0.3x)
MAX_SIZE_RATIO = {"onnx": 0.4, "tflite": 0.6, "coreml": 0.75, "executorch": 0.6}
MIN_KERNEL_SQNR_DB = KERNEL_SQNR_DB.value


def _size(path) -> int:
    """Bytes of the model's weights: the whole file, or an ML Program package's weights folder
    (its program text is about the same size at any precision and dominates a tiny model)."""
    weights = path / "Data" / "com.apple.CoreML" / "weights"
    if path.is_dir():
        return sum(p.stat().st_size for p in weights.rglob("*") if p.is_file())
    return path.stat().st_size


@pytest.mark.parametrize("target", QUANTIZERS.names())
@pytest.mark.parametrize("model", list_models("test_*"))
def test_int8_agrees_with_float_is_smaller_and_runs_integer_kernels(model, target, float_file, trained, calibration,
                                                                     tmp_path):
    source = float_file(model, target)
    out = tmp_path / source.name
    result = quantize(target, source, out, calibration(model), Recipe("int8", calib_size=16), model=trained(model),
                      sensitivity=False)

    agreement = result.agreement
    assert agreement["top1_agreement"] >= MIN_TOP1_AGREEMENT, agreement
    assert agreement["sqnr_db"] >= MIN_SQNR_DB, agreement
    assert _size(out) <= MAX_SIZE_RATIO[target] * _size(source), (_size(out), _size(source))

    recipe = result.recipe
    assert recipe.chosen_by == "unmeasured" and recipe.calib_used == 16
    assert "add" in recipe.float_kinds and not {"conv", "linear"} & set(recipe.float_kinds)
    assert all("not measured" in reason for reason in recipe.reasons.values())
    counts = result.units["by_kind"]
    for kind in ("conv", "linear"):
        if kind in counts:
            quantized, total = map(int, counts[kind].split("/"))
            assert quantized == total, counts

    kernels = result.kernels
    if target == "onnx":
        assert sum(kernels["integer_kernels"].values()) >= 2, kernels
        assert not {"Conv", "Gemm", "FusedConv", "FusedGemm", "NchwcConv"} & set(kernels["float_compute_kernels"]), kernels
        # the default format cannot saturate on any CPU, and this CPU's kernels compute the QDQ graph
        assert recipe.options["int8_format"] == "u8s8-reduced"
        assert kernels["u8s8_saturation"]["free"] and kernels["u8s8_saturation"]["max_abs_int8_weight"] <= 64, kernels
        assert kernels["kernels_vs_qdq_reference"]["sqnr_db"] >= MIN_KERNEL_SQNR_DB, kernels
    elif target == "tflite":
        assert {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"} & set(kernels["int8_ops"]), kernels
        assert kernels["not_delegated"] == {}, kernels
    elif target == "executorch":
        assert kernels["quantized_xnnpack_values"] > 0 and kernels["outside_delegate"] == {}, kernels
        assert kernels["delegated_subgraphs"] >= 1, kernels
        assert kernels["kernels_vs_pt2e_reference"]["sqnr_db"] >= XNNPACK_KERNEL_SQNR_DB.value, kernels
    else:
        assert kernels["compression_ops"].get("quantize", 0) >= 1, kernels
        assert any(op.startswith("constexpr") for op in kernels["compression_ops"]), kernels


@pytest.mark.parametrize("precision", ["w8", "w6", "w4"])
def test_coreml_weight_only_precisions_shrink_with_bits(precision, float_file, trained, calibration, tmp_path):
    model = "test_cas_vit"
    source = float_file(model, "coreml")
    out = tmp_path / source.name
    result = quantize("coreml", source, out, calibration(model), Recipe(precision), model=trained(model),
                      sensitivity=False)
    minimum = COREML_WEIGHT_AGREEMENT[precision].value
    assert result.agreement["top1_agreement"] >= minimum, result.agreement
    ops = result.kernels["compression_ops"]
    expected = "constexpr_lut_to_dense" if precision != "w8" else "constexpr_affine_dequantize"
    assert ops.get(expected, 0) >= 3, ops
    assert _size(out) < 0.75 * _size(source)
    assert result.recipe.options["tool"].startswith("coremltools")


def test_tflite_w8_stores_int8_weights(float_file, trained, calibration, tmp_path):
    source = float_file("test_vit", "tflite")
    result = quantize("tflite", source, tmp_path / "model.tflite", calibration("test_vit"), Recipe("w8"),
                      model=trained("test_vit"), sensitivity=False)
    assert result.agreement["top1_agreement"] >= W8_AGREEMENT.value and result.agreement["sqnr_db"] > W8_SQNR_DB.value
    assert (tmp_path / "model.tflite").stat().st_size < 0.4 * source.stat().st_size


def test_max_drop_keeps_sensitive_groups_in_float_until_met(float_file, trained, calibration, tmp_path):
    model = "test_tiny_vit"
    result = quantize("onnx", float_file(model, "onnx"), tmp_path / "model.onnx", calibration(model),
                      Recipe("int8", max_drop=0.0), model=trained(model))
    recipe = result.recipe
    assert recipe.chosen_by == "max-drop" and recipe.max_drop == 0.0
    steps = result.max_drop_steps
    assert steps and steps[-1]["top1_agreement"] == result.agreement["top1_agreement"]
    if result.agreement["top1_agreement"] == 100.0:
        assert recipe.reasons["max_drop"].startswith("met")
    else:
        assert recipe.reasons["max_drop"].startswith("NOT met")
    # groups moved to float by the search are the most sensitive ones, in order; whole conv/linear kinds last
    moved = [group for group in recipe.float_groups if "--max-drop" in recipe.reasons.get(group, "")]
    table = {row["group"]: row["sqnr_db"] for row in result.sensitivity}
    core = [g for g in moved if g in ("kind:conv", "kind:dwconv", "kind:linear")]
    rest = [g for g in moved if g not in core]
    assert moved == rest + core
    for part in (rest, core):
        assert [table[g] for g in part] == sorted(table[g] for g in part)


def test_the_sensitivity_pass_measures_every_kind_position_and_block(float_file, trained, calibration, tmp_path):
    model = "test_vit"
    result = quantize("tflite", float_file(model, "tflite"), tmp_path / "model.tflite", calibration(model),
                      Recipe("int8"), model=trained(model))
    groups = {row["group"]: row for row in result.sensitivity}
    blocks = set(module_blocks(trained(model)).values())
    assert {f"block:{b}" for b in blocks} <= set(groups) | {"block:patch_embed"}, sorted(groups)
    assert {"kind:linear", "kind:conv", "kind:layernorm", "kind:softmax", "first", "last"} <= set(groups)
    assert all(np.isfinite(row["sqnr_db"]) for row in groups.values())
    # the residual adds of a ViT are the classic int8 failure: measured, and kept in float
    assert "add" in result.recipe.float_kinds and "alone" in result.recipe.reasons["kind:add"]
    assert groups["first"].get("decision") or "first" in result.recipe.float_kinds
    assert result.agreement["top1_agreement"] >= MIN_TOP1_AGREEMENT
