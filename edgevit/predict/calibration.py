"""The calibration set: which kernels a probe times, over the sizes the zoo's ViTs use (pure data).

The shapes come from the zoo at 224 px: token counts of 16-pixel patches (196 + a class
token) and of the hierarchical models' stages (56x56 down to 7x7), and a plain ViT's 17 at 64 px
(the size a split plan's pieces run at in this project's benchmarks), embedding widths 64 to
384, MLP ratio 4, attention heads of 32 and 64 channels; convolutions of the conv stems and
MBConv / CAS-ViT stages (3x3 stride 2, pointwise, depthwise 3x3); pooling and element-wise
ops over the same tensors; bilinear upsampling x2 of 7x7 to 28x28 maps. ``"quick"`` is a handful of
them, for tests and a first look.

Example:
    >>> kernels = calibration_kernels("quick")
    >>> sorted({k.kind for k in kernels})[:3]
    ['copy', 'linear', 'run']
"""

from __future__ import annotations

from itertools import product

from edgevit.errors import InvalidArgumentError
from edgevit.predict.kernels import Kernel

__all__ = ["INT8_KINDS", "PRESETS", "calibration_kernels"]

#: the kinds edgevit's int8 recipes quantize (a lone attention product is kept in float, and so
#: are softmax, LayerNorm and GELU): an int8 calibration set times these
INT8_KINDS = ("linear", "conv", "conv1x1", "dwconv")

TOKENS = (49, 197, 785)
#: the tokens of a plain ViT at 64 px, the size the split benchmarks run ED-ViT's pieces at (appended last)
SMALL = 17
WIDTHS = (64, 192, 384)
HEADS = ((3, 64), (6, 32), (12, 64))  # (heads, head width)
MAPS = ((56, 64), (28, 128), (14, 256), (7, 384))  # (side, channels) of conv stages


