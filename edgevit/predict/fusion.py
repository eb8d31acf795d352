"""Each backend's fusion rules, written down as data, and the grouping of a graph's ops by them.

A backend does not run the ops of a file one by one: onnxruntime's graph optimiser (on by
default, ``ORT_ENABLE_ALL``) fuses a MatMul and its bias Add, the erf-GELU pattern into one
Gelu, a decomposed LayerNorm into one LayerNormalization, a scalar Mul or a Transpose into
the MatMul that reads it (FusedMatMul), activations into the convolution before them;
LiteRT's converter already writes activations into CONV_2D / FULLY_CONNECTED and XNNPACK
folds an explicit PAD into the convolution after it. A :class:`FusionRule` is one such
pattern: a chain of op types, each reading the output of the one before, whose intermediate
results nobody else reads; the group runs as one kernel, that of the chain's *anchor* op (or
a kernel of the rule's own ``kind``, sized on the anchor's first input).

The rules are known from each backend's documentation and source (``source`` says where);
nn-Meter-style detection of the rules on the device (timing A, B and A+B) is not done yet,
so a rule that a backend version does not apply makes the prediction low by that op's time.

Given: an :class:`~edgevit.formats.OpGraph` and a backend's :class:`RuleSet`. Produces:
groups of op indices (into ``graph.main_ops``), each with its anchor and the rules applied.

Example:
    >>> [rule.name for rule in RULES.get("onnxruntime").rules][:3]
    ['qdq', 'qdq', 'layernorm']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgevit.formats import Op, OpGraph
from edgevit.registry import Registry

__all__ = ["CONDITIONS", "RULES", "FusionRule", "Group", "RuleSet", "group_ops"]


@dataclass(frozen=True)
class FusionRule:
    """One fusion pattern.

    Attributes:
        name: a short name shown in predictions (``"bias"``, ``"gelu"``).
        chain: op types per step; step ``i + 1`` reads an output of step ``i``.
        anchor: the step whose kernel the fused group runs as.
        kind: when set, the group runs as a kernel of this kind (``"gelu"``, ``"layernorm"``),
            sized on the anchor's first input; otherwise as the anchor op's own kernel.
        when: per step, a :data:`CONDITIONS` name the op must satisfy (``""``: none).
        dtype: when set, the group runs in this precision (an ONNX QDQ group: ``"int8"``).
        source: where the rule is known from.
        shared_first: the first step's output may also be read outside the group: the backend
            gives the group a copy of that op of its own (onnxruntime's EnsureUniqueDQForNodeUnit
            duplicates a DequantizeLinear that several ops read). The op then stays out of the
            group, costed once for its other readers.
    """

    name: str
    chain: tuple[frozenset[str], ...]
    anchor: int = 0
    kind: str | None = None
    when: tuple[str, ...] = ()
    dtype: str | None = None
    source: str = ""
    shared_first: bool = False

    @classmethod
    def of(cls, name: str, *steps: str, anchor: int = 0, kind: str | None = None,
           when: tuple[str, ...] = (), dtype: str | None = None, source: str = "",
           shared_first: bool = False) -> FusionRule:
        """``FusionRule.of("bias", "MatMul", "Add", when=("", "constant_input"))``; a step may
        list alternatives as ``"Relu|Clip"``."""
        return cls(name, tuple(frozenset(step.split("|")) for step in steps), anchor, kind,
                   when or ("",) * len(steps), dtype, source, shared_first)


@dataclass(frozen=True)
class RuleSet:
    """A backend's rules, applied in order (an earlier rule wins an op), and the format it reads.

    ``absent`` names the kernel kinds the backend's files are never mapped to (LiteRT: the
    converter writes LayerNorm as its reductions and arithmetic, each timed as its own kind, and
    a bilinear resize is priced as a copy); a probe does not time them. ``layout`` names the walk (:data:`edgevit.predict.layout.LAYOUTS`)
    that finds the layout conversions the backend adds (onnxruntime: ``"nchwc"``), or ``""``.
    """

    format: str
    rules: tuple[FusionRule, ...]
    notes: str = ""
    absent: frozenset[str] = frozenset()
    layout: str = ""


@dataclass
class Group:
    """Ops that run as one kernel: ``anchor`` and every op index in ``ops``; ``rules`` applied."""

    anchor: int
    ops: set[int]
    rules: list[str] = field(default_factory=list)
    kind: str | None = None
    dtype: str | None = None


def _constant_input(op: Op, graph: OpGraph) -> bool:
    return any(key in graph.tensors and graph.tensors[key].constant for key in op.inputs)


def _scalar_constant(op: Op, graph: OpGraph) -> bool:
    for key in op.inputs:
        tensor = graph.tensors.get(key)
        if tensor is not None and tensor.constant and tensor.shape is not None and _size(tensor.shape) == 1:
            return True
    return False


def _swaps_last_two(op: Op, graph: OpGraph) -> bool:
    """An ONNX Transpose whose ``perm`` only swaps the last two axes (what FusedMatMul's transB folds)."""
    perm = next((list(a.ints) for a in getattr(op.raw, "attribute", ()) if a.name == "perm"), None)
    return bool(perm) and len(perm) >= 2 and perm == [*range(len(perm) - 2), len(perm) - 1, len(perm) - 2]


def _size(shape) -> int:
    size = 1
    for d in shape:
        size *= d if d is not None else 0
    return size


#: conditions a rule step may require of its op, by name
CONDITIONS: dict[str, Callable[[Op, OpGraph], bool]] = {
    "": lambda op, graph: True,
    "constant_input": _constant_input,
    "scalar_constant": _scalar_constant,
    "swaps_last_two": _swaps_last_two,
}

_ORT = "onnxruntime graph optimizer, default level ORT_ENABLE_ALL (onnxruntime/core/optimizer/graph_transformer_utils.cc)"
_ORT_ACT = "Relu|Clip|Sigmoid|Tanh|LeakyRelu|HardSigmoid"
_ORT_QDQ = ("QDQ selectors (onnxruntime/core/optimizer/qdq_transformer): DequantizeLinear -> op [-> QuantizeLinear] "
            "runs as one int8 kernel (QLinearConv, QLinearMatMul, MatMulIntegerToFloat); a DequantizeLinear that "
            f"other ops also read is duplicated first (EnsureUniqueDQForNodeUnit); {_ORT}")
_QDQ_OPS = "MatMul|Gemm|Conv"

#: fusion rules per runtime backend (the names of :data:`edgevit.runtime.BACKENDS`)
RULES: Registry[RuleSet] = Registry("fusion rule set")
RULES.register("onnxruntime", RuleSet("onnx", (
    FusionRule.of("qdq", "DequantizeLinear", _QDQ_OPS, "QuantizeLinear", anchor=1, dtype="int8", source=_ORT_QDQ,
                  shared_first=True),
    FusionRule.of("qdq", "DequantizeLinear", _QDQ_OPS, anchor=1, dtype="int8", source=_ORT_QDQ, shared_first=True),
    FusionRule.of("layernorm", "ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add",
                  kind="layernorm", source=f"LayerNormFusion; {_ORT}"),
    FusionRule.of("gelu", "Div", "Erf", "Add", "Mul", "Mul", kind="gelu", source=f"GeluFusion; {_ORT}"),
    FusionRule.of("scale", "Mul", "MatMul", anchor=1, when=("scalar_constant", ""),
                  source=f"MatMulScaleFusion (FusedMatMul alpha); {_ORT}"),
    FusionRule.of("transpose", "Transpose", "MatMul", anchor=1, when=("swaps_last_two", ""),
                  source=f"MatmulTransposeFusion (FusedMatMul transB); {_ORT}"),
    FusionRule.of("bias", "MatMul", "Add", when=("", "constant_input"), source=f"MatMulAddFusion / Gemm bias; {_ORT}"),
    FusionRule.of("batchnorm", "Conv", "BatchNormalization", source=f"ConvBNFusion; {_ORT}"),
    FusionRule.of("conv-bias", "Conv", "Add", when=("", "constant_input"), source=f"ConvAddFusion; {_ORT}"),
    FusionRule.of("conv-act", "Conv", _ORT_ACT, source=f"ConvActivationFusion (FusedConv); {_ORT}"),
    FusionRule.of("gemm-act", "Gemm", _ORT_ACT, source=f"GemmActivationFusion; {_ORT}"),
), notes="QDQ groups are fused around MatMul, Gemm and Conv only; a Q or DQ elsewhere (Add, Concat, the "
          "activations' QuantizeLinear) is costed as an element-wise op; float convolutions run in the NCHWc "
          "layout, whose reorders are costed as copies (edgevit.predict.layout)", layout="nchwc"))
RULES.register("litert", RuleSet("tflite", (
    FusionRule.of("pad", "PAD|PADV2", "CONV_2D|DEPTHWISE_CONV_2D", anchor=1,
                  source="XNNPACK subgraph optimisation: a constant Pad is folded into the next convolution"),
), notes="the TFLite converter already writes activations into CONV_2D, FULLY_CONNECTED, ADD and MUL (fused_activation_function)",
    absent=frozenset({"layernorm", "reorder", "resize"})))


def group_ops(graph: OpGraph, rules: RuleSet, skip: set[int] = frozenset()) -> list[Group]:
    """Groups of ``graph.main_ops`` indices that ``rules`` fuse (ops in ``skip`` never join one).

    Rules are tried in order over the whole graph. A match may reuse an op already grouped
    only as that group's anchor and this rule's anchor (a MatMul that absorbed a scale and a
    transpose still takes its bias Add); its other ops must be free, and the outputs of every
    step but the last must be read only inside the group and not be graph outputs (but for a
    rule's ``shared_first`` op, which then stays out of the group).
    """
    ops = graph.main_ops
    index = {id(op): i for i, op in enumerate(ops)}
    readers = {key: [index[id(op)] for op in found] for key, found in graph.consumers(ops).items()}
    outputs = set(graph.outputs)
    group_of: dict[int, Group] = {}
    for rule in rules.rules:
        for start, op in enumerate(ops):
            if op.type in rule.chain[0] and start not in skip:
                for chain in _matches(rule, start, ops, graph, readers, skip):
                    _join(rule, chain, group_of, readers, outputs, ops)
    unique = {id(g): g for g in group_of.values()}
    return sorted(unique.values(), key=lambda g: g.anchor)


def _matches(rule: FusionRule, start: int, ops, graph: OpGraph, readers, skip) -> list[list[int]]:
    """The chains of ``rule`` that start at op ``start``: one (each step takes the first reader
    that fits), or, for a ``shared_first`` rule, one per reader of the first op that fits."""
    if not CONDITIONS[rule.when[0]](ops[start], graph):
        return []
    if len(rule.chain) == 1:
        return [[start]]
    seconds = _following(rule.chain[1], [start], ops, readers, skip)
    chains = []
    for second in seconds if rule.shared_first else seconds[:1]:
        chain = [start, second]
        for step in range(1, len(rule.chain)):
            if not CONDITIONS[rule.when[step]](ops[chain[-1]], graph):
                break
            if step + 1 < len(rule.chain):
                following = _following(rule.chain[step + 1], chain, ops, readers, skip)
                if not following:
                    break
                chain.append(following[0])
        else:
            chains.append(chain)
    return chains


def _following(types: frozenset[str], chain: list[int], ops, readers, skip) -> list[int]:
    """The readers of the last op of ``chain`` that are of ``types`` and can join it."""
    return [j for key in ops[chain[-1]].outputs for j in readers.get(key, ())
            if ops[j].type in types and j not in skip and j not in chain]


def _join(rule: FusionRule, chain: list[int], group_of: dict[int, Group], readers, outputs, ops) -> None:
    anchor = chain[rule.anchor]
    existing = group_of.get(anchor)
    if existing is not None and existing.anchor != anchor:
        return
    if any(i in group_of for i in chain if i != anchor):
        return
    members = set(chain) | (existing.ops if existing else set())
    shared = False
    for i in chain[:-1]:
        for key in ops[i].outputs:
            if key in outputs or any(j not in members for j in readers.get(key, ())):
                if i != chain[0] or not rule.shared_first:
                    return
                shared = True
    if shared:
        chain = chain[1:]  # the group reads its own copy; the first op stays for its other readers
    if existing is not None and rule.kind is not None:
        return  # a kind-changing rule on an op another rule already sized: keep the first
    group = existing or Group(anchor, set())
    group.ops |= set(chain)
    group.rules.append(rule.name)
    group.kind = group.kind or rule.kind
    group.dtype = group.dtype or rule.dtype
    for i in chain:
        group_of[i] = group
