"""Comparing with the official code's golden outputs (imported by name: a ``conftest`` is ambiguous)."""

from __future__ import annotations

from tolerances import GOLDEN, Close


def assert_matches_golden(actual, expected, row: Close = GOLDEN) -> None:
    """``actual`` equals the official output within ``row`` (:data:`tolerances.GOLDEN`: relative to
    each value and to the largest |value|, so that a logit near zero is judged against the
    output's scale, not its own)."""
    row.check(actual, expected)
