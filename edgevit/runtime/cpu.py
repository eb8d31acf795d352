"""Which integer kernels this CPU runs int8 ONNX with, and whether they can saturate.

onnxruntime computes a uint8-activation x int8-weight (U8S8) product with the instruction its
math library (MLAS) picks at start-up from CPUID (``onnxruntime/core/mlas/lib/platform.cpp``):

==========================================  ==================================  =============
CPU                                         U8S8 inner product                  exact?
==========================================  ==================================  =============
x86-64, AVX-512 BW/DQ/VL with AVX512-VNNI   ``VPDPBUSDS`` (int32 accumulate)    yes
x86-64, AVX-512 BW/DQ/VL without VNNI       ``VPMADDUBSW`` (int16 pair sums)    **no**
x86-64, AVX2 with AVX-VNNI                  ``VPDPBUSD`` (int32 accumulate)     yes
x86-64, AVX2 only                           ``VPMADDUBSW`` (int16 pair sums)    **no**
x86-64 without AVX2                         SSE, widened to int16 first         yes (Linux)
ARM64                                       NEON / UDOT, int32 accumulate       yes
==========================================  ==================================  =============

``VPMADDUBSW`` adds two uint8 x int8 products into an int16 with saturation: 255 x 127 x 2 =
64,770 does not fit in 32,767, so a file whose weights use the full int8 range can compute a
different answer on an AVX2-only CPU than on a VNNI CPU or a phone. Weights within [-64, 64]
(onnxruntime's ``reduce_range``: 255 x 64 x 2 = 32,640) never saturate, and uint8 x uint8
products (U8U8) go through a widening kernel on every x86 CPU. Note the order: a CPU with
AVX-512 core but without AVX512-VNNI takes the saturating AVX-512 kernel even if it has
AVX-VNNI, because MLAS selects the AVX-512 kernel after the AVX-VNNI one.

Only the standard library is used: the runtime on a device reads this without numpy's help.

Example:
    >>> from edgevit.runtime.cpu import int8_path
    >>> path = int8_path()
    >>> path.u8s8_kernel, path.u8s8_saturates
    ('avx2-vpmaddubsw', True)
"""

from __future__ import annotations

import functools
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Int8Path", "int8_path", "int8_path_from_flags", "int8_artifact_warning", "Int8KernelWarning",
           "U8S8_SAFE_WEIGHT"]

#: the largest |int8 weight| whose U8S8 pair sums fit in int16 on VPMADDUBSW (255 * 64 * 2 <= 32767)
U8S8_SAFE_WEIGHT = 64
#: CPU flags (Linux /proc/cpuinfo spelling) that decide the int8 kernels
INT8_FLAGS = ("sse4_1", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx_vnni",
              "avx_vnni_int8", "amx_int8", "asimd", "asimddp", "i8mm")
#: macOS sysctl spellings of the same flags (Intel Macs)
_SYSCTL_NAMES = {"SSE4.1": "sse4_1", "AVX2": "avx2", "FMA": "fma", "AVX512F": "avx512f", "AVX512BW": "avx512bw",
                 "AVX512DQ": "avx512dq", "AVX512VL": "avx512vl", "AVX512VNNI": "avx512_vnni"}
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_ARM64 = ("aarch64", "arm64")


class Int8KernelWarning(UserWarning):
    """An int8 artifact runs on a CPU whose integer kernels may compute it differently than where it was verified."""


