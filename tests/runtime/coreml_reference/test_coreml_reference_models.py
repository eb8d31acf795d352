"""Whole zoo models: every family's ``test_*`` model exported to Core ML and run by the executor.

The export suite checks the default deployment target (iOS16); this one exports iOS18 fp16
programs, whose ops are the newest definitions, and a dynamic-batch program, and compares
the executor's logits with PyTorch's directly.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.runtime import load


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
