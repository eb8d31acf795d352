"""Rewrites of an exported ONNX graph into forms onnxruntime runs faster, computing the same sums.

Each rewrite computes what the graph it replaces computes, with the same weights (sliced), the
same products and the same sums per output; only the kernel onnxruntime picks for a narrower
convolution may round differently (within 1e-6 of the largest output in the tests; bit for bit
on CAS-ViT-XS). The export's verification checks the file as always.

* **A convolution split on its channels** (``Conv`` read only by a ``Split`` on axis 1, as
  CAS-ViT's ``qkv`` projection is) becomes one ``Conv`` per part. onnxruntime runs float
  convolutions in its blocked NCHWc layout on x86, and a ``Split`` cannot read that layout: the
  whole output is converted back to NCHW, split, and each part converted forward again for the
  next convolution. One convolution per part keeps each part blocked. Measured on CAS-ViT-XS and
  -S (onnxruntime 1.32, 2 threads, an idle AVX2 machine, ``benchmarks/onnx_forms.py``): half the
  ``ReorderInput`` nodes (60 -> 30, 90 -> 45), the same outputs bit for bit, 0.965x and 0.973x
  the time (median of 200 paired rounds).

Example:
    >>> counts = faster_forms(Path("model.onnx"))  # doctest: +SKIP
    >>> counts
    {'conv_split': 10}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["faster_forms", "split_convs"]


def faster_forms(path: Path) -> dict[str, int]:
    """Apply every rewrite to the ONNX file at ``path`` in place; ``{rewrite: times applied}``.

    A file whose weights are stored outside it (``model.onnx.data``, above 2 GB) is left as it is.
    """
    import onnx

    if any(path.parent.glob(f"{path.name}.data")) or path.stat().st_size > 1_800_000_000:
        return {}
    model = onnx.load(str(path))
    counts = {"conv_split": split_convs(model)}
    if any(counts.values()):
        onnx.save(model, str(path))
    return {name: n for name, n in counts.items() if n}


def split_convs(model: Any) -> int:
    """Replace each ungrouped ``Conv`` whose output only a channel ``Split`` reads by one ``Conv``
    per part (weights and bias sliced along the output channels); the number replaced."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    producer = {name: node for node in graph.node for name in node.output}
    outputs = {value.name for value in graph.output}
    replaced: dict[int, list[Any]] = {}  # id(split) -> the convs that replace it
    dropped: set[int] = set()  # id(conv) of the convs replaced
    spent: set[str] = set()  # the initializers they read (weights, bias, split sizes)
    for split in graph.node:
        conv = producer.get(split.input[0]) if split.op_type == "Split" and split.input else None
        parts = _parts(split, conv, weights, readers, outputs) if conv is not None else None
        if parts is None:
            continue
        weight = numpy_helper.to_array(weights[conv.input[1]])
        bias = numpy_helper.to_array(weights[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] else None
        convs, start = [], 0
        for j, (size, out) in enumerate(zip(parts, split.output, strict=True)):
            names = [conv.input[0], f"{conv.input[1]}__part{j}"]
            graph.initializer.append(numpy_helper.from_array(weight[start:start + size], names[1]))
            if bias is not None:
                names.append(f"{conv.input[2]}__part{j}")
                graph.initializer.append(numpy_helper.from_array(bias[start:start + size], names[2]))
            node = helper.make_node("Conv", names, [out], name=f"{conv.name or 'conv'}__part{j}")
            node.attribute.extend(conv.attribute)
            convs.append(node)
            start += size
        replaced[id(split)] = convs
        dropped.add(id(conv))
        spent.update(name for name in (*conv.input[1:], *split.input[1:]) if name)
    if not replaced:
        return 0
    nodes = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        nodes.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    keep = [init for init in graph.initializer if init.name in used or init.name not in spent]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return len(replaced)


def _parts(split: Any, conv: Any, weights: dict[str, Any], readers: dict[str, list[Any]],
           outputs: set[str]) -> list[int] | None:
    """The channel counts of the parts, if ``split`` splits the output of ``conv`` in a way one
    convolution per part can replace; else None."""
    from onnx import numpy_helper

    if conv.op_type != "Conv" or len(conv.output) != 1 or conv.output[0] in outputs:
        return None
    if len(readers.get(conv.output[0], ())) != 1 or conv.domain not in ("", "ai.onnx"):
        return None
    attributes = {a.name: a for a in conv.attribute}
    if "group" in attributes and attributes["group"].i != 1:
        return None
    if len(conv.input) < 2 or conv.input[1] not in weights:
        return None
    if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in weights:
        return None
    channels = weights[conv.input[1]].dims[0]
    rank = len(weights[conv.input[1]].dims)
    axis = next((a.i for a in split.attribute if a.name == "axis"), 0)
    if axis not in (1, 1 - rank) or len(split.output) < 2:
        return None
    if len(split.input) > 1 and split.input[1]:
        if split.input[1] not in weights:
            return None
        parts = [int(v) for v in numpy_helper.to_array(weights[split.input[1]]).tolist()]
    else:
        count = next((a.i for a in split.attribute if a.name == "num_outputs"), len(split.output))
        if count != len(split.output) or channels % count:
            return None
        parts = [channels // count] * count
    if len(parts) != len(split.output) or sum(parts) != channels or min(parts) < 1:
        return None
    return parts
