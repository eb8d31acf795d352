"""edgevit._files: files are replaced whole or not at all, with the permissions of any new file."""

from __future__ import annotations

import os
import signal
import stat
import threading

import pytest

from edgevit._files import (
    normal_modes,
    read_json,
    replacing,
    signals_deferred,
    staging_dir,
    umask,
    write_bytes,
    write_json,
    write_text,
)
from edgevit.errors import ArtifactError


@pytest.fixture
def mask():
    old = os.umask(0o022)
    yield 0o022
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_text_gives_normal_permissions_and_leaves_no_temporary(tmp_path, mask):
    path = write_text(tmp_path / "report.json", "{}\n")
    assert _mode(path) == 0o644 and path.read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_replacing_keeps_the_old_file_when_the_writer_fails(tmp_path, mask):
    path = tmp_path / "weights.safetensors"
    path.write_text("old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer died")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_staging_dir_and_normal_modes_undo_private_permissions(tmp_path, mask):
    folder = staging_dir(tmp_path, "cas_vit-onnx-fp32")
    assert folder.name.startswith(".cas_vit-onnx-fp32.") and _mode(folder) == 0o755
    (folder / "weights").mkdir(mode=0o700)
    (folder / "weights" / "w.bin").write_bytes(b"x")
    (folder / "weights" / "w.bin").chmod(0o600)
    (folder / "run.sh").write_text("#!/bin/sh\n")
    (folder / "run.sh").chmod(0o700)
    normal_modes(folder)
    assert _mode(folder / "weights") == 0o755
    assert _mode(folder / "weights" / "w.bin") == 0o644
    assert _mode(folder / "run.sh") == 0o755
    assert umask() == 0o022


def test_weights_bench_reports_and_deployments_are_written_with_normal_permissions(tmp_path, mask):
    import torch

    from edgevit.cluster.deploy import Deployment, write_deployment
    from edgevit.train import save_weights

    weights = save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    deployment = write_deployment(tmp_path, Deployment(plan_digest="0" * 64, pieces=(), addresses={}))
    for path in (weights, deployment):
        assert _mode(path) == 0o644, path


def test_file_sha256_is_one_function(tmp_path):
    import hashlib

    import edgevit.artifact
    from edgevit._files import file_sha256

    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * (3 << 20))
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert edgevit.artifact.file_sha256 is file_sha256


def test_write_json_has_the_one_format_and_reads_back(tmp_path, mask):
    path = write_json(tmp_path / "plan.json", {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'  # key order kept, final newline
    assert _mode(path) == 0o644 and read_json(path) == {"b": 1, "a": [1, 2]}


def test_write_json_failing_half_way_leaves_the_old_file_and_no_temporary(tmp_path, mask):
    path = write_json(tmp_path / "manifest.json", {"model": "old"})
    before = path.read_text()
    written = []

    def default(value):  # the serializer dies after part of the file is out
        written.append(value)
        if len(written) > 1:
            raise TypeError("cannot serialize")
        return "first"

    big = {f"key{i}": "x" * 100 for i in range(2000)}  # more than one buffer of text before the failure
    with pytest.raises(TypeError, match="cannot serialize"):
        write_json(path, {**big, "one": object(), "two": object()}, default=default)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_write_json_to_a_new_path_leaves_nothing_when_it_fails(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "new.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_is_atomic(tmp_path, mask):
    path = write_bytes(tmp_path / "model.tflite", b"TFL3")
    assert path.read_bytes() == b"TFL3" and _mode(path) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


@pytest.mark.parametrize(("content", "words"), [
    (b'{"model": ', "is corrupt: Expecting value"),
    (b"\xff\xfe{}", "is corrupt: not UTF-8"),
])
def test_read_json_names_a_corrupt_file(tmp_path, content, words):
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=words) as info:
        read_json(path, hint="split the model again")
    assert str(path) in str(info.value) and str(info.value).endswith("; split the model again")


def test_read_json_names_a_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        read_json(tmp_path / "deployment.json")


def test_deployments_and_plans_read_through_read_json(tmp_path):
    from edgevit.cluster.deploy import read_deployment
    from edgevit.cluster.plans import load_plan

    (tmp_path / "deployment.json").write_text("{")
    with pytest.raises(ArtifactError, match="deployment.json is corrupt: .*; deploy the plan again"):
        read_deployment(tmp_path)
    (tmp_path / "plan.json").write_text("[1,")
    with pytest.raises(ArtifactError, match="plan.json is corrupt"):
        load_plan(tmp_path)


class _Unwound(Exception):
    pass


def test_a_signal_in_a_deferred_block_unwinds_only_after_it(tmp_path):
    """A real SIGTERM to this process while a staging folder is being made: the folder is recorded
    first, and the signal's exception comes at the end of the block, where a cleanup can see it."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Python runs signal handlers on the main thread only")

    def handler(signum, frame):
        raise _Unwound(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    made = []
    try:
        pool = threading.Event()
        worker = threading.Thread(target=pool.wait, daemon=True)  # a converter's thread pool, as in an export
        worker.start()
        with pytest.raises(_Unwound), signals_deferred():
            signal.raise_signal(signal.SIGTERM)  # to this thread, at once (os.kill may reach another thread later)
            made.append(staging_dir(tmp_path, "a"))
        pool.set()
        assert len(made) == 1 and made[0].is_dir()
        with pytest.raises(_Unwound):  # outside the block the same signal unwinds at once
            signal.raise_signal(signal.SIGTERM)
            made.append("not reached")
        assert len(made) == 1
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)
