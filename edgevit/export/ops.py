"""The op report of an exported model: what op types it holds and which will hurt.

Each target reads its file with its format's reader in :mod:`edgevit.formats` (ONNX nodes,
TFLite operators, MIL ops) and turns it into an :class:`OpReport`; the warnings say, in one line each, what falls off the fast path and
why, so that a user learns it before shipping.

Example:
    >>> report = OpReport.build({"Conv": 12, "Gather": 1}, ["rank-5 tensor ..."])
    >>> report.top(1)
    [('Conv', 12)]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edgevit.formats import MAX_FAST_RANK

#: ONNX ops that gather or scatter along a computed index (slow or unsupported on mobile EPs/NPUs)
ONNX_GATHER_OPS = frozenset({"Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements", "NonZero"})
#: TFLite builtins that gather with computed indices
TFLITE_GATHER_OPS = frozenset({"GATHER", "GATHER_ND", "SCATTER_ND", "WHERE", "EMBEDDING_LOOKUP"})
#: MIL ops known to run off the Neural Engine (on the CPU or GPU); Apple documents no full list, so
#: this is the commonly reported set, not a guarantee either way
MIL_OFF_ANE_OPS = frozenset({
    "gather", "gather_nd", "gather_along_axis", "scatter", "scatter_nd", "scatter_along_axis",
    "non_zero", "topk", "argsort", "cumsum", "while_loop", "cond", "random_normal", "random_uniform",
    "einsum", "non_maximum_suppression", "band_part",
})


@dataclass(frozen=True)
class OpReport:
    """Op-type histogram of an exported graph, warnings, and target-specific facts.

    Attributes:
        histogram: ``{op type: count}``, most frequent first.
        warnings: one line per problem a user should know about before shipping.
        details: facts such as ``{"xnnpack_delegated": "235/235"}``.
    """

    histogram: dict[str, int]
    warnings: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, counts: Counter | dict[str, int], warnings: Iterable[str] = (),
              details: dict[str, Any] | None = None) -> OpReport:
        ordered = dict(sorted(Counter(counts).items(), key=lambda kv: (-kv[1], kv[0])))
        return cls(ordered, tuple(warnings), dict(details or {}))

    @property
    def total(self) -> int:
        return sum(self.histogram.values())

    def top(self, n: int = 8) -> list[tuple[str, int]]:
        return list(self.histogram.items())[:n]

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "histogram": dict(self.histogram), "warnings": list(self.warnings),
                **({"details": self.details} if self.details else {})}

    def format_histogram(self, n: int = 10) -> str:
        parts = [f"{op} {count}" for op, count in self.top(n)]
        rest = len(self.histogram) - n
        return ", ".join(parts) + (f", ... ({rest} more types)" if rest > 0 else "")


def gather_warning(found: dict[str, int], where: str) -> str | None:
    """One line for gather/scatter ops with computed indices, or None."""
    if not found:
        return None
    listing = ", ".join(f"{op} x{count}" for op, count in sorted(found.items()))
    return (f"{listing}: gathers with computed indices {where}; precompute them as constants "
            "(attention-bias tables) or express them as slices")


def rank_warning(tensors: dict[str, int], where: str, limit: int = 3) -> str | None:
    """One line for tensors of rank above 4 (``{tensor name: rank}``), or None."""
    if not tensors:
        return None
    worst = max(tensors.values())
    names = ", ".join(list(tensors)[:limit]) + (", ..." if len(tensors) > limit else "")
    return (f"{len(tensors)} tensor(s) of rank > {MAX_FAST_RANK} (up to rank {worst}: {names}); {where} "
            f"handles at most rank {MAX_FAST_RANK} well; rewrite the reshape to stay 4-D")
