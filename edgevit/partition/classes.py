"""Partitioning C classes into K groups, one group per sub-model (pure).

* :func:`balanced_split`: contiguous groups whose sizes differ by at most one (default).
* :func:`confusion_split`: the same group sizes, but classes that the full model confuses
  with each other go to the same group, so that each sub-model learns to tell them apart
  and the fusion head mostly has to tell groups apart. Greedy seeding (the most confused
  pair opens a group, which then grows by the class most confused with it), then pairwise
  swaps between groups while they raise the confusion kept inside groups.

Example:
    >>> balanced_split(10, 3)
    ((0, 1, 2, 3), (4, 5, 6), (7, 8, 9))
"""

from __future__ import annotations

from collections.abc import Sequence

from edgevit.errors import PlanningError

__all__ = ["balanced_split", "confusion_split", "group_sizes", "within_group_confusion"]


def group_sizes(num_classes: int, groups: int) -> tuple[int, ...]:
    """Sizes of ``groups`` balanced groups of ``num_classes`` (the larger ones first)."""
    if groups < 1:
        raise PlanningError(f"the number of groups must be >= 1, got {groups}")
    if groups > num_classes:
        raise PlanningError(
            f"{groups} devices but only {num_classes} classes: a class-wise split needs at least one class per "
            f"sub-model; use at most {num_classes} devices, or the pipeline strategy"
        )
    base, extra = divmod(num_classes, groups)
    return tuple(base + (i < extra) for i in range(groups))


def balanced_split(num_classes: int, groups: int) -> tuple[tuple[int, ...], ...]:
    """Contiguous class groups of balanced size."""
    out, start = [], 0
    for size in group_sizes(num_classes, groups):
        out.append(tuple(range(start, start + size)))
        start += size
    return tuple(out)


def within_group_confusion(confusion: Sequence[Sequence[float]], groups: Sequence[Sequence[int]]) -> float:
    """Off-diagonal confusion mass whose two classes share a group (higher is better)."""
    return sum(confusion[a][b] for group in groups for a in group for b in group if a != b)


def confusion_split(confusion: Sequence[Sequence[float]], groups: int, max_passes: int = 20) -> tuple[tuple[int, ...], ...]:
    """Balanced groups that keep confused classes together.

    Args:
        confusion: ``C x C``; ``confusion[i][j]`` counts class-i samples predicted as j.
        groups: K.
    """
    num = len(confusion)
    if any(len(row) != num for row in confusion):
        raise PlanningError(f"the confusion matrix must be square, got {num} rows of lengths {sorted({len(r) for r in confusion})}")
    sizes = group_sizes(num, groups)
    sym = [[0.0 if a == b else float(confusion[a][b]) + float(confusion[b][a]) for b in range(num)] for a in range(num)]
    assignment = _seed(sym, sizes)
    _improve_by_swaps(sym, assignment, max_passes)
    out = [sorted(c for c in range(num) if assignment[c] == g) for g in range(len(sizes))]
    return tuple(tuple(g) for g in sorted(out))


def _seed(sym: list[list[float]], sizes: tuple[int, ...]) -> list[int]:
    num = len(sym)
    assignment = [-1] * num
    for g, size in enumerate(sizes):
        free = [c for c in range(num) if assignment[c] < 0]
        if size == 1 or len(free) == 1:
            members = [max(free, key=lambda c: (sum(sym[c][o] for o in free), -c))]
        else:
            a, b = max(((a, b) for a in free for b in free if a < b), key=lambda p: (sym[p[0]][p[1]], -p[0], -p[1]))
            members = [a, b]
        while len(members) < size:
            rest = [c for c in free if c not in members]
            members.append(max(rest, key=lambda c: (sum(sym[c][m] for m in members), -c)))
        for c in members:
            assignment[c] = g
    return assignment


def _improve_by_swaps(sym: list[list[float]], assignment: list[int], max_passes: int) -> None:
    num = len(sym)

    def gain(a: int, b: int) -> float:
        ga, gb = assignment[a], assignment[b]
        before = sum(sym[a][c] for c in range(num) if assignment[c] == ga and c != a)
        before += sum(sym[b][c] for c in range(num) if assignment[c] == gb and c != b)
        after = sum(sym[a][c] for c in range(num) if assignment[c] == gb and c != b)
        after += sum(sym[b][c] for c in range(num) if assignment[c] == ga and c != a)
        return after - before

    for _ in range(max_passes):
        improved = False
        for a in range(num):
            for b in range(a + 1, num):
                if assignment[a] != assignment[b] and gain(a, b) > 1e-12:
                    assignment[a], assignment[b] = assignment[b], assignment[a]
                    improved = True
        if not improved:
            return
