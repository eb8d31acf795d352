"""Recipes, groups, metrics, calibration ranges and name parsing: the pure parts of edgevit.quantize."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from edgevit.errors import InvalidArgumentError
from edgevit.export.targets import TARGETS, get_target
from edgevit.formats import Op
from edgevit.precision import PRECISIONS
from edgevit.quantize import QUANTIZERS, Recipe, get_quantizer, supported_precisions
from edgevit.quantize.calibration import RangeCollector
from edgevit.quantize.metrics import compare_logits, sqnr_db
from edgevit.quantize.recipe import KindRules, Unit, mark_positions, select


@pytest.mark.parametrize(("changes", "message"), [
    ({"calib_method": "mse"}, "unknown calibration method 'mse'; valid: minmax, percentile, entropy"),
    ({"calib_size": 0}, "--calib-size must be a positive number of images, got 0"),
    ({"max_drop": 120}, "between 0 and 100, got 120"),
    ({"float_kinds": ("layernrom",)}, "unknown op kind(s) 'layernrom' to keep in float"),
])
def test_recipe_refuses_bad_values_naming_what_is_allowed(changes, message):
    with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Recipe("int8", **changes)


def test_recipe_refuses_a_float_precision():
    with pytest.raises(InvalidArgumentError, match="'fp16' is not a quantized precision; valid: int8, w8, w6, w4"):
        Recipe("fp16")


def test_with_float_records_the_group_and_its_reason():
    recipe = Recipe("int8").with_float("kind:softmax", "slow").with_float("block:blocks.3", "sensitive")
    assert recipe.float_kinds == ("softmax",) and recipe.float_blocks == ("blocks.3",)
    assert recipe.float_groups == ("kind:softmax", "block:blocks.3")
    assert recipe.reasons == {"kind:softmax": "slow", "block:blocks.3": "sensitive"}
    data = recipe.to_dict()
    assert data["float_kinds"] == ["softmax"] and "int8 activations" in data["scheme"]


def test_select_honours_kinds_positions_and_blocks():
    units = mark_positions([
        Unit("stem", "Conv", "conv", "stem", "stem", weighted=True),
        Unit("q", "Gemm", "linear", "blocks.0.q", "blocks.0", weighted=True),
        Unit("sm", "Softmax", "softmax", "blocks.0", "blocks.0"),
        Unit("fc", "Gemm", "linear", "blocks.1.fc", "blocks.1", weighted=True),
        Unit("head", "Gemm", "linear", "head", "head", weighted=True),
    ])
    assert [u.position for u in units] == ["first", "", "", "", "last"]
    kinds = ("conv", "linear")
    assert [u.id for u in select(units, Recipe("int8"), kinds)] == ["stem", "q", "fc", "head"]
    recipe = Recipe("int8", float_kinds=("first", "last"), float_blocks=("blocks.1",))
    assert [u.id for u in select(units, recipe, kinds)] == ["q"]


@pytest.mark.parametrize("target", TARGETS.names())
def test_a_target_and_its_quantizer_name_the_same_quantized_precisions(target):
    made = get_target(target).quantized_precisions
    assert made == supported_precisions(target)
    if made:
        assert QUANTIZERS.get(target).precisions() == made
        assert all(PRECISIONS.get(name).quantized for name in made)


@pytest.mark.parametrize(("target", "op", "context", "kind"), [
    ("onnx", Op("MatMul"), {"weighted": True}, "linear"),
    ("onnx", Op("MatMul"), {}, "matmul"),
    ("onnx", Op("Conv", groups=8), {}, "dwconv"),
    ("onnx", Op("Sub"), {"module": "LayerNorm"}, "layernorm"),
    ("onnx", Op("Sub"), {}, "other"),
    ("onnx", Op("Concat"), {"module": "LayerNorm2d"}, None),  # a norm module's other ops stay float
    ("onnx", Op("Softmax"), {"module": "LayerNorm"}, "softmax"),
    ("onnx", Op("Erf"), {"module": "GELU"}, "gelu"),
    ("onnx", Op("Erf"), {}, None),
    ("tflite", Op("ADD"), {"module": "LayerNorm"}, "layernorm"),
    ("tflite", Op("CONCATENATION"), {"module": "LayerNorm"}, "other"),
    ("tflite", Op("TANH"), {"module": "GELU"}, "gelu"),
    ("tflite", Op("DEPTHWISE_CONV_2D"), {}, "dwconv"),
    ("tflite", Op("RESHAPE"), {}, None),
    ("coreml", Op("matmul"), {"weighted": True}, "linear"),
    ("coreml", Op("conv", groups=4), {}, "dwconv"),
    ("coreml", Op("layer_norm"), {}, "layernorm"),
    ("executorch", Op("aten.linear.default"), {}, "linear"),
    ("executorch", Op("aten.conv2d.default", groups=8), {}, "dwconv"),
    ("executorch", Op("aten.matmul.default"), {}, None),  # XNNPACKQuantizer annotates no attention matmul
])
def test_each_quantizer_declares_its_op_kinds_as_kind_rules(target, op, context, kind):
    rules = importlib.import_module(f"edgevit.quantize.{target}").KIND_RULES
    assert isinstance(rules, KindRules) and rules.kind(op, **context) == kind


def test_kind_rules_refuse_an_unknown_kind():
    with pytest.raises(InvalidArgumentError, match="unknown op kind.s. attention in KindRules; valid: conv"):
        KindRules({"MatMul": "attention"})


@pytest.mark.parametrize(("precision", "deployment", "refused"), [
    ("int8", "iOS16", True), ("int8", "iOS17", False), ("w8", "iOS15", False), ("fp16", "iOS15", False)])
def test_the_ios17_rule_is_one_function_for_the_target_and_the_quantizer(precision, deployment, refused):
    from edgevit.export.options import ExportOptions
    from edgevit.formats.mlprogram import SPEC_VERSIONS
    from edgevit.quantize.coreml import check_deployment

    message = f"Core ML {precision} quantizes activations .* need iOS17 or newer, but the deployment target is {deployment}"
    checks = [lambda: check_deployment(precision, SPEC_VERSIONS[deployment]),
              lambda: get_target("coreml").check(ExportOptions(target="coreml", precision=precision,
                                                               deployment_target=deployment))]
    for check in checks:
        if refused:
            with pytest.raises(InvalidArgumentError, match=message):
                check()
        else:
            check()


def test_an_unsupported_precision_lists_the_supported_ones():
    with pytest.raises(InvalidArgumentError, match="the onnx target does not support precision 'w4'; it supports int8"):
        get_quantizer("onnx", "w4")
    with pytest.raises(InvalidArgumentError, match="supports int8, w8$"):
        get_quantizer("tflite", "w6")


def test_metrics():
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    assert sqnr_db(ref, ref) == 200.0
    noisy = ref + 0.01
    assert 40 < sqnr_db(ref, noisy) < 50
    flipped = np.array([[1.0, 3.0, 0.0], [0.0, 2.0, 1.0]])
    result = compare_logits(ref, flipped)
    assert result["top1_agreement"] == 50.0 and result["images"] == 2 and result["min_cosine"] < 0.9


def test_range_methods_clip_outliers_differently():
    rng = np.random.default_rng(0)
    values = rng.normal(size=200_000).astype(np.float32)
    values[0] = 60.0  # one outlier
    ranges = {}
    for method in ("minmax", "percentile", "entropy"):
        collector = RangeCollector(method)
        for chunk in np.split(values, 4):
            collector.collect({"x": chunk})
        ranges[method] = collector.ranges()["x"]
    assert ranges["minmax"][1] == pytest.approx(60.0)
    assert 3.0 < ranges["percentile"][1] < 10.0 and 1.0 < ranges["entropy"][1] < 20.0
    assert all(low <= -1.0 for low, _ in ranges.values())
    with pytest.raises(InvalidArgumentError, match="valid: minmax, percentile, entropy"):
        RangeCollector("kl")


def test_tflite_tensor_names_give_module_paths():
    from edgevit.quantize.tflite import module_path

    known = {"patch_embed", "patch_embed.proj", "blocks", "blocks.0", "blocks.0.attn", "blocks.0.attn.qkv", "head"}
    name = ("edgevit.export.graph.ArtifactGraph/edgevit.models.vit.VisionTransformer_model/"
            "torch.nn.modules.container.Sequential_blocks/edgevit.models.vit.Block_0/"
            "edgevit.models.vit.Attention_attn;;edgevit.export.graph.ArtifactGraph/edgevit.models.vit."
            "VisionTransformer_model/torch.nn.modules.container.Sequential_blocks/edgevit.models.vit.Block_0/"
            "edgevit.models.vit.Attention_attn/torch.nn.modules.linear.Linear_qkv;1")
    assert module_path(name, known) == "blocks.0.attn.qkv"
    stem = "root.ArtifactGraph/pkg.VisionTransformer_model/pkg.PatchEmbed_patch_embed/torch.Conv2d_proj;2"
    assert module_path(stem, known) == "patch_embed.proj"


def test_module_blocks_follow_the_model_segments():
    from edgevit.models import create_model
    from edgevit.quantize.base import block_of, module_blocks

    blocks = module_blocks(create_model("test_vit").reparameterize())
    assert blocks["blocks.1.attn.qkv"] == "blocks.1" and blocks["patch_embed.proj"] == "patch_embed"
    assert blocks["norm"] == "head"  # the final norm is part of the head segment
    assert block_of("model.blocks.1.mlp.fc1", blocks) == "blocks.1" and block_of("unknown", blocks) == ""


class _HotSpotQuantizer:
    """A stand-in target: a file is the JSON list of quantized unit ids; quantizing stage 1's conv
    flips the prediction of every other image, anything else adds a little noise."""

    target, backend = "fake", "none"

    def __init__(self, work) -> None:
        from edgevit.precision import precision

        self.scheme, self.work = precision("int8"), work
        self.float_path = work / "float.json"
        self.float_path.write_text("[]")
        self._units = mark_positions([Unit("embed.conv", "Conv", "conv", "embed.conv", "embed", weighted=True),
                                      Unit("stage1.conv", "Conv", "conv", "stage1.conv", "stage1", weighted=True),
                                      Unit("stage2.conv", "Conv", "conv", "stage2.conv", "stage2", weighted=True),
                                      Unit("stage2.fc", "Gemm", "linear", "stage2.fc", "stage2", weighted=True),
                                      Unit("head.fc", "Gemm", "linear", "head.fc", "head", weighted=True)])

    def units(self):
        return list(self._units)

    def kinds(self):
        return ("conv", "linear")

    default_kinds = kinds

    def kind_note(self, kind):
        return ""

    def recipe_options(self):
        return {}

    def calibrate(self, images, method):
        pass

    def build(self, selected, recipe, out):
        import json

        out.write_text(json.dumps([u.id for u in selected]))

    def run(self, path, images):
        import json

        chosen = json.loads(path.read_text())
        logits = np.tile(np.array([[3.0, 1.0, 0.0]], np.float32), (len(images), 1))
        logits += 0.01 * len(chosen) * np.random.default_rng(len(chosen)).standard_normal(logits.shape, np.float32)
        if "stage1.conv" in chosen:
            logits[::2] = logits[::2, ::-1]
        return logits

    def describe_file(self, path):
        return {}

    def kernel_check(self, path, images):
        return {}

    def finish(self, path):
        return {}


def test_max_drop_gives_up_a_hot_block_before_a_whole_kind(tmp_path):
    """Stage 1's one conv holds all the error: --max-drop keeps block:stage1 float, not every conv."""
    from edgevit.quantize.calibration import CalibrationSet
    from edgevit.quantize.search import quantize_file

    calibration = CalibrationSet("digits", 8, np.zeros((8, 3, 4, 4), np.float32))
    result = quantize_file(_HotSpotQuantizer(tmp_path), calibration, Recipe("int8", max_drop=1.0),
                           tmp_path / "out.json")

    table = {row["group"]: row["sqnr_db"] for row in result.sensitivity}
    assert table["kind:conv"] <= table["block:stage1"]  # the whole kind is at least as sensitive as the block...
    assert "block:stage1" in result.recipe.float_groups  # ...but the block is what goes to float
    assert "kind:conv" not in result.recipe.float_groups
    assert result.agreement["top1_agreement"] == 100.0
    assert result.recipe.reasons["max_drop"].startswith("met")
    assert (tmp_path / "out.json").read_text() == '["embed.conv", "stage2.conv", "stage2.fc", "head.fc"]'


