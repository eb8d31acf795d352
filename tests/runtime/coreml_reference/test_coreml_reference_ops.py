"""Every op of the coreml-reference executor against an independent computation.

Each case is a tiny MIL program built with coremltools' builder, converted and saved as a
real .mlpackage (the pass pipeline is empty, so the op reaches the file as written), loaded
by the executor and compared with a float64 numpy formula or PyTorch on the same inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from coreml_reference_cases_compression import CASES as COMPRESSION_CASES
from coreml_reference_cases_image import CASES as IMAGE_CASES
from coreml_reference_cases_indexing import CASES as INDEXING_CASES
from coreml_reference_cases_layers import CASES as LAYER_CASES
from coreml_reference_cases_math import CASES as MATH_CASES
from coreml_reference_cases_precision import CASES as PRECISION_CASES
from coreml_reference_cases_sampling import CASES as SAMPLING_CASES

from edgevit.runtime.backends.coreml_reference import CoreMLReferenceBackend, supported_ops

CASES = (MATH_CASES + LAYER_CASES + IMAGE_CASES + COMPRESSION_CASES + PRECISION_CASES + INDEXING_CASES
         + SAMPLING_CASES)


def _as_float64(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float64) if array.dtype.kind == "f" else array


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_op_matches_independent_computation(case, save_program):
    path = save_program(case.build, case.inputs, case.opset)
    model = CoreMLReferenceBackend().open(path, None)
    ran = model.program.op_types()
    assert case.op in ran, f"the saved program does not hold {case.op!r} (it has {sorted(ran)})"
    feeds = dict(zip((spec.name for spec in model.input_specs), case.inputs))
    outputs = list(model.run(feeds).values())
    expected = case.expect(*(_as_float64(a) for a in case.inputs))
    expected = list(expected) if isinstance(expected, tuple) else [expected]
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected):
        want = np.asarray(want)
        assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
        if case.expected_dtype:
            assert got.dtype == np.dtype(case.expected_dtype), f"dtype {got.dtype}, expected {case.expected_dtype}"
        np.testing.assert_allclose(_as_float64(got), want, rtol=case.rtol, atol=case.atol)


def test_every_supported_op_has_a_case():
    covered = {case.op for case in CASES} | {"const"}  # every program holds consts
    missing = sorted(set(supported_ops()) - covered)
    assert not missing, f"ops without an op-level test case: {missing}"


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


def test_the_documentation_lists_every_supported_op():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "coreml_reference.md").read_text()
    missing = [name for name in supported_ops() if f"`{name}`" not in text]
    assert not missing, f"docs/coreml_reference.md does not list: {missing}"
    assert f"{len(supported_ops())} MIL ops" in text


def test_fill_with_a_shape_of_unknown_length_has_an_unknown_rank(coremltools_builder, tmp_path):
    """coremltools declares such a fill ``fp32[variadic]``: one variadic dim means any rank."""
    ct, mb, types = coremltools_builder
    from coremltools.converters.mil.mil import get_new_symbol

    spec = mb.TensorSpec((get_new_symbol(),), dtype=types.int32)
    program = mb.program(input_specs=[spec], opset_version=ct.target.iOS16)(lambda s: mb.fill(shape=s, value=1.5))
    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                       pass_pipeline=ct.PassPipeline.EMPTY, skip_model_load=True,
                       compute_precision=ct.precision.FLOAT32)
    model.save(str(tmp_path / "fill.mlpackage"))
    reference = CoreMLReferenceBackend().open(tmp_path / "fill.mlpackage", None)
    out = list(reference.run({reference.input_specs[0].name: np.array([2, 1, 3], np.int32)}).values())[0]
    np.testing.assert_array_equal(out, np.full((2, 1, 3), 1.5, np.float32))
