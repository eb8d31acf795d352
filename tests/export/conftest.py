"""Exports shared by the export tests: each family's ``test_*`` model to every target and
precision, done once per test session (the model is prepared once per family)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(model) -> {(target, precision): ExportOutcome}``, exporting each model once."""
    from edgevit.export import TARGETS, export_all

    cache: dict[str, dict] = {}

    def get(model: str) -> dict:
        if model not in cache:
            out = tmp_path_factory.mktemp(f"export-{model}")
            precisions = sorted({p for t in TARGETS.names() for p in TARGETS.get(t).precisions})
            outcomes = export_all(model, targets=TARGETS.names(), precisions=precisions, out=out, quiet=True,
                                  supported_only=True)
            cache[model] = {"out": out, **{(o.target, o.precision): o for o in outcomes}}
        return cache[model]

    return get
