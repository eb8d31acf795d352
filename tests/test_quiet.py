"""edgevit._quiet: one way to keep converters' printing out of the terminal."""

from __future__ import annotations

import logging
import os
import warnings

from edgevit._quiet import captured_output, quiet


def _talk(word: str) -> None:
    print(f"{word}-print")
    os.write(2, f"{word}-fd\n".encode())  # what C++ logging does
    warnings.warn(f"{word}-warning", stacklevel=1)
    logging.getLogger("edgevit.test").warning("%s-log", word)


def test_quiet_silences_python_and_file_descriptors(capfd):
    with quiet():
        _talk("hidden")
    out, err = capfd.readouterr()
    assert "hidden" not in out + err


def test_captured_output_keeps_the_text_and_nested_captures_pass_theirs_on(capfd):
    with captured_output() as outer:
        _talk("outer")
        with captured_output() as inner:
            _talk("inner")
        with quiet():
            _talk("quiet")
    out, err = capfd.readouterr()
    assert "outer" not in out + err and "inner" not in out + err
    for word in ("print", "fd", "warning", "log"):
        assert f"inner-{word}" in inner.text
        assert f"outer-{word}" in outer.text and f"inner-{word}" in outer.text and f"quiet-{word}" in outer.text
    assert outer.text.count("inner-log") == 1  # one logging handler at a time: no line twice
    assert "outer" not in inner.text
