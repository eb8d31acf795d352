"""Kept only for :mod:`edgevit.split.writer`, which is being rewritten (issue 14): the helper
lives in :mod:`edgevit._quiet` now. Delete this module when the writer imports it from there
(tests/test_layers.py then asks for its KNOWN_UNTIL_ISSUE_14 entry to go too)."""

from edgevit._quiet import captured_output

__all__ = ["captured_output"]
