"""``backend="auto"`` by measurement: ``edgevit bench --backend all --keep-fastest`` times every
installed backend on an artifact and records the fastest; ``runtime.load`` then runs it, while the
record still describes this machine, this file and these backend versions."""

from __future__ import annotations

import importlib.util
import json

import pytest

from edgevit._files import foreign_files
from edgevit.artifact import BACKEND_CHOICE_NAME, artifact_digest
from edgevit.cli import main
from edgevit.runtime import load
from edgevit.runtime.choice import read_choice, write_choice

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                reason="needs two backends that open .onnx: the openvino extra")


def _versions():
    from edgevit.runtime import BACKENDS

    return {name: BACKENDS.get(name).version() for name in ("onnxruntime", "openvino")}


def test_bench_all_times_both_onnx_backends_and_auto_then_runs_the_fastest(tiny_onnx, capsys):
    before = artifact_digest(tiny_onnx)
    assert main(["bench", str(tiny_onnx), "--backend", "all", "--keep-fastest", "--runs", "5", "--warmup", "1",
                 "--no-memory", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "@onnxruntime" in out and "@openvino" in out
    record = json.loads((tiny_onnx / BACKEND_CHOICE_NAME).read_text())
    assert set(record["p50_ms"]) == {"onnxruntime", "openvino"}
    assert record["fastest"] == min(record["p50_ms"], key=record["p50_ms"].get)
    assert f"kept: {tiny_onnx.name} runs with {record['fastest']}" in out
    with load(tiny_onnx) as session:
        assert session.backend == record["fastest"]
        assert session.backend_reason.startswith("measured fastest here on ")
    assert artifact_digest(tiny_onnx) == before  # a machine's record is not part of the artifact
    assert BACKEND_CHOICE_NAME not in foreign_files(tiny_onnx)  # exporting again may replace it


@pytest.mark.parametrize("fastest", ["onnxruntime", "openvino"])
def test_auto_follows_the_record_not_the_fixed_order(tiny_onnx, fastest):
    other = {"onnxruntime": "openvino", "openvino": "onnxruntime"}[fastest]
    write_choice(tiny_onnx, "model.onnx", {fastest: 1.0, other: 2.0}, _versions(), None)
    with load(tiny_onnx) as session:
        assert session.backend == fastest
    with load(tiny_onnx, backend=other) as session:  # asking by name still wins
        assert session.backend == other and session.backend_reason == f"asked for backend={other!r}"


def test_options_the_measured_fastest_does_not_take_keep_the_fixed_order(tiny_onnx):
    write_choice(tiny_onnx, "model.onnx", {"openvino": 1.0, "onnxruntime": 2.0}, _versions(), None)
    with load(tiny_onnx, spin=True) as session:  # onnxruntime's intra-op spinning, asked for (edgevit serve --spin)
        assert session.backend == "onnxruntime"
        assert "measured fastest here: openvino, which does not take spin" in session.backend_reason


def _edit(record, key, value):
    record[key] = value


@pytest.mark.parametrize(("change", "why"), [
    (lambda r: r["machine"].update(cpu_model="Some Other CPU"), "was measured on another machine (Some Other CPU"),
    (lambda r: r.update(model_sha256="0" * 64, model_mtime_ns=0), "model.onnx changed since backend_choice.json was"),
    (lambda r: _edit(r, "model_bytes", 1), "model.onnx changed since backend_choice.json was measured"),
    (lambda r: r["versions"].update(openvino="1.0"), "timed other backend versions: openvino 1.0 (here "),
    (lambda r: _edit(r, "format_version", 2), "is format version 2; this edgevit reads 1"),
    (lambda r: _edit(r, "fastest", "litert"), "cannot be read (ValueError"),
    (lambda r: _edit(r, "p50_ms", {"openvino": "fast", "onnxruntime": 2.0}), "cannot be read (ValueError"),
    (lambda r: _edit(r, "model_file", "model.ort"), "measured 'model.ort', not 'model.onnx'"),
])
def test_a_record_that_no_longer_applies_falls_back_to_the_fixed_order_and_says_why(tiny_onnx, change, why):
    write_choice(tiny_onnx, "model.onnx", {"openvino": 1.0, "onnxruntime": 2.0}, _versions(), None)
    path = tiny_onnx / BACKEND_CHOICE_NAME
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    with load(tiny_onnx) as session:
        assert session.backend == "onnxruntime"
        assert session.backend_reason.startswith("the first installed of: onnxruntime, openvino (")
        assert why in session.backend_reason


def test_a_corrupt_record_or_another_thread_count_is_not_used(tiny_onnx):
    write_choice(tiny_onnx, "model.onnx", {"openvino": 1.0, "onnxruntime": 2.0}, _versions(), 2)
    assert read_choice(tiny_onnx, "model.onnx", _versions, threads=2).backend == "openvino"
    assert "measured at 2 threads, not 1 threads" in read_choice(tiny_onnx, "model.onnx", _versions, threads=1).reason
    assert "measured at 2 threads, not the backends' default threads" in read_choice(tiny_onnx, "model.onnx", _versions).reason
    (tiny_onnx / BACKEND_CHOICE_NAME).write_text("{not json")
    choice = read_choice(tiny_onnx, "model.onnx", _versions)
    assert choice.backend is None and "cannot be read (JSONDecodeError" in choice.reason
    assert "no measurement here" in read_choice(tiny_onnx.parent, "model.onnx", _versions).reason


def test_keeping_needs_two_backends_and_bench_says_so(tiny_onnx, capsys):
    with pytest.raises(Exception, match="needs at least two backends timed on model.onnx, got onnxruntime"):
        write_choice(tiny_onnx, "model.onnx", {"onnxruntime": 1.0}, _versions(), None)
    assert main(["bench", str(tiny_onnx), "--keep-fastest", "--no-memory", "--quiet"]) == 1
    assert "InvalidArgumentError: --keep-fastest records the fastest of several backends: add --backend all" in \
        capsys.readouterr().err
    assert main(["bench", str(tiny_onnx), "--backend", "all", "--url", "127.0.0.1:1", "--quiet"]) == 1
    assert "InvalidArgumentError: --backend all times the backends of this machine" in capsys.readouterr().err
    assert not (tiny_onnx / BACKEND_CHOICE_NAME).exists()


def test_the_model_file_is_hashed_only_when_its_size_or_time_changed(tiny_onnx, monkeypatch):
    import os

    import edgevit.runtime.choice as choice

    write_choice(tiny_onnx, "model.onnx", {"openvino": 1.0, "onnxruntime": 2.0}, _versions(), None)
    hashed = []
    real = choice.file_sha256
    monkeypatch.setattr(choice, "file_sha256", lambda path: hashed.append(path) or real(path))
    assert read_choice(tiny_onnx, "model.onnx", _versions).backend == "openvino" and hashed == []
    model = tiny_onnx / "model.onnx"
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes: the digest decides
    assert read_choice(tiny_onnx, "model.onnx", _versions).backend == "openvino" and hashed == [model]
    data = bytearray(model.read_bytes())
    data[-1] ^= 1  # same size, other bytes
    model.write_bytes(bytes(data))
    assert "model.onnx changed since" in read_choice(tiny_onnx, "model.onnx", _versions).reason
