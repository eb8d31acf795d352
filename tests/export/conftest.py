"""Exports shared by the export tests: each family's ``test_*`` model to every target and
precision, done once per test run (the model is prepared once per family).

The suite runs on pytest-xdist workers, a module to a worker, and several modules read these
exports (test_targets, test_read_ops, test_executorch). The first worker to ask for a model
exports it into the run's shared temporary folder under a file lock and pickles the outcomes
beside it; a worker asking later reads them (measured: the two workers exported every test
model twice, about 5 minutes of the suite).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import shutil

import pytest


@contextlib.contextmanager
def _locked(path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(model) -> {(target, precision): ExportOutcome, "out": folder}``, exporting each
    model once per run (shared by the xdist workers)."""
    from edgevit._files import write_bytes
    from edgevit.export import TARGETS, export_all

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one folder per run
    cache: dict[str, dict] = {}

    def get(model: str) -> dict:
        if model not in cache:
            out = shared / f"export-{model}"
            record = shared / f"export-{model}.pickle"
            with _locked(shared / f"export-{model}.lock"):
                if record.is_file():
                    outcomes = pickle.loads(record.read_bytes())
                else:  # a worker whose export raised left the folder: start again (and raise the same error)
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    precisions = sorted({p for t in TARGETS.names() for p in TARGETS.get(t).precisions})
                    outcomes = export_all(model, targets=TARGETS.names(), precisions=precisions, out=out,
                                          quiet=True, supported_only=True)
                    write_bytes(record, pickle.dumps(outcomes))  # atomic: a worker never reads half of it
            cache[model] = {"out": out, **{(o.target, o.precision): o for o in outcomes}}
        return cache[model]

    return get
