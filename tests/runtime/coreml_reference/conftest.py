"""Fixtures for the coreml-reference tests: build a tiny MIL program, save it, run it.

coremltools' ``convert`` calls ``gc.collect()``, which takes about a second once torch is
imported; ``gc.freeze()`` moves the objects that exist after the imports out of the
collector's way, so each tiny conversion takes ~0.1 s. The freeze is undone at the end.
"""

from __future__ import annotations

import gc
import itertools
from pathlib import Path

import numpy as np
import pytest

_counter = itertools.count()


@pytest.fixture(scope="session")
def coremltools_builder():
    """``(ct, mb, types)``, imported once per session; skips when coremltools is absent."""
    ct = pytest.importorskip("coremltools")
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    gc.collect()
    gc.freeze()
    yield ct, mb, types
    gc.unfreeze()


@pytest.fixture(scope="session")
def save_program(coremltools_builder, tmp_path_factory):
    """``save(build, inputs, opset) -> path``: a MIL program built by ``build(mb, *vars)`` as .mlpackage."""
    ct, mb, types = coremltools_builder
    folder = tmp_path_factory.mktemp("mil")

    def save(build, inputs: list[np.ndarray], opset: int = 16) -> Path:
        target = getattr(ct.target, f"iOS{opset}")
        specs = [mb.TensorSpec(a.shape, dtype=_mil_dtype(types, a.dtype)) for a in inputs]
        program = mb.program(input_specs=specs, opset_version=target)(_main(mb, build, len(inputs)))
        path = folder / f"program_{next(_counter)}.mlpackage"
        # written where it is kept: without package_dir coremltools writes each one to the temp folder
        # too and deletes them only at exit (a killed worker left 437)
        ct.convert(program, convert_to="mlprogram", minimum_deployment_target=target,
                   pass_pipeline=ct.PassPipeline.EMPTY, skip_model_load=True,
                   compute_precision=ct.precision.FLOAT32, package_dir=str(path))
        return path

    return save


def _mil_dtype(types, dtype: np.dtype):
    return {np.dtype(np.float32): types.fp32, np.dtype(np.float16): types.fp16,
            np.dtype(np.int32): types.int32}[np.dtype(dtype)]


def _main(mb, build, n: int):
    """A function with exactly ``n`` positional parameters (mb.program reads the count)."""
    if n == 1:
        return lambda x: build(mb, x)
    if n == 2:
        return lambda x, y: build(mb, x, y)
    if n == 3:
        return lambda x, y, z: build(mb, x, y, z)
    raise ValueError(f"{n} inputs")
