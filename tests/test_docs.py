"""The commands in the README and docs/*.md are real commands (issue 17, finding 2).

Every ``edgevit ...`` line of a shell block (continuation lines joined, comments and a
trailing ``&`` dropped) must parse with the CLI's own parser, and every zoo model, target
and precision it names must exist; in the README's tour, every weights file and artifact a
line reads must be made by a line above it, or be marked as something the reader brings
(a trailing comment saying so). A flag renamed in the code, a model dropped from the zoo or a
tour line that needs a file no line made fails here, not in a new user's first session.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from edgevit.cli import build_parser
from edgevit.export.auto import AUTO
from edgevit.export.options import split_names
from edgevit.export.targets import TARGETS
from edgevit.models import MODELS
from edgevit.precision import PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a trailing comment that says the reader brings the file (official weights, a device file)
BRINGS = re.compile(r"you have|docs/|on a device|a device|agents?\b", re.IGNORECASE)


def shell_commands(path: Path) -> list[tuple[int, str, str]]:
    """``(line number, command, trailing comment)`` of every ``edgevit`` command in ``path``'s shell blocks."""
    commands, block, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            block = not block and line.strip("`").strip() in ("bash", "sh", "shell", "console")
            continue
        if not block:
            continue
        text = line.removeprefix("$ ")
        if not pending:
            start = number
        if text.rstrip().endswith("\\"):
            pending += text.rstrip()[:-1] + " "
            continue
        text, pending = pending + text, ""
        command, _, comment = text.partition(" #")
        command = command.strip().removesuffix("&").strip()
        if command.startswith("edgevit "):
            commands.append((start, command, comment.strip()))
    return commands


CASES = [(path, number, command, comment) for path in DOCS for number, command, comment in shell_commands(path)]


def test_the_docs_have_commands_to_check():
    assert len(CASES) >= 20 and {path.name for path, *_ in CASES} >= {"README.md", "edvit.md", "export.md"}


@pytest.mark.parametrize(("path", "number", "command", "comment"), CASES,
                         ids=[f"{p.name}:{n}" for p, n, _, _ in CASES])
def test_a_documented_command_parses_and_names_what_exists(path, number, command, comment):
    parser = build_parser()
    argv = shlex.split(command)[1:]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{path.name}:{number}: `{command}` does not parse (exit {exit_.code})")
    for name in _models(args):
        assert name in MODELS, f"{path.name}:{number}: no zoo model {name!r}"
    for target in _names(getattr(args, "target", None)):
        assert target in TARGETS, f"{path.name}:{number}: no export target {target!r}"
    for precision in _names(getattr(args, "precision", None)):
        assert precision in PRECISIONS or precision == AUTO, f"{path.name}:{number}: no precision {precision!r}"


def _names(value) -> list[str]:
    return split_names(value) if isinstance(value, str) and value else []


def _models(args: argparse.Namespace) -> list[str]:
    names = []
    if args.command in ("export", "train", "split"):
        names.append(args.model)
    if args.command == "bench" and getattr(args, "torch", None):
        names += _names(args.torch)
    return names


def test_the_readme_tour_runs_in_order():
    """Each weights file or artifact a tour line reads is written by a line above it (or brought by the reader)."""
    made: set[str] = set()
    problems = []
    parser = build_parser()
    for number, command, comment in shell_commands(ROOT / "README.md"):
        args = parser.parse_args(shlex.split(command)[1:])
        brought = bool(BRINGS.search(comment))
        needed = [getattr(args, "weights", None)]
        if args.command in ("eval",) and "-" in args.model:
            needed.append(args.model)
        if args.command in ("bench", "deploy"):
            needed += [a for a in getattr(args, "artifacts", []) if not a.startswith("http")]
        if args.command == "split" and not args.weights:
            problems.append(f"README.md:{number}: `{command}` splits a random-init model: pass --weights")
        for item in filter(None, needed):
            if item not in made and not brought:
                problems.append(f"README.md:{number}: `{command}` reads {item!r}, which no line above makes")
        made |= _made_by(args)
    assert not problems, "\n".join(problems)


def _made_by(args: argparse.Namespace) -> set[str]:
    if args.command == "export":
        name = args.name or args.model
        return {f"{name}-{t}-{p}" for t in split_names(args.target) for p in split_names(args.precision)}
    if args.command in ("train", "split") and args.out:
        return {args.out}
    return set()
