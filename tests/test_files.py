"""edgevit._files: files are replaced whole or not at all, with the permissions of any new file."""

from __future__ import annotations

import os
import stat

import pytest

from edgevit._files import normal_modes, replacing, staging_dir, umask, write_text


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
