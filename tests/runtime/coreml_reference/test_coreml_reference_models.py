"""Whole zoo models: every family's ``test_*`` model exported to Core ML and run by the executor.

The export suite checks the default deployment target (iOS16); this one exports iOS18 fp16
programs, whose ops are the newest definitions, and a dynamic-batch program, and compares
the executor's logits with PyTorch's directly.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.runtime import load

pytestmark = pytest.mark.slow  # converts models with coremltools at every opset


def _test_models() -> list[str]:
    from edgevit.models import list_models

    return list_models("test_*")


def _model(name: str):
    from edgevit.models import create_model

    return create_model(name).eval()


def _export(model, out, **options):
    from edgevit.export import export

    return export(model, target="coreml", out=out, verify=False, quiet=True, **options).path


def _torch_logits(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _inputs(name: str, batch: int) -> np.ndarray:
    from edgevit.models import model_info

    return np.random.default_rng(0).standard_normal((batch, *model_info(name).input_size)).astype(np.float32)


@pytest.mark.parametrize("name", _test_models())
def test_ios18_fp16_export_matches_pytorch(name, coremltools_builder, tmp_path):
    model, x = _model(name), _inputs(name, 1)
    expected = _torch_logits(model, x)
    with load(_export(model, tmp_path, precision="fp16", deployment_target="iOS18"),
              backend="coreml-reference") as session:
        assert session.backend == "coreml-reference"
        got = session.run({"input": x})["logits"]
    assert got.dtype == np.float32 and got.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(got - expected).max()) <= 0.02 * max(scale, 1.0)
    cosine = float((got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected))
    assert cosine >= 0.999
    assert int(got.argmax()) == int(expected.argmax())


def test_dynamic_batch_program_runs_at_several_batch_sizes(coremltools_builder, tmp_path):
    model = _model("test_vit")
    path = _export(model, tmp_path, precision="fp32", batch="dynamic")
    with load(path, backend="coreml-reference") as session:
        assert session.input_specs[0].shape[0] is None
        for batch in (1, 3):
            x = _inputs("test_vit", batch)
            got = session.run({"input": x})["logits"]
            np.testing.assert_allclose(got, _torch_logits(model, x), rtol=1e-4, atol=1e-5)


# -- weights compressed by coremltools.optimize ------------------------------------------------------

#: uniform palettes (no k-means) keep the conversions quick
COMPRESSIONS = {
    "w8-affine-ios16": (16, "linear_quantize_weights", {"mode": "linear_symmetric"}),
    "w6-palette-ios16": (16, "palettize_weights", {"nbits": 6, "mode": "uniform"}),
    "w4-blockwise-ios18": (18, "linear_quantize_weights",
                           {"mode": "linear_symmetric", "dtype": "int4", "granularity": "per_block", "block_size": 16}),
    "w4-grouped-palette-ios18": (18, "palettize_weights",
                                 {"nbits": 4, "mode": "uniform", "granularity": "per_grouped_channel",
                                  "group_size": 8}),
    "sparse-palette-ios18": (18, "prune_then_palettize", {"nbits": 4, "mode": "uniform"}),
}

#: the export's cosine thresholds for w8 / w6 / w4 weights
MIN_COSINE = {"w8-affine-ios16": 0.99, "w6-palette-ios16": 0.98, "w4-blockwise-ios18": 0.9,
              "w4-grouped-palette-ios18": 0.9}


@pytest.fixture(scope="module")
def vit_programs(coremltools_builder):
    """test_vit converted to fp16 ML Programs for iOS16 and iOS18, with the model and an input."""
    import torch

    ct = coremltools_builder[0]
    model = _model("test_vit")
    x = _inputs("test_vit", 1)
    prepared = _model("test_vit")
    prepared.load_state_dict(model.state_dict())
    prepared = prepared.reparameterize() or prepared
    program = torch.export.export(prepared, (torch.from_numpy(x),)).run_decompositions({})
    converted = {
        ios: ct.convert(program, convert_to="mlprogram", inputs=[ct.TensorType(name="input", shape=x.shape, dtype=np.float32)],
                        minimum_deployment_target=getattr(ct.target, f"iOS{ios}"), skip_model_load=True,
                        compute_precision=ct.precision.FLOAT16)
        for ios in (16, 18)
    }
    return converted, model, x


def _compress(cto, mlmodel, how: str, settings: dict):
    if how == "prune_then_palettize":
        pruned = cto.prune_weights(mlmodel, cto.OptimizationConfig(
            global_config=cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=0)))
        return cto.palettize_weights(pruned, cto.OptimizationConfig(
            global_config=cto.OpPalettizerConfig(weight_threshold=0, **settings)), joint_compression=True)
    config_class = cto.OpLinearQuantizerConfig if how == "linear_quantize_weights" else cto.OpPalettizerConfig
    config = cto.OptimizationConfig(global_config=config_class(weight_threshold=0, **settings))
    return getattr(cto, how)(mlmodel, config)


@pytest.mark.parametrize("kind", sorted(COMPRESSIONS))
def test_compressed_weights_decompress_exactly_as_coremltools_does(kind, vit_programs, tmp_path):
    import coremltools.optimize.coreml as cto
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil

    converted, model, x = vit_programs
    ios, how, settings = COMPRESSIONS[kind]
    compressed = _compress(cto, converted[ios], how, settings)
    path = tmp_path / f"{kind}.mlpackage"
    compressed.save(str(path))
    with load(path, backend="coreml-reference") as session:
        program = session.backend_model.program
        (got,) = session.run({"input": x}).values()
    spec = compressed.get_spec()
    theirs = load_mil(spec, spec.specificationVersion, str(path / "Data" / "com.apple.CoreML" / "weights"))
    compared = 0
    for op in theirs.functions["main"].operations:
        if op.op_type.startswith("constexpr_"):
            values = op.materialized_val_inference()
            for var, value in zip(op.outputs, values if isinstance(values, tuple) else (values,)):
                np.testing.assert_array_equal(program.constants[var.name], np.asarray(value).astype(
                    program.constants[var.name].dtype), err_msg=f"{kind}: {var.name}")
                compared += 1
    assert compared >= 10, f"{kind}: only {compared} compressed constants"
    assert np.isfinite(got).all()
    if kind in MIN_COSINE:  # 50% pruning of a random-init model changes its answer: not judged
        got, expected = got.astype(np.float64), _torch_logits(model, x).astype(np.float64)
        cosine = float((got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected))
        assert cosine >= MIN_COSINE[kind], f"{kind}: cosine {cosine:.4f} with PyTorch"
