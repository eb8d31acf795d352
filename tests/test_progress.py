"""edgevit._progress: the one progress display (train, export, split, quantize, bench), on stderr."""

from __future__ import annotations

import io
import time

import pytest

from edgevit._progress import Progress, duration


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_only_log_lines_are_printed(capsys):
    with Progress(3, "bench") as bar:
        bar.note("timing")
        bar.update(3, loss=0.5)
        with bar.step("[m-onnx-fp32] convert"):
            pass
        bar.log("epoch 1: loss 0.5000")
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout stays the command's result
    assert captured.err.endswith("s] epoch 1: loss 0.5000\n") and captured.err.startswith("[bench ")
    assert captured.err.count("\n") == 1


def test_enabled_prints_notes_and_steps_off_a_terminal(capsys):
    with Progress(3, "bench", enabled=True) as bar:
        bar.note("timing")
        with bar.step("[m-onnx-fp32] convert"):
            pass
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "bench: timing"
    assert lines[1].startswith("[m-onnx-fp32] convert ... done in ") and len(lines) == 2


def test_quiet_prints_nothing_even_on_a_terminal():
    stream = Terminal()
    with Progress(4, "bench", enabled=False, stream=stream) as bar:
        bar.note("timing")
        bar.update(2)
        bar.log("epoch 1")
        with bar.step("convert"):
            pass
    assert stream.getvalue() == ""


def test_the_bar_shows_counts_rate_eta_fields_and_status_on_a_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the drawn line is cut to the terminal's width
    stream = Terminal()
    bar = Progress(4, "train", stream=stream)
    monkeypatch.setattr(bar, "start", bar.start - 10.0)  # 10 s in
    bar.update(2, loss=0.25)
    bar.note("timing 2 models")
    line = bar.line()
    assert line.startswith("train [##########----------]  50% 2/4 10.0s 0.2/s ETA 10.0s loss=0.25")
    assert line.endswith("timing 2 models") and "timing 2 models" in stream.getvalue()
    bar.update(2)
    assert "ETA" not in bar.line()  # nothing left


def test_the_drawn_line_is_cut_to_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    stream = Terminal()
    bar = Progress(4, "train", stream=stream)
    monkeypatch.setattr(bar, "start", bar.start - 10.0)
    monkeypatch.setattr(time, "perf_counter", lambda: bar.start + 10.0)  # the rate in both lines alike
    bar.update(1)
    bar.note("a status note long enough to run past fifty columns")
    assert len(bar.line()) > 49
    drawn = stream.getvalue().split("\r")[-1]
    assert drawn == bar.line()[:49]


def test_a_step_on_a_terminal_ends_on_its_own_line():
    stream = Terminal()
    with Progress(desc="export", stream=stream).step("[m] convert"):
        pass
    assert stream.getvalue().startswith("[m] convert ...\r[m] convert done in ")


def test_a_log_line_goes_above_the_bar_and_the_bar_is_drawn_again():
    stream = Terminal()
    with Progress(2, "train", stream=stream) as bar:
        bar.update(1)
        bar.log("epoch 1: loss 0.1")
    text = stream.getvalue()
    before, after = text.split("epoch 1: loss 0.1\n")
    assert "\r" + " " * 10 in before  # the bar was wiped before the line
    assert after.startswith("\rtrain [") and after.endswith("\n")


def test_a_step_interrupted_by_a_note_ends_on_its_own_line(capsys):
    bar = Progress(desc="export", enabled=True)
    with pytest.raises(RuntimeError), bar.step("[m] quantize"):
        bar.note("calibrating activations on 64 images")
        raise RuntimeError("converter died")
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["[m] quantize ...", "export: calibrating activations on 64 images"]
    assert lines[2].startswith("[m] quantize failed after ") and len(lines) == 3


@pytest.mark.parametrize(("seconds", "text"), [(3.21, "3.2s"), (65, "1:05"), (3723, "1:02:03")])
def test_duration(seconds, text):
    assert duration(seconds) == text