def _standard(dtype: str) -> list[Kernel]:
    k: list[Kernel] = [Kernel.of("run", dtype)]
    k += [Kernel.of("linear", dtype, M=m, K=a, N=b) for m, c in product(TOKENS, WIDTHS)
          for a, b in ((c, 3 * c), (c, c), (c, 4 * c), (4 * c, c))]
    k += [Kernel.of("matmul", dtype, B=h, M=m, K=d, N=m) for (h, d), m in product(HEADS, TOKENS[:2])]  # QK^T
    k += [Kernel.of("matmul", dtype, B=h, M=m, K=m, N=d) for (h, d), m in product(HEADS, TOKENS[:2])]  # AV
    k += [Kernel.of("softmax", dtype, ROWS=h * m, COLS=m) for (h, _), m in product(HEADS, TOKENS[:2])]
    k += [Kernel.of("layernorm", dtype, ROWS=m, COLS=c) for m, c in product(TOKENS, WIDTHS)]
    k += [Kernel.of("gelu", dtype, E=m * 4 * c, I=1) for m, c in product(TOKENS[:2], WIDTHS)]
    k += [Kernel.of("elementwise", dtype, E=m * c, I=i) for m, c, i in product(TOKENS, WIDTHS[::2], (1, 2))]
    k += [Kernel.of("math", dtype, E=m * c, I=1) for m, c in product(TOKENS, WIDTHS[::2])]
    k += [Kernel.of("reduce", dtype, E=m * c, OUT=m) for m, c in product(TOKENS, WIDTHS[::2])]
    k += [Kernel.of("copy", dtype, E=m * c) for m, c in product(TOKENS, WIDTHS)]
    for side, c in MAPS:
        half = (side + 1) // 2
        k.append(Kernel.of("conv", dtype, N=1, IH=side, IW=side, CIN=c // 2, OH=half, OW=half, COUT=c, KH=3, KW=3, G=1))
        k.append(Kernel.of("conv1x1", dtype, N=1, IH=side, IW=side, CIN=c, OH=side, OW=side, COUT=4 * c, KH=1, KW=1, G=1))
        k.append(Kernel.of("conv1x1", dtype, N=1, IH=side, IW=side, CIN=4 * c, OH=side, OW=side, COUT=c, KH=1, KW=1, G=1))
        k.append(Kernel.of("dwconv", dtype, N=1, IH=side, IW=side, CIN=c, OH=side, OW=side, COUT=c, KH=3, KW=3, G=c))
        k.append(Kernel.of("pool", dtype, N=1, IH=side, IW=side, C=c, OH=1, OW=1, KH=side, KW=side))
    k += [Kernel.of("reorder", dtype, E=side * side * c) for side, c in MAPS]  # onnxruntime's NCHWc layout conversions
    # narrow pointwise convolutions, as the hierarchical models run by the dozen (CAS-ViT-XS: 90 of them, most of them
    # below 10 MFLOP): without them the fit priced a conv1x1's fixed cost from the wide ones above (58-103 MFLOP) and
    # put 0.3 ms on each (appended last, so that the earlier kernels keep their calibration file names)
    k += [Kernel.of("conv1x1", dtype, N=1, IH=side, IW=side, CIN=a, OH=side, OW=side, COUT=b, KH=1, KW=1, G=1)
          for side, c in MAPS for a, b in ((c // 2, c // 2), (c, c // 2))]
    # bilinear upsampling x2, as EfficientFormerV2's strided attention returns to its map (1024 planes, 7x7 -> 14x14).
    # Priced as a copy of its output before version 9: 0.036 ms, where onnxruntime's Resize of that shape took 0.43 ms
    # alone and its profiler put EfficientFormerV2-S0's two at 0.62 ms (LiteRT: 0.087 ms against 0.048)
    k += [Kernel.of("resize", dtype, C=c, IH=side, IW=side, OH=2 * side, OW=2 * side)
          for side, c in ((7, 256), (7, 1024), (14, 512), (28, 128))]
    # a plain ViT at 64 px (4x4 patches and a class token: 17 tokens), as ED-ViT's pieces run in benchmarks/cluster.py.
    # Without them a kernel of 17 tokens was priced from the sizes above, 49 tokens and up, where the per-kernel constant
    # hides in the FLOPs: on the Intel CPU, onnxruntime on one thread, the 64 px ViT-Tiny priced at 3.17 ms back to back
    # took 5.23 ms, its 48 linear layers about 0.07 ms each against the 0.047 ms they were priced at
    k += [Kernel.of("linear", dtype, M=SMALL, K=a, N=b) for c in WIDTHS for a, b in ((c, 3 * c), (c, c), (c, 4 * c), (4 * c, c))]
    k += [Kernel.of("matmul", dtype, B=h, M=SMALL, K=d, N=SMALL) for h, d in HEADS]
    k += [Kernel.of("matmul", dtype, B=h, M=SMALL, K=SMALL, N=d) for h, d in HEADS]
    k += [Kernel.of("softmax", dtype, ROWS=h * SMALL, COLS=SMALL) for h, _ in HEADS]
    k += [Kernel.of("layernorm", dtype, ROWS=SMALL, COLS=c) for c in WIDTHS]
    k += [Kernel.of("gelu", dtype, E=SMALL * 4 * c, I=1) for c in WIDTHS]
    k += [Kernel.of("elementwise", dtype, E=SMALL * c, I=i) for c, i in product(WIDTHS[::2], (1, 2))]
    k += [Kernel.of("copy", dtype, E=SMALL * c) for c in WIDTHS]
    # the conv stems (3x3 stride 2: 3 channels in, then twice the channels, at 224 and 64 px). The four stage convolutions
    # above halve the map as they double the channels, so they all run 28.9 MFLOP, and the fit could not tell a
    # convolution's fixed cost from its cost per FLOP: two probes of one device an hour apart priced CAS-ViT-XS's five
    # 64 px convolutions at 0.34 ms each and at 0.03-0.10 ms. These run 1.3 to 116 MFLOP
    k += [Kernel.of("conv", dtype, N=1, IH=side, IW=side, CIN=a, OH=side // 2, OW=side // 2, COUT=b, KH=3, KW=3, G=1)
          for side, a, b in ((224, 3, 16), (112, 16, 32), (224, 3, 32), (112, 32, 64), (64, 3, 24), (32, 24, 48))]
    return k


def _quick(dtype: str) -> list[Kernel]:
    return [
        Kernel.of("run", dtype),
        Kernel.of("linear", dtype, M=17, K=64, N=64), Kernel.of("linear", dtype, M=49, K=64, N=192),
        Kernel.of("copy", dtype, E=1088), Kernel.of("copy", dtype, E=12544),
    ]


#: preset name -> the kernels it times
PRESETS = {"quick": _quick, "standard": _standard}


def calibration_kernels(preset: str = "standard", dtype: str = "fp32") -> tuple[Kernel, ...]:
    """The kernels of ``preset`` (``"standard"``: 179 in fp32 and 78 in int8, ``"quick"``: 5) in ``dtype``
    (``"int8"``: only the :data:`INT8_KINDS`).

    Raises:
        InvalidArgumentError: an unknown preset or dtype.
    """
    if preset not in PRESETS:
        raise InvalidArgumentError(f"unknown calibration preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if dtype not in ("fp32", "int8"):
        raise InvalidArgumentError(f"calibration kernels are fp32 or int8, got {dtype!r}")
    kernels = PRESETS[preset](dtype)
    return tuple(k for k in kernels if k.kind in INT8_KINDS) if dtype == "int8" else tuple(kernels)