def test_float_params_count_what_a_quantized_file_keeps_at_four_bytes():
    """Biases, norms and embeddings always; the layers of the recipe's float groups besides."""
    import torch
    from torch import nn

    from edgevit.models import create_model
    from edgevit.quantize.base import float_params

    model = create_model("test_vit").eval()
    x = torch.zeros(1, 3, 32, 32)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    matrices = sum(m.weight.numel() for m in layers)
    structural = sum(p.numel() for p in model.parameters()) - matrices
    assert float_params(model, x) == float_params(model, x, Recipe("w8")) == structural
    first, last = model.patch_embed.proj.weight.numel(), model.head.weight.numel()
    assert float_params(model, x, Recipe("w8", float_kinds=("first",))) == structural + first
    assert float_params(model, x, Recipe("w8", float_kinds=("last",))) == structural + last
    assert float_params(model, x, Recipe("w8", float_kinds=("conv",))) == structural + first
    assert float_params(model, x, Recipe("w8", float_kinds=("linear", "first"))) == structural + matrices
    assert float_params(model, x, Recipe("w8", float_blocks=("head",))) == structural + last
    block = sum(m.weight.numel() for m in model.blocks[1].modules() if isinstance(m, nn.Linear))
    assert float_params(model, x, Recipe("int8", float_blocks=("blocks.1",))) == structural + block
    assert float_params(model, x, Recipe("int8", float_kinds=("softmax", "layernorm"))) == structural
