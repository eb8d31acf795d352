"""A fake device for the predictor tests: timings exactly linear in each kernel's FLOPs, bytes,
elements and rows, with the truth written out independently of ``edgevit.predict.kernels``."""

from __future__ import annotations

import itertools

from edgevit.environment import environment
from edgevit.predict import DeviceProfile, Kernel, KernelTiming, Measurement

RUN_MS = 0.02


def true_ms(kind: str, d: dict[str, int]) -> float:
    """What the fake device takes for a kernel, excluding the run overhead (fp32: 4 bytes)."""
    if kind == "linear":
        flops, moved = 2 * d["M"] * d["K"] * d["N"], 4 * (d["M"] * d["K"] + d["K"] * d["N"] + d["M"] * d["N"])
        return 0.003 + 1e-8 * flops + 2e-8 * moved
    if kind == "matmul":
        flops = 2 * d["B"] * d["M"] * d["K"] * d["N"]
        moved = 4 * d["B"] * (d["M"] * d["K"] + d["K"] * d["N"] + d["M"] * d["N"])
        return 0.004 + 3e-8 * flops + 1e-8 * moved
    if kind in ("conv", "conv1x1", "dwconv"):
        out = d["N"] * d["OH"] * d["OW"] * d["COUT"]
        per_output = d["CIN"] // d["G"] * d["KH"] * d["KW"]
        moved = 4 * (d["N"] * d["IH"] * d["IW"] * d["CIN"] + d["COUT"] * per_output + out)
        return {"conv": 0.005, "conv1x1": 0.002, "dwconv": 0.006}[kind] + 2e-8 * 2 * out * per_output + 1e-8 * moved
    if kind in ("softmax", "layernorm"):
        return 0.001 + 4e-7 * d["ROWS"] * d["COLS"] + 2e-6 * d["ROWS"]
    if kind in ("gelu", "elementwise", "math"):
        return {"gelu": 0.002, "elementwise": 0.001, "math": 0.0015}[kind] + 5e-7 * d["E"] + 1e-8 * 4 * d["E"] * (d["I"] + 1)
    if kind == "reduce":
        return 0.001 + 2e-7 * d["E"] + 1e-6 * d["OUT"]
    if kind == "pool":
        out = d["N"] * d["OH"] * d["OW"] * d["C"]
        return 0.002 + 1e-7 * out * d["KH"] * d["KW"] + 1e-8 * 4 * (d["N"] * d["IH"] * d["IW"] * d["C"] + out)
    if kind == "copy":
        return 0.0005 + 3e-9 * 2 * 4 * d["E"]
    if kind == "reorder":
        return 0.0007 + 1e-9 * 2 * 4 * d["E"]
    raise AssertionError(kind)


SAMPLES = {  # several shapes per kind, none of them the graph's: the fit has to generalise
    "linear": [dict(M=m, K=k, N=n) for m, k, n in itertools.product((8, 50), (16, 96), (24, 128))],
    "matmul": [dict(B=b, M=m, K=k, N=n) for b, m, k, n in itertools.product((2, 6), (9, 33), (8, 24), (9, 40))],
    "conv": [dict(N=1, IH=h, IW=h, CIN=c, OH=h // 2, OW=h // 2, COUT=o, KH=3, KW=3, G=1)
             for h, c, o in itertools.product((8, 20), (3, 12), (8, 24))],
    "conv1x1": [dict(N=1, IH=h, IW=h, CIN=c, OH=h, OW=h, COUT=o, KH=1, KW=1, G=1)
                for h, c, o in itertools.product((6, 14), (4, 32), (8, 40))],
    "dwconv": [dict(N=1, IH=h, IW=h, CIN=c, OH=h // s, OW=h // s, COUT=c, KH=k, KW=k, G=c)
               for h, c, k, s in itertools.product((8, 24), (16, 48), (3, 5), (1, 2))],
    "softmax": [dict(ROWS=r, COLS=c) for r, c in itertools.product((10, 300), (7, 65))],
    "layernorm": [dict(ROWS=r, COLS=c) for r, c in itertools.product((5, 120), (32, 200))],
    "gelu": [dict(E=e, I=1) for e in (100, 900, 5000)],
    "elementwise": [dict(E=e, I=i) for e, i in itertools.product((64, 3000), (1, 2))],
    "copy": [dict(E=e) for e in (100, 2000, 70000)],
    "reorder": [dict(E=e) for e in (512, 4096, 50176)],
    "math": [dict(E=e, I=1) for e in (64, 800, 9000)],
    "reduce": [dict(E=e, OUT=o) for e, o in ((640, 10), (6400, 50), (20000, 20))],
    "pool": [dict(N=1, IH=h, IW=h, C=c, OH=h // k, OW=h // k, KH=k, KW=k) for h, c, k in ((8, 16, 2), (16, 8, 4), (14, 32, 7))],
}


def fake_profile(kinds=SAMPLES, backend="onnxruntime", cpu_flags=()) -> DeviceProfile:
    """A profile of the fake device; ``cpu_flags`` decide the layout reorders predicted (none by default)."""
    timings = [KernelTiming(Kernel.of("run"), RUN_MS)]
    timings += [KernelTiming(Kernel.of(kind, **dims), RUN_MS + true_ms(kind, dims)) for kind in kinds for dims in kinds[kind]]
    return DeviceProfile("fake", backend, "0", 1, Measurement(1, 0), environment(), tuple(cpu_flags), "2026-11-30", "0.1.0",
                         tuple(timings))