@dataclass(frozen=True)
class Int8Path:
    """The int8 kernel path of one CPU, as onnxruntime selects it.

    Attributes:
        machine: ``platform.machine()`` (``x86_64``, ``aarch64``...).
        flags: the int8-relevant CPU flags found (empty when they could not be read).
        u8s8_kernel: the U8S8 inner product (``avx512-vnni``, ``avx-vnni``, ``avx512core-vpmaddubsw``,
            ``avx2-vpmaddubsw``, ``sse``, ``arm64``), or ``unknown``.
        u8s8_saturates: True where uint8 x int8 pair sums can saturate (VPMADDUBSW), False where the
            kernel is exact, None when unknown.
    """

    machine: str
    flags: tuple[str, ...]
    u8s8_kernel: str
    u8s8_saturates: bool | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = list(self.flags)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Int8Path | None:
        """The path recorded in a manifest, or None when the record is missing or malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("u8s8_kernel"), str):
            return None
        saturates = data.get("u8s8_saturates")
        flags = data.get("flags") if isinstance(data.get("flags"), list) else []
        return cls(str(data.get("machine", "")), tuple(str(f) for f in flags), data["u8s8_kernel"],
                   saturates if isinstance(saturates, bool) else None)

    def summary(self) -> str:
        """``x86_64, avx2-vpmaddubsw (uint8 x int8 sums can saturate)``."""
        note = {True: " (uint8 x int8 sums can saturate)", False: " (exact)", None: ""}[self.u8s8_saturates]
        return f"{self.machine}, {self.u8s8_kernel}{note}"


def int8_path_from_flags(machine: str, flags: set[str] | frozenset[str] | tuple[str, ...]) -> Int8Path:
    """The kernel path of a CPU with ``flags`` (Linux spelling), by MLAS's selection order."""
    flags = frozenset(flags)
    kept = tuple(f for f in INT8_FLAGS if f in flags)
    arch = machine.lower()
    if arch in _ARM64:
        return Int8Path(machine, kept, "arm64", False)
    if arch not in _X86 or not flags:
        return Int8Path(machine, kept, "unknown", None)
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        if "avx512_vnni" in flags:
            return Int8Path(machine, kept, "avx512-vnni", False)
        return Int8Path(machine, kept, "avx512core-vpmaddubsw", True)
    if "avx2" in flags:
        if "avx_vnni" in flags:
            return Int8Path(machine, kept, "avx-vnni", False)
        return Int8Path(machine, kept, "avx2-vpmaddubsw", True)
    return Int8Path(machine, kept, "sse", False if platform.system() == "Linux" else None)


@functools.cache
def int8_path() -> Int8Path:
    """This CPU's int8 kernel path (read once per process)."""
    machine = platform.machine() or "unknown"
    return int8_path_from_flags(machine, _cpu_flags())


def _cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (Linux) or sysctl (macOS); empty when unreadable."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        try:
            text = cpuinfo.read_text(errors="replace")
        except OSError:
            return frozenset()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return frozenset(value.split())
        return frozenset()
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                                 capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return frozenset()
        return frozenset(_SYSCTL_NAMES[word] for word in out.split() if word in _SYSCTL_NAMES)
    return frozenset()


def int8_artifact_warning(manifest: Any, here: Int8Path) -> str | None:
    """Why an artifact may compute differently on the CPU ``here`` than where it was verified, or None.

    Only int8 ONNX files whose weights can saturate VPMADDUBSW (the manifest's
    ``quantization.runtime_kernels.u8s8_saturation.free`` is not True: ``--onnx-int8-format u8s8``,
    or a file made before edgevit recorded it) are at risk, and only on a CPU that runs them
    with that instruction. If the artifact was verified on such a CPU (``verification.cpu``, status
    ``passed`` or ``running``), its numbers were checked on this kernel path and nothing is said.
    The other direction (verified where it saturates, run where it does not) is not warned about:
    exact kernels move the outputs towards float, not away from it.
    """
    if getattr(manifest, "target", None) != "onnx" or getattr(manifest, "precision", None) != "int8":
        return None
    if here.u8s8_saturates is not True:
        return None
    quantization = manifest.extra.get("quantization") if isinstance(manifest.extra, dict) else None
    kernels = quantization.get("runtime_kernels") if isinstance(quantization, dict) else None
    saturation = kernels.get("u8s8_saturation") if isinstance(kernels, dict) else None
    if isinstance(saturation, dict) and saturation.get("free") is True:
        return None
    verification = manifest.verification if isinstance(manifest.verification, dict) else {}
    verified = Int8Path.from_dict(verification.get("cpu"))
    if verified is not None and verified.u8s8_saturates is True and verification.get("status") in ("passed", "running"):
        return None
    if verified is None:
        where = "a CPU edgevit did not record (the artifact predates that record)" if verification.get(
            "status") not in ("skipped", None) else "no CPU (it was exported with --no-verify)"
    else:
        where = verified.summary()
    if isinstance(saturation, dict) and saturation.get("max_abs_int8_weight") is not None:
        risk = (f"{saturation.get('over_limit')} of its {saturation.get('int8_weights')} int8 weight tensors reach "
                f"|w| = {saturation['max_abs_int8_weight']} > {U8S8_SAFE_WEIGHT}")
    else:
        risk = "its int8 weights were not checked against that limit"
    return (f"this int8 ONNX artifact was verified on {where}, but this CPU ({here.summary()}) computes uint8 x int8 "
            f"products with VPMADDUBSW, whose int16 sums saturate when weights exceed +-{U8S8_SAFE_WEIGHT} ({risk}); "
            "its outputs can differ from the verified ones. Re-export it with --onnx-int8-format u8s8-reduced "
            "(the default) or u8u8, which are exact on every CPU, or verify it on a CPU like this one")
