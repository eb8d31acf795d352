"""Quantization schemes and recipes as frozen value objects.

What a quantized precision means (``int8``: int8 weights and activations; ``w8``: int8
weights, float activations; ``w4``/``w6``: 4/6-bit palettized weights) is its row of the one
precision table, :data:`edgevit.precision.PRECISIONS`. A *recipe* says how one artifact was quantized: the scheme, the calibration (method, number
of images) and which parts of the network stay in float, with the measured reason for each.
The recipe is written into the artifact's manifest (``quantization.recipe``).

Parts of a network are named in two ways that every target understands:

* **kinds** of op: ``conv``, ``dwconv`` (depthwise convolution), ``linear`` (a matrix
  product with a weight), ``matmul`` (a product of two activations: attention), ``softmax``,
  ``layernorm``, ``gelu``, ``add``, ``mul``, ``other``; plus the positions ``first`` and
  ``last`` (the first and last layers with weights: the stem and the classifier);
* **blocks**: the model's segments (``model.segments()``: ``patch_embed``, ``blocks.3``,
  ``stages.2``, ``head``...).

Example:
    >>> recipe = Recipe("int8", calib_method="percentile", float_kinds=("softmax",))
    >>> recipe.to_dict()["float_kinds"]
    ['softmax']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgevit.errors import InvalidArgumentError
from edgevit.precision import Precision, check_quantized

if TYPE_CHECKING:
    from edgevit.formats import Op

KINDS = ("conv", "dwconv", "linear", "matmul", "softmax", "layernorm", "gelu", "add", "mul", "other")
POSITIONS = ("first", "last")
#: the ops that published ViT PTQ studies single out as fragile; kept in float only where measured to matter
FRAGILE = ("layernorm", "softmax", "gelu", "first", "last")
CALIB_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_CALIB_SIZE = 128
DEFAULT_CALIB_SOURCE = "digits"
#: images used by the one-group-at-a-time sensitivity pass (a subset of the calibration set)
DEFAULT_SENSITIVITY_SIZE = 32


def scheme(name: str) -> Precision:
    """The quantized precision ``name`` from :data:`edgevit.precision.PRECISIONS` (its bits, linear or
    palettized weights, calibrated activations); a float or unknown name lists the quantized ones."""
    return check_quantized(name)


@dataclass(frozen=True)
class Recipe:
    """How one artifact is (to be) quantized.

    Attributes:
        precision: a quantized precision (:func:`edgevit.precision.quantized_names`).
        calib_method: activation ranges from ``minmax``, ``percentile`` (99.999th) or
            ``entropy`` (KL divergence), for ``int8``.
        calib_size: calibration images asked for; ``calib_used`` how many there were.
        calib_source: ``"digits"`` or the folder the images came from.
        float_kinds: op kinds (and ``first``/``last``) kept in float.
        float_blocks: model segments kept in float.
        max_drop: the ``--max-drop`` budget (top-1 points on the calibration set), if any.
        chosen_by: ``"default"`` (measured fragile-op rule), ``"max-drop"``, ``"unmeasured"`` (no
            sensitivity pass: conv and linear only) or ``"given"`` (used as it is).
        reasons: ``{group: why it is float}`` (e.g. its measured SQNR).
        options: target-specific settings actually used (per channel, palettization mode...).
    """

    precision: str
    calib_method: str = "minmax"
    calib_size: int = DEFAULT_CALIB_SIZE
    calib_source: str = DEFAULT_CALIB_SOURCE
    calib_used: int | None = None
    float_kinds: tuple[str, ...] = ()
    float_blocks: tuple[str, ...] = ()
    max_drop: float | None = None
    chosen_by: str = "default"
    reasons: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scheme(self.precision)
        if self.calib_method not in CALIB_METHODS:
            raise InvalidArgumentError(
                f"unknown calibration method {self.calib_method!r}; valid: {', '.join(CALIB_METHODS)}"
            )
        check_calib_size(self.calib_size)
        unknown = [k for k in self.float_kinds if k not in KINDS + POSITIONS]
        if unknown:
            raise InvalidArgumentError(
                f"unknown op kind(s) {', '.join(map(repr, unknown))} to keep in float; valid: "
                f"{', '.join(KINDS + POSITIONS)}"
            )
        if self.max_drop is not None:
            check_max_drop(self.max_drop)
        object.__setattr__(self, "float_kinds", tuple(dict.fromkeys(self.float_kinds)))
        object.__setattr__(self, "float_blocks", tuple(dict.fromkeys(self.float_blocks)))

    @property
    def scheme(self) -> Precision:
        return scheme(self.precision)

    @property
    def float_groups(self) -> tuple[str, ...]:
        """Everything kept in float, as group names (``kind:softmax``, ``first``, ``block:head``)."""
        return tuple(group_name(k) for k in self.float_kinds) + tuple(f"block:{b}" for b in self.float_blocks)

    def with_float(self, group: str, reason: str) -> Recipe:
        """A copy that also keeps ``group`` (``kind:x``, ``first``, ``last`` or ``block:x``) in float."""
        kinds, blocks = list(self.float_kinds), list(self.float_blocks)
        if group.startswith("block:"):
            blocks.append(group[len("block:"):])
        else:
            kinds.append(group[len("kind:"):] if group.startswith("kind:") else group)
        return dataclasses.replace(self, float_kinds=tuple(kinds), float_blocks=tuple(blocks),
                                   reasons={**self.reasons, group: reason})

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["float_kinds"] = list(self.float_kinds)
        data["float_blocks"] = list(self.float_blocks)
        data["scheme"] = self.scheme.description
        return data


def group_name(kind_or_position: str) -> str:
    """``"softmax"`` -> ``"kind:softmax"``; positions stay ``"first"`` / ``"last"``."""
    return kind_or_position if kind_or_position in POSITIONS else f"kind:{kind_or_position}"


def check_calib_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"--calib-size must be a positive number of images, got {value!r}")
    return value


def check_max_drop(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise InvalidArgumentError(
            f"--max-drop is a top-1 drop in percentage points between 0 and 100, got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class Unit:
    """One quantizable op of a converted model, as a target's quantizer sees it.

    Attributes:
        id: what the target's quantizer selects by (ONNX node name, TFLite op scope, MIL op name).
        op: the target's op type (``Gemm``, ``FULLY_CONNECTED``, ``linear``).
        kind: one of :data:`KINDS`.
        scope: the torch module path it came from (``blocks.0.attn.qkv``), or ``""``.
        block: the model segment it belongs to (``blocks.0``), or ``""``.
        position: ``"first"``, ``"last"`` or ``""`` (first/last op with weights).
        weighted: whether it has a weight tensor.
    """

    id: str
    op: str
    kind: str
    scope: str = ""
    block: str = ""
    position: str = ""
    weighted: bool = False

    def groups(self) -> tuple[str, ...]:
        out = [f"kind:{self.kind}"]
        if self.position:
            out.append(self.position)
        if self.block:
            out.append(f"block:{self.block}")
        return tuple(out)


def mark_positions(units: list[Unit]) -> list[Unit]:
    """Mark the first and last weighted units (in graph order) as ``first`` and ``last``."""
    weighted = [i for i, unit in enumerate(units) if unit.weighted]
    if not weighted:
        return units
    out = list(units)
    out[weighted[0]] = dataclasses.replace(out[weighted[0]], position="first")
    if weighted[-1] != weighted[0]:
        out[weighted[-1]] = dataclasses.replace(out[weighted[-1]], position="last")
    return out


#: kinds that are layers of their own: a module rule of :class:`KindRules` never changes them
LAYER_KINDS = ("conv", "dwconv", "linear", "matmul", "softmax")


@dataclass(frozen=True)
class KindRules:
    """Which kind (:data:`KINDS`) each op of one format is: every quantizer declares its rules so.

    Applied in this order by :meth:`kind`: an op with a weight input takes ``with_weight``'s
    kind, a grouped convolution ``grouped``'s, any other op ``ops``'s; then, unless that is
    one of :data:`LAYER_KINDS`, an op of a module whose class name holds a ``modules`` marker
    takes the marker's kind if its type is listed; an unlisted one gets no kind when
    ``modules_claim``, and keeps its own otherwise.

    Attributes:
        ops: op type -> kind; a type not listed is not quantizable.
        with_weight: op type -> kind when one input is a weight (a stored constant): a matrix
            product with a weight is a ``linear`` layer, without one ``matmul`` (attention).
        grouped: op type -> kind when its ``groups`` > 1 (depthwise convolutions).
        modules: ``(marker, kind, op types)``: the arithmetic a converter lowers a LayerNorm or
            GELU module into (``("Norm", "layernorm", ("Sub", "Mul", ...))``), by module class name.
        modules_claim: whether a marked module's unlisted ops get no kind.

    Example:
        >>> from edgevit.formats import Op
        >>> rules = KindRules({"MatMul": "matmul", "Add": "add"}, with_weight={"MatMul": "linear"},
        ...                   modules=(("Norm", "layernorm", ("Add",)),))
        >>> rules.kind(Op("MatMul"), weighted=True), rules.kind(Op("Add"), module="LayerNorm")
        ('linear', 'layernorm')
    """

    ops: Mapping[str, str]
    with_weight: Mapping[str, str] = field(default_factory=dict)
    grouped: Mapping[str, str] = field(default_factory=dict)
    modules: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    modules_claim: bool = False

    def __post_init__(self) -> None:
        kinds = [*self.ops.values(), *self.with_weight.values(), *self.grouped.values(),
                 *(kind for _, kind, _ in self.modules)]
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise InvalidArgumentError(f"unknown op kind(s) {', '.join(unknown)} in KindRules; valid: {', '.join(KINDS)}")

    def kind(self, op: Op, module: str = "", weighted: bool = False) -> str | None:
        """The kind of ``op``, or None if it is not quantizable.

        Args:
            op: the op as its format's reader gives it (type and ``groups`` are read).
            module: the class name of the innermost torch module it came from (``LayerNorm``), if known.
            weighted: whether one of its inputs is a weight.
        """
        if weighted and op.type in self.with_weight:
            return self.with_weight[op.type]
        if op.groups > 1 and op.type in self.grouped:
            return self.grouped[op.type]
        own = self.ops.get(op.type)
        if own in LAYER_KINDS:
            return own
        for marker, kind, types in self.modules:
            if marker in module:
                if op.type in types:
                    return kind
                if self.modules_claim:
                    return None
        return own


def select(units: list[Unit], recipe: Recipe, kinds: tuple[str, ...]) -> list[Unit]:
    """The units a recipe quantizes: of the given kinds and in no float group."""
    floats = set(recipe.float_groups)
    return [u for u in units if u.kind in kinds and not floats.intersection(u.groups())]
