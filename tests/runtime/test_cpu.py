"""This CPU's int8 kernel path, and the runtime's warning when an int8 ONNX artifact runs on a CPU
whose kernels can saturate where the CPU it was verified on could not.

The CPUs other than this one are described by their flags (``int8_path_from_flags``): no test
machine has all of them. The load test swaps the flags reader for one such CPU, since the
warning depends on the CPU and this machine is only one."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
from runtime_helpers import write_tiny_onnx

from edgevit.artifact import read_manifest
from edgevit.runtime import cpu, load
from edgevit.runtime.cpu import Int8KernelWarning, Int8Path, int8_artifact_warning, int8_path_from_flags

AVX2 = {"sse4_1", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl"}


@pytest.mark.parametrize(("machine", "flags", "kernel", "saturates"), [
    ("x86_64", AVX2, "avx2-vpmaddubsw", True),
    ("x86_64", AVX2 | {"avx_vnni"}, "avx-vnni", False),
    ("x86_64", AVX512, "avx512core-vpmaddubsw", True),
    ("x86_64", AVX512 | {"avx512_vnni"}, "avx512-vnni", False),
    # MLAS picks the AVX-512 core kernel after the AVX-VNNI one: AVX-VNNI alone does not save it
    ("x86_64", AVX512 | {"avx_vnni"}, "avx512core-vpmaddubsw", True),
    ("x86_64", {"sse4_1"}, "sse", False),
    ("aarch64", {"asimd", "asimddp"}, "arm64", False),
    ("arm64", set(), "arm64", False),
    ("x86_64", set(), "unknown", None),
    ("riscv64", {"rv64"}, "unknown", None),
])
def test_kernel_path_follows_mlas_selection(machine, flags, kernel, saturates):
    path = int8_path_from_flags(machine, flags)
    assert (path.u8s8_kernel, path.u8s8_saturates) == (kernel, saturates)
    assert Int8Path.from_dict(json.loads(json.dumps(path.to_dict()))) == path


def test_this_machine_is_described():
    path = cpu.int8_path()
    assert path.machine and path.u8s8_kernel
    if path.u8s8_kernel.endswith("vpmaddubsw"):
        assert path.u8s8_saturates is True and "avx2" in path.flags


def _int8_manifest(folder, *, free: bool | None, verified_on: Int8Path | None, status: str = "passed"):
    """A real artifact folder relabelled as an int8 ONNX export with the given records."""
    manifest = read_manifest(folder)
    quantization = {} if free is None else {"runtime_kernels": {"u8s8_saturation": {
        "free": free, "max_abs_int8_weight": 64 if free else 127, "int8_weights": 12, "over_limit": 0 if free else 12}}}
    verification = {"status": status, **({"cpu": verified_on.to_dict()} if verified_on else {})}
    manifest = dataclasses.replace(manifest, precision="int8", verification=verification,
                                   extra={**manifest.extra, **({"quantization": quantization} if quantization else {})})
    manifest.write(folder)
    return manifest


SATURATING = int8_path_from_flags("x86_64", AVX2)
VNNI = int8_path_from_flags("x86_64", AVX512 | {"avx512_vnni"})
ARM = int8_path_from_flags("aarch64", {"asimd"})


@pytest.mark.parametrize(("free", "verified_on", "status", "here", "warns"), [
    (False, VNNI, "passed", SATURATING, True),      # the case that gave wrong answers: full-range weights
    (False, ARM, "passed", SATURATING, True),
    (None, None, "passed", SATURATING, True),       # made before edgevit recorded either
    (False, None, "skipped", SATURATING, True),     # --no-verify: verified nowhere
    (False, SATURATING, "passed", SATURATING, False),  # its numbers were checked on this kernel path
    (False, SATURATING, "running", SATURATING, False),  # being verified here, by edgevit export
    (False, SATURATING, "failed", SATURATING, True),
    (True, VNNI, "passed", SATURATING, False),      # weights within +-64 cannot saturate
    (False, VNNI, "passed", VNNI, False),           # exact kernels here
    (False, SATURATING, "passed", ARM, False),      # exact here: outputs move towards float, not away
])
def test_warning_rule(tmp_path, free, verified_on, status, here, warns):
    manifest = _int8_manifest(write_tiny_onnx(tmp_path / "a"), free=free, verified_on=verified_on, status=status)
    message = int8_artifact_warning(manifest, here)
    assert (message is not None) == warns, message
    if warns:
        assert "VPMADDUBSW" in message and "--onnx-int8-format u8s8-reduced" in message
        assert (verified_on.summary() if verified_on else "did not record" if status != "skipped" else "--no-verify") \
            in message


def test_float_artifacts_never_warn(tmp_path):
    manifest = read_manifest(write_tiny_onnx(tmp_path / "a"))
    assert int8_artifact_warning(manifest, SATURATING) is None


def test_load_warns_once_per_artifact_on_a_saturating_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "_cpu_flags", lambda: frozenset(AVX2))
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    cpu.int8_path.cache_clear()
    try:
        folder = write_tiny_onnx(tmp_path / "a")
        _int8_manifest(folder, free=False, verified_on=VNNI)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for _ in range(3):
                load(folder).close()
        messages = [w for w in caught if issubclass(w.category, Int8KernelWarning)]
        assert len(messages) == 1, [str(w.message) for w in caught]
        assert str(folder) in str(messages[0].message) and VNNI.summary() in str(messages[0].message)

        safe = write_tiny_onnx(tmp_path / "b")
        _int8_manifest(safe, free=True, verified_on=VNNI)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Int8KernelWarning)
            load(safe).close()
    finally:
        cpu.int8_path.cache_clear()
