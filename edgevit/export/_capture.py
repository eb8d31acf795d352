"""Kept only for :mod:`edgevit.split.writer`, which is being rewritten: the helper lives in
:mod:`edgevit._quiet` now. Remove this module when the writer imports it from there."""

from edgevit._quiet import CapturedOutput, captured_output

__all__ = ["CapturedOutput", "captured_output"]
