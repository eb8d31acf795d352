"""Every backend available here, found through the registry: each family's exported ``test_*`` model
against PyTorch (slow), and every ONNX backend against the preferred one on the same files."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_helpers import TINY_SIZE, write_tiny_onnx
from tolerances import ARTIFACT, INT8_BACKENDS_SQNR_DB, max_rel_err

from edgevit.runtime import BACKENDS, load
from edgevit.runtime.session import _backends_for

SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}


def _available_backends(suffix: str) -> list[str]:
    return [cls.name for cls in _backends_for(suffix) if cls.available()]


ONNX_BACKENDS = _available_backends(".onnx")


def _assert_agree(got: np.ndarray, reference: np.ndarray, precision: str, what: str) -> None:
    """float files within their precision's artifact row (relative to scale); int8 by SQNR."""
    from edgevit.quantize.metrics import sqnr_db

    assert got.shape == reference.shape, what
    if precision == "int8":
        sqnr = sqnr_db(reference, got)
        assert sqnr >= INT8_BACKENDS_SQNR_DB.value, f"{what}: SQNR {sqnr:.1f} dB"
        return
    err = max_rel_err(got, reference)
    assert err <= ARTIFACT[precision].max_rel_err, f"{what}: relative error {err:.3g}"


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_every_onnx_backend_runs_a_file_as_the_preferred_one_does(tmp_path, backend, precision):
    """Same specs (names, dtypes, the dynamic batch as None), same numbers, batch sizes changing between calls."""
    folder = write_tiny_onnx(tmp_path / f"tiny-onnx-{precision}", precision=precision)
    rng = np.random.default_rng(0)
    batches = [rng.random((n, 3, TINY_SIZE, TINY_SIZE), dtype=np.float32) for n in (1, 3, 5, 1)]
    with load(folder, backend=ONNX_BACKENDS[0]) as preferred, load(folder, backend=backend) as session:
        assert session.backend == backend
        assert (session.input_specs, session.output_specs) == (preferred.input_specs, preferred.output_specs)
        assert session.input_specs[0].shape == (None, 3, TINY_SIZE, TINY_SIZE)
        for x in batches:
            got = session.run({"pixel_values": x})["logits"]
            _assert_agree(got, preferred.run({"pixel_values": x})["logits"], precision, f"{backend} {precision}")


@pytest.mark.slow  # converts every test family to every target before comparing backends
@pytest.mark.parametrize("target", sorted(SUFFIX))
def test_matches_pytorch_on_every_available_backend(family_artifacts, target):
    name, artifacts, x, expected = family_artifacts
    backends = _available_backends(SUFFIX[target])
    assert backends, f"no backend for {target} is installed in the test environment"
    for backend in backends:
        with load(artifacts[target], backend=backend, threads=2) as session:
            assert session.backend == backend
            assert [s.name for s in session.input_specs] == [s.name for s in session.manifest.inputs]
            outputs = session.run({session.input_specs[0].name: x})
            got = outputs[session.output_specs[0].name]
        assert got.shape == expected.shape
        err = max_rel_err(got, expected, floor=1.0)  # logits below 1 are judged against 1
        assert err <= ARTIFACT["fp32"].max_rel_err, f"{name} {target} on {backend}: relative error {err:.3g}"
        assert int(got.argmax()) == int(expected.argmax())


@pytest.mark.slow
def test_every_onnx_backend_runs_every_precision_of_every_family_as_the_preferred_one_does(onnx_precisions):
    """fp32, fp16 and int8 files of each digits-trained test model, on digits images (int8's calibration source)."""
    name, files, images = onnx_precisions
    for precision, path in files.items():
        outputs = {}
        for backend in ONNX_BACKENDS:
            with load(path, backend=backend) as session:
                feed = session.input_specs[0].name
                outputs[backend] = np.concatenate([session.run({feed: x[None]})[session.output_specs[0].name]
                                                   for x in images])
        reference = outputs[ONNX_BACKENDS[0]]
        for backend, got in outputs.items():
            _assert_agree(got, reference, precision, f"{name} {precision} on {backend}")
            assert np.mean(got.argmax(1) == reference.argmax(1)) >= ARTIFACT[precision].min_top1


@pytest.mark.slow
def test_auto_picks_a_backend_for_each_format(family_artifacts):
    _, artifacts, _, _ = family_artifacts
    for target, folder in artifacts.items():
        with load(folder) as session:
            assert session.backend in _available_backends(SUFFIX[target])


def test_onnxruntime_threads_reach_the_session(tiny_onnx):
    with load(tiny_onnx, backend="onnxruntime", threads=2) as session:
        options = session.backend_model.session.get_session_options()
        assert options.intra_op_num_threads == 2
        assert options.inter_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert session.threads == 2


@pytest.mark.slow
def test_litert_threads_reach_the_interpreter(family_artifacts, monkeypatch):
    _, artifacts, x, _ = family_artifacts
    import ai_edge_litert.interpreter as litert

    seen = []

    class Recording(litert.Interpreter):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("num_threads"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(litert, "Interpreter", Recording)
    with load(artifacts["tflite"], backend="litert", threads=2) as session:
        session.run({session.input_specs[0].name: x})
        assert session.backend_model.threads == 2
    assert seen == [2]


def test_every_registered_backend_reports_itself():
    for name in BACKENDS.names():
        try:
            cls = BACKENDS.get(name)
        except (ImportError, AttributeError):
            continue  # registered by another module that is not present (or not finished) here
        assert cls.name == name
        assert cls.suffixes and all(s.startswith(".") for s in cls.suffixes)
        assert isinstance(cls.available(), bool)
        if cls.available():
            assert cls.version() != "unknown"
