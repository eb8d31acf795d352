"""The README's tour runs as written, in order, on this machine (issue 17, finding 2).

``tests/test_docs.py`` checks that every documented command parses and that each tour line reads
only what a line above made. This test goes further and **runs** the tour: each ``edgevit``
line of the README's tour block, in order, in one empty folder, through the installed CLI
(``python -m edgevit``, as a user's shell would run it), and checks it exits 0 and writes what
it says it writes.

Left out, each for a reason the line itself gives (and asserted to be exactly these, so a new
line cannot slip past unrun):

* lines that read a file the reader brings (official weights: a trailing ``# ... you have``);
* lines that run on, or reach, another device (``# on a device``, ``--url``, ``deploy``,
  ``run ... --devices``): there is no second device here. The agent and the cluster runner have
  their own tests against real agents on loopback (``tests/agent``, ``tests/cluster``).

The device file the ``split`` line reads comes from docs/edvit.md, as its comment says: the test
takes the first ``toml`` block there, without the device that points at a profile file.

Slow tier: it trains two models and splits one (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

import pytest
from test_docs import BRINGS, ROOT, _made_by, shell_commands

from edgevit.cli import build_parser

#: a line that needs another device: run there, or reaching an agent
ON_A_DEVICE = re.compile(r"--url\b|^edgevit (serve|deploy|run)\b")
TIMEOUT_S = 1800


def tour() -> list[tuple[int, str, str]]:
    return shell_commands(ROOT / "README.md")


def runnable(command: str, comment: str) -> bool:
    if ON_A_DEVICE.search(command) or "on a device" in comment:
        return False
    return not (BRINGS.search(comment) and "devices.toml" not in comment)


def device_file_from_docs() -> str:
    """The first ``toml`` block of docs/edvit.md, without a device given by a profile file (none exists here)."""
    text = (ROOT / "docs" / "edvit.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    tables = re.split(r"(?m)^(?=\[)", block)
    return "".join(t for t in tables if "profile =" not in t)


def test_the_tour_leaves_out_only_lines_that_need_a_device_or_a_brought_file():
    left_out = [command for _, command, comment in tour() if not runnable(command, comment)]
    assert left_out, "the tour has device lines; the selection rule must find them"
    for command in left_out:
        assert command.split()[1] in ("serve", "deploy", "run", "bench", "export"), command
    assert sum(runnable(c, m) for _, c, m in tour()) >= 7


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path):
    (tmp_path / "devices.toml").write_text(device_file_from_docs())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = []
    for number, command, comment in tour():
        if not runnable(command, comment):
            log.append(f"README.md:{number}: left out ({comment or 'needs a device'})")
            continue
        argv = [sys.executable, "-m", "edgevit", *shlex.split(command)[1:]]
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        log.append(f"README.md:{number}: {time.perf_counter() - start:6.1f} s  {command}")
        assert done.returncode == 0, (f"README.md:{number}: `{command}` exited {done.returncode}\n"
                                      f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        for item in _writes(command):
            assert (tmp_path / item).exists(), f"README.md:{number}: `{command}` did not write {item}"
    print("\n".join(log))


def _writes(command: str) -> set[str]:
    """What a tour line promises to write: an export's artifact folders, a train or split --out, a bench --plot."""
    args = build_parser().parse_args(shlex.split(command)[1:])
    return _made_by(args) | {getattr(args, "plot", None)} - {None}
