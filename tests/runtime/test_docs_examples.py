"""docs/runtime.md's first example runs as written on a real export, and prints what its comments say (issue 17 #13)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


@pytest.mark.slow
def test_the_loading_and_running_example_runs_as_written(tmp_path, monkeypatch):
    import edgevit

    block = re.search(r"## Loading and running\s+```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    edgevit.export("cas_vit_xs", target="onnx", out=tmp_path, verify=False, quiet=True)
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the documentation's own code
    claimed = re.search(r"print\(session.input_specs\)\s+# (.*)", block).group(1)
    assert printed.getvalue().strip() == claimed
    assert namespace["logits"].shape == tuple(int(n) for n in re.search(r"# \((\d+), (\d+)\)", block).groups())
