"""``import edgevit`` must stay cheap: no torch, no converters. So must the runtime, the agent,
partition, the file-format readers and the shared internals (the device side and planning never
need torch)."""

from __future__ import annotations

import subprocess
import sys


def test_import_edgevit_does_not_import_torch():
    code = (
        "import sys, edgevit, edgevit.artifact, edgevit.data, edgevit.registry, edgevit.errors\n"
        "import edgevit.runtime, edgevit.agent, edgevit.partition, edgevit.devices, edgevit.environment\n"
        "import edgevit._files, edgevit._progress, edgevit._table, edgevit._quiet\n"
        "import edgevit.formats, edgevit.formats.onnx, edgevit.formats.tflite, edgevit.formats.mlprogram, edgevit.formats.pte\n"
        "import edgevit.predict\n"
        "heavy = [m for m in ('torch', 'onnx', 'coremltools', 'litert_torch', 'tensorflow') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import edgevit pulled in: {out}"
