"""Each target's op reader on its real exported files (parametrized over the model and target
registries): ``Target.read_ops`` gives what the export report counted, so the report and the
quantizers, which read files the same way, see the same ops."""

from __future__ import annotations

import pytest
from export_helpers import cells

from edgevit.artifact import read_manifest
from edgevit.export.targets import get_target

pytestmark = pytest.mark.slow  # reuses the session's exports of every test model (full conversions)


@pytest.mark.parametrize(("model", "target", "precision"), cells())
def test_read_ops_gives_what_the_export_report_counts(exported, model, target, precision):
    outcome = exported(model)[(target, precision)]
    assert outcome.error is None, f"{model} -> {target} {precision}: {outcome.error}"
    manifest = read_manifest(outcome.artifact.path)
    graph = get_target(target).read_ops(outcome.artifact.path / manifest.model_file)

    counted = graph.counts()
    details = manifest.ops.get("details", {})
    assert counted.pop("const", 0) == details.get("const_ops", 0)  # ML Program constants are reported apart
    assert dict(counted) == manifest.ops["histogram"]
    assert {key: details[key] for key in ("opset", "spec_version") if key in details} == {
        key: value for key, value in (("opset", graph.opset), ("spec_version", graph.version)) if key in details}
    assert (len(graph.inputs), len(graph.outputs)) == (len(manifest.inputs), len(manifest.outputs))
    assert set(graph.inputs) | set(graph.outputs) <= set(graph.tensors)
    assert graph.main_ops and all(op.graph == graph.main for op in graph.main_ops)
