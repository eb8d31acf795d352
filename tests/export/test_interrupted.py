"""Interrupted and repeated exports lose nothing (issue 17 #8): SIGTERM cleans up like Ctrl-C,
staging folders of killed runs are removed by the next export of the same name, and an artifact
folder holding files edgevit did not write is not replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import edgevit
from edgevit.errors import InvalidArgumentError


def test_sigterm_during_an_export_leaves_nothing_behind(tmp_path):
    """A real process, a real signal: the int8 export is killed while its staging folder exists."""
    process = subprocess.Popen([sys.executable, "-m", "edgevit", "export", "test_vit", "--target", "onnx",
                                "--precision", "int8", "--calib-size", "16", "--out", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".*.partial")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the export never made its staging folder"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Terminated" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_killed_runs_staging_folder_is_removed_by_the_next_export(tmp_path):
    stale = tmp_path / ".test_vit-onnx-fp32.999999999.abcd.partial"  # no such process
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"x" * 1000)
    mine = tmp_path / f".test_vit-onnx-fp32.{os.getpid()}.efgh.partial"  # a live process's: kept
    mine.mkdir()
    edgevit.export("test_vit", target="onnx", out=tmp_path, verify=False, quiet=True)
    assert not stale.exists() and mine.exists()
    assert (tmp_path / "test_vit-onnx-fp32" / "manifest.json").is_file()


def test_exporting_again_refuses_to_delete_files_edgevit_did_not_write(tmp_path):
    artifact = edgevit.export("test_vit", target="onnx", out=tmp_path, verify=False, quiet=True)
    edgevit.export("test_vit", target="onnx", out=tmp_path, verify=False, quiet=True)  # its own files: fine
    notes = artifact.path / "notes.txt"
    notes.write_text("my measurements")
    with pytest.raises(InvalidArgumentError, match=r"holds files edgevit did not write \(notes.txt\)"):
        edgevit.export("test_vit", target="onnx", out=tmp_path, verify=False, quiet=True)
    assert notes.read_text() == "my measurements"
