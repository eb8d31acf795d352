"""The openvino backend's own settings and errors, with real OpenVINO.

Its numbers against the other ONNX backends (fp32, fp16, int8, dynamic batch) are tested over the
registry in test_backends.py; the session's input checks over every ONNX backend in test_session.py.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from runtime_helpers import TINY_SIZE

from edgevit.errors import ArtifactError, MissingDependencyError, UnsupportedOpError
from edgevit.runtime import load
from edgevit.runtime.session import resolve_backend

pytest.importorskip("openvino")


def _x(batch: int = 1) -> np.ndarray:
    return np.random.default_rng(0).random((batch, 3, TINY_SIZE, TINY_SIZE), dtype=np.float32)


def test_latency_hint_threads_and_float32_reach_the_compiled_model(tiny_onnx):
    with load(tiny_onnx, backend="openvino", threads=2) as session:
        compiled = session.backend_model.compiled
        assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 2
        assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
        assert compiled.get_property("NUM_STREAMS") == 1  # what the latency hint means on the CPU
        assert (session.threads, session.backend_model.threads) == (2, 2)


def test_without_threads_openvino_chooses_them(tiny_onnx):
    import openvino as ov

    default = ov.Core().compile_model(str(tiny_onnx / "model.onnx"), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    with load(tiny_onnx, backend="openvino") as session:
        compiled = session.backend_model.compiled
        assert compiled.get_property("INFERENCE_NUM_THREADS") == default.get_property("INFERENCE_NUM_THREADS")


def test_outputs_belong_to_the_caller_and_inputs_need_not_be_contiguous(tiny_onnx):
    """The infer request reuses its output tensors: what run() returned must survive the next run."""
    channels_last = np.ascontiguousarray(_x(2).transpose(0, 2, 3, 1))
    strided = channels_last.transpose(0, 3, 1, 2)  # NCHW view of NHWC memory
    with load(tiny_onnx, backend="openvino") as session:
        first = session.run({"pixel_values": strided})["logits"]
        kept = first.copy()
        session.run({"pixel_values": np.zeros_like(kept, shape=(2, 3, TINY_SIZE, TINY_SIZE))})
        np.testing.assert_array_equal(first, kept)
        np.testing.assert_array_equal(first, session.run({"pixel_values": np.ascontiguousarray(strided)})["logits"])


def test_a_corrupt_file_names_the_file_and_openvinos_reason(tiny_onnx):
    path = tiny_onnx / "model.onnx"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactError) as info:
        load(tiny_onnx, backend="openvino")
    message = str(info.value)
    assert "OpenVINO could not read" in message and str(path) in message
    reason = message.split("as an ONNX model (", 1)[1].split(")", 1)[0]
    assert reason.strip() and "Check '" not in reason and ".cpp" not in reason  # OpenVINO's words, not its sources


def test_an_op_openvino_cannot_convert_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], domain="com.example")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                      helper.make_opsetid("com.example", 1)]), str(path))
    with pytest.raises(UnsupportedOpError, match=r"cannot run .*model.onnx.*com\.example\.Mystery.*onnxruntime"):
        load(path, backend="openvino")


def test_missing_openvino_names_the_extra(tiny_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevit\[openvino\]'"):
        load(tiny_onnx, backend="openvino")


def test_auto_keeps_onnxruntime_first_and_falls_back_to_openvino(tiny_onnx, monkeypatch):
    assert resolve_backend(tiny_onnx / "model.onnx").name == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as on a device with only the openvino extra
    with load(tiny_onnx) as session:
        assert session.backend == "openvino"
        assert session.run({"pixel_values": _x()})["logits"].shape == (1, 4)
