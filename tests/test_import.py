"""``import edgevit`` must stay cheap: no torch, no converters."""

from __future__ import annotations

import subprocess
import sys


def test_import_edgevit_does_not_import_torch():
    code = (
        "import sys, edgevit, edgevit.artifact, edgevit.data, edgevit.registry, edgevit.errors\n"
        "heavy = [m for m in ('torch', 'onnx', 'coremltools', 'litert_torch', 'tensorflow') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import edgevit pulled in: {out}"
