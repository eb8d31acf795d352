"""Session behaviour on a hand-built ONNX model: running, validation, prediction, bad input."""

from __future__ import annotations

import importlib.util
import json
import platform
import sys

import numpy as np
import pytest
from runtime_helpers import TINY_CLASSES, TINY_SIZE, write_tiny_onnx
from tolerances import ONE_LAYER, SCORES

from edgevit.errors import (
    ArtifactError,
    InvalidArgumentError,
    MissingDependencyError,
    RuntimeInputError,
    UnknownNameError,
)
from edgevit.runtime import load
from edgevit.runtime.session import _backends_for, resolve_backend

#: every backend for .onnx files installed here: the session's checks must not depend on which runs
ONNX_BACKENDS = [cls.name for cls in _backends_for(".onnx") if cls.available()]


def _expected_logits(x: np.ndarray) -> np.ndarray:
    weights = np.arange(12, dtype=np.float32).reshape(3, TINY_CLASSES) / 10
    return x.mean(axis=(2, 3)) @ weights


def test_run_returns_named_outputs(tiny_onnx):
    x = np.random.rand(3, 3, TINY_SIZE, TINY_SIZE).astype(np.float32)
    with load(tiny_onnx) as session:
        out = session.run({"pixel_values": x})
    assert list(out) == ["logits"]
    ONE_LAYER.check(out["logits"], _expected_logits(x))


def test_specs_come_from_the_model_with_manifest_layout(tiny_onnx):
    with load(tiny_onnx) as session:
        (spec,) = session.input_specs
        assert (spec.name, spec.shape, spec.dtype, spec.layout) == ("pixel_values", (None, 3, 8, 8), "float32", "NCHW")
        assert session.output_specs[0].shape == (None, TINY_CLASSES)
        assert session.manifest.labels == ["cat", "dog", "fish", "bird"]


@pytest.mark.parametrize(
    ("feeds", "words"),
    [
        ({"image": np.zeros((1, 3, 8, 8), np.float32)}, ["unknown input(s) 'image'", "'pixel_values' float32(N, 3, 8, 8)"]),
        ({}, ["missing input(s) 'pixel_values'"]),
        ({"pixel_values": np.zeros((1, 3, 9, 8), np.float32)}, ["shape (1, 3, 9, 8)", "expected (N, 3, 8, 8) (NCHW)"]),
        ({"pixel_values": np.zeros((3, 8, 8), np.float32)}, ["shape (3, 8, 8)", "expected (N, 3, 8, 8)"]),
        ({"pixel_values": np.zeros((1, 3, 8, 8))}, ["dtype float64, expected float32", "astype(np.float32)"]),
        ({"pixel_values": [[0.0]]}, ["must be a numpy array, got list"]),
    ],
)
@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_bad_inputs_name_what_was_expected(tiny_onnx, feeds, words, backend):
    with load(tiny_onnx, backend=backend) as session, pytest.raises(RuntimeInputError) as info:
        session.run(feeds)
    for word in words:
        assert word in str(info.value)


def test_run_after_close_is_refused(tiny_onnx):
    with load(tiny_onnx) as session:
        pass
    with pytest.raises(InvalidArgumentError, match="closed"):
        session.run({"pixel_values": np.zeros((1, 3, 8, 8), np.float32)})


def _photos(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    pil = Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8))
    array = rng.integers(0, 255, (16, 10, 3), dtype=np.uint8)
    return path, broken, pil, array


def test_predict_takes_paths_pil_and_arrays_and_keeps_going_past_a_bad_image(tiny_onnx, tmp_path):
    from edgevit.data.preprocess import PreprocessSpec, preprocess_image

    path, broken, pil, array = _photos(tmp_path)
    images = [path, broken, pil, array, tmp_path / "missing.png"]
    with load(tiny_onnx) as session:
        results = session.predict(images, top_k=3)
    assert [r.ok for r in results] == [True, False, True, True, False]
    assert str(broken) in results[1].error and "decode" in results[1].error
    assert "missing.png" in results[4].error
    assert results[0].source == str(path) and results[2].source == "<image 2>"
    spec = PreprocessSpec(size=TINY_SIZE, resize_mode="warp", interpolation="bilinear")
    for result, image in zip([results[0], results[2], results[3]], [path, pil, array]):
        logits = _expected_logits(preprocess_image(image, spec)[None])[0].astype(np.float64)
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        order = list(np.argsort(-probs)[:3])
        assert list(result.indices) == order
        assert result.labels == tuple(["cat", "dog", "fish", "bird"][i] for i in order)
        SCORES.check(result.scores, probs[order])
        assert list(result.scores) == sorted(result.scores, reverse=True)


