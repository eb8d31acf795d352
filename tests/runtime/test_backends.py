"""Every family's exported ``test_*`` model through every backend available here, against PyTorch."""

from __future__ import annotations

import pytest
from tolerances import ARTIFACT, max_rel_err

from edgevit.runtime import BACKENDS, load
from edgevit.runtime.session import _backends_for

pytestmark = pytest.mark.slow  # converts every test family to every target before comparing backends

SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}


def _available_backends(suffix: str) -> list[str]:
    return [cls.name for cls in _backends_for(suffix) if cls.available()]


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
