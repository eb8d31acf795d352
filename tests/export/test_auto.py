"""``precision="auto"``: the candidates are exported, verified and timed; the fastest verified one stays."""

from __future__ import annotations

import sys

import pytest

import edgevit
from edgevit.cli import main
from edgevit.errors import ConversionError, InvalidArgumentError
from edgevit.export import ExportOptions
from edgevit.export.auto import MIN_GAIN, choose
from edgevit.export.report import ExportOutcome


@pytest.mark.filterwarnings("ignore:test_vit has random-init weights")
def test_auto_keeps_one_verified_artifact_and_records_every_candidate(tmp_path):
    artifact = edgevit.export("test_vit", target="onnx", precision="auto", out=tmp_path, calib_size=16)
    record = artifact.manifest.extra["precision_auto"]
    assert artifact.manifest.precision == record["chosen"] and record["chosen"] in ("fp32", "int8")
    assert artifact.path == tmp_path / f"test_vit-onnx-{record['chosen']}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [artifact.path.name]  # no staging, no loser left
    candidates = record["candidates"]
    assert set(candidates) == {"fp32", "int8"}
    assert all(c["verification"] == "passed" and c["p50_ms"] > 0 for c in candidates.values())
    ratio = candidates["int8"]["ratio_to_float"]
    assert (record["chosen"] == "int8") == (ratio <= 1 - MIN_GAIN), record  # the rule, applied to what was measured
    assert artifact.manifest.verification["status"] == "passed"
    assert "auto      chose " + record["chosen"] in artifact.report()
    with artifact.load() as session:  # the renamed folder loads
        assert session.manifest.precision == record["chosen"]


def test_a_failed_candidate_leaves_the_other_and_says_why(tmp_path):
    fp32 = edgevit.export("test_vit", target="onnx", out=tmp_path)
    failed = ExportOutcome("test_vit", "onnx", "int8", error=ConversionError("quantizer broke"))
    record = choose([ExportOutcome("test_vit", "onnx", "fp32", fp32), failed], ExportOptions(), progress=False)
    assert record["chosen"] == "fp32" and "only candidate" in record["reason"]
    assert record["candidates"]["int8"] == {"error": "ConversionError: quantizer broke"}

    record = choose([failed], ExportOptions(), progress=False)
    assert record["chosen"] is None and "no candidate passed" in record["reason"]


@pytest.mark.parametrize("kwargs, message", [
    ({"verify": False}, "cannot run with verify off"),
    ({"target": "coreml"}, "coreml-reference executor"),
])
def test_auto_refuses_what_it_cannot_judge_before_any_work(tmp_path, kwargs, message):
    if kwargs.get("target") == "coreml" and sys.platform == "darwin":
        pytest.skip("Core ML artifacts can be timed on macOS")
    with pytest.raises(InvalidArgumentError, match=message):
        edgevit.export("test_vit", **{"target": "onnx", **kwargs}, precision="auto", out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_auto_is_alone_or_not_at_all(tmp_path, capsys):
    code = main(["export", "test_vit", "--precision", "auto,fp16", "--out", str(tmp_path)])
    assert code != 0
    err = capsys.readouterr().err
    assert err.startswith("InvalidArgumentError: precision 'auto' picks one precision per target") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