class _CountingModel:
    """Wraps a backend model and records the batch size of every call."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def run(self, feeds):
        self.batches.append(len(next(iter(feeds.values()))))
        return self.model.run(feeds)

    def close(self):
        self.model.close()


def test_predict_batches_a_dynamic_model(tiny_onnx):
    with load(tiny_onnx) as session:
        session.backend_model = counter = _CountingModel(session.backend_model)
        assert len(session.predict([np.zeros((9, 9, 3), np.uint8)] * 5, batch_size=2)) == 5
        assert counter.batches == [2, 2, 1]
        counter.batches.clear()
        session.predict(np.zeros((5, 9, 9, 3), np.uint8))
        assert counter.batches == [5]


def test_predict_loops_over_a_fixed_batch_model(tmp_path):
    folder = write_tiny_onnx(tmp_path / "fixed", batch=1)
    with load(folder) as session:
        session.backend_model = counter = _CountingModel(session.backend_model)
        results = session.predict([np.zeros((9, 9, 3), np.uint8)] * 3, top_k=10)
        assert counter.batches == [1, 1, 1]
        assert all(len(r.labels) == TINY_CLASSES for r in results)
        with pytest.raises(InvalidArgumentError, match="fixed batch of 1"):
            session.predict([np.zeros((9, 9, 3), np.uint8)], batch_size=4)


def test_predict_feeds_an_nhwc_model_channels_last(tiny_onnx, tmp_path):
    nhwc = write_tiny_onnx(tmp_path / "tiny-nhwc", layout="NHWC")
    images = list(np.random.default_rng(1).integers(0, 255, (3, 12, 10, 3), dtype=np.uint8))
    with load(tiny_onnx) as nchw_session, load(nhwc) as nhwc_session:
        assert nhwc_session.input_specs[0].shape == (None, TINY_SIZE, TINY_SIZE, 3)
        expected, got = nchw_session.predict(images), nhwc_session.predict(images)
    assert [p.indices for p in got] == [p.indices for p in expected]
    for a, b in zip(got, expected):
        SCORES.check(a.scores, b.scores)


def test_predict_on_a_bare_model_needs_preprocessing(tiny_onnx):
    from edgevit.data.preprocess import PreprocessSpec

    with load(tiny_onnx / "model.onnx") as session:
        assert session.manifest is None
        with pytest.raises(InvalidArgumentError, match="preprocessing"):
            session.predict([np.zeros((9, 9, 3), np.uint8)])
        (result,) = session.predict(np.zeros((9, 9, 3), np.uint8), top_k=2, preprocessing=PreprocessSpec(size=8))
        assert result.labels[0].startswith("class_")


def test_corrupt_model_file_gives_one_clear_error(tiny_onnx):
    (tiny_onnx / "model.onnx").write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(ArtifactError, match="could not load .*model.onnx.*corrupt"):
        load(tiny_onnx)


def test_corrupt_tflite_file_gives_one_clear_error(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError, match="litert could not load"):
        load(path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "is corrupt"),
        (json.dumps({"format": "edgevit-artifact", "format_version": 1}), "missing required fields"),
        (json.dumps([1, 2]), "expected a JSON object"),
    ],
)
def test_corrupt_manifest_gives_one_clear_error(tiny_onnx, content, words):
    (tiny_onnx / "manifest.json").write_text(content)
    with pytest.raises(ArtifactError, match=words):
        load(tiny_onnx)


def test_manifest_that_disagrees_with_the_model_is_refused(tiny_onnx):
    data = json.loads((tiny_onnx / "manifest.json").read_text())
    data["inputs"].append(dict(data["inputs"][0], name="second"))
    (tiny_onnx / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="lists 2 input"):
        load(tiny_onnx)


@pytest.mark.parametrize("name", ["nowhere", "notes.txt"])
def test_paths_that_are_not_models(tmp_path, name):
    if name.endswith(".txt"):
        (tmp_path / name).write_text("hello")
    with pytest.raises(ArtifactError):
        load(tmp_path / name)


def test_missing_backend_names_the_pip_extra(tiny_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependencyError) as info:  # auto: no backend for .onnx is installed
        load(tiny_onnx)
    for cls in _backends_for(".onnx"):
        assert f"pip install 'edgevit[{cls.extra}]' ({cls.name})" in str(info.value)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevit\[onnxruntime\]'"):
        load(tiny_onnx, backend="onnxruntime")


def test_missing_litert_names_the_pip_extra(tmp_path, monkeypatch):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(MissingDependencyError, match=r"edgevit\[litert\]"):
        load(path, backend="litert")


def test_backend_choice_errors(tiny_onnx):
    with pytest.raises(UnknownNameError, match="onnxruntime"):
        load(tiny_onnx, backend="onnxrt")
    with pytest.raises(InvalidArgumentError, match="runs .tflite files, not '.onnx'"):
        load(tiny_onnx, backend="litert")
    with pytest.raises(InvalidArgumentError, match="threads"):
        load(tiny_onnx, threads=0)


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML predicts on macOS")
def test_coreml_on_linux_points_to_the_reference_executor(tmp_path):
    package = tmp_path / "model.mlpackage"
    package.mkdir()
    with pytest.raises(MissingDependencyError, match="coreml-reference"):
        load(package, backend="coreml")


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML predicts on macOS")
def test_auto_runs_mlpackages_with_the_reference_executor_on_linux():
    assert resolve_backend("model.mlpackage").name == "coreml-reference"


def test_predict_reports_every_kind_of_unusable_image_for_that_image_and_classifies_the_rest(tiny_onnx, tmp_path):
    """A decompression bomb, empty arrays and images, NaNs and non-images each get their own
    error; the good images around them are still classified (docs/runtime.md's promise)."""
    from PIL import Image

    path, _, pil, array = _photos(tmp_path)
    bomb = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(bomb)  # 400 Mpixel, a few hundred KB compressed
    images = [path, bomb, np.zeros((0, 0, 3), np.uint8), Image.new("RGB", (0, 5)),
              np.full((8, 8, 3), np.nan, np.float32), None, 42, pil, array]
    with load(tiny_onnx) as session:
        results = session.predict(images, top_k=2)
    assert [r.ok for r in results] == [True, False, False, False, False, False, False, True, True]
    assert "decompression bomb" in results[1].error and "bomb.png" in results[1].error
    assert "empty" in results[2].error and "empty" in results[3].error
    assert "NaN" in results[4].error
    assert "NoneType" in results[5].error and "int" in results[6].error
    with load(tiny_onnx) as session, pytest.raises(InvalidArgumentError, match="got None"):
        session.predict(None)


def _spinning(session) -> str:
    return session.backend_model.session.get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning")


def test_onnxruntime_spins_only_when_asked_and_other_backends_refuse_the_option(tiny_onnx):
    with load(tiny_onnx, backend="onnxruntime") as blocking, load(tiny_onnx, backend="onnxruntime", spin=True) as spin:
        assert (_spinning(blocking), _spinning(spin)) == ("0", "1")
        x = {"pixel_values": np.ones((1, 3, TINY_SIZE, TINY_SIZE), np.float32)}
        np.testing.assert_array_equal(blocking.run(x)["logits"], spin.run(x)["logits"])
    with pytest.raises(InvalidArgumentError, match="spin must be True or False"):
        load(tiny_onnx, backend="onnxruntime", spin="yes")
    with pytest.raises(InvalidArgumentError, match="takes no option 'spinning'.*its options: spin"):
        load(tiny_onnx, backend="onnxruntime", spinning=True)


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs the openvino extra")
def test_an_option_another_backend_takes_is_refused_naming_that_backend(tiny_onnx):
    from edgevit.runtime import options_for

    with pytest.raises(InvalidArgumentError, match="'openvino' takes no option 'spin'.*an option of onnxruntime"):
        load(tiny_onnx, backend="openvino", spin=True)
    assert options_for(tiny_onnx, "openvino", spin=True) == {}  # tools that run many file types drop it
    assert options_for(tiny_onnx, "onnxruntime", spin=True) == {"spin": True}
    assert options_for(tiny_onnx, "onnxruntime", spin=None) == {}


def test_a_backend_failing_on_valid_inputs_is_one_clear_error(tiny_onnx):
    class Failing:
        def run(self, feeds):
            raise RuntimeError("method->execute() failed with error 0x10\nmore native detail")

    with load(tiny_onnx, backend="onnxruntime") as session:
        real, session.backend_model = session.backend_model, Failing()
        with pytest.raises(ArtifactError, match=r"onnxruntime failed to run model.onnx on valid inputs "
                                                r"\(RuntimeError: method->execute\(\) failed with error 0x10\)") as error:
            session.run({"pixel_values": np.ones((1, 3, TINY_SIZE, TINY_SIZE), np.float32)})
        assert isinstance(error.value.__cause__, RuntimeError)
        session.backend_model = real
