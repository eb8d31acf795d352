"""The ``edgevit`` command line: a thin skin over the public API.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args)``;
errors print as ``ErrorType: message`` and exit 1 (tracebacks only with ``--debug``).
Tested by calling :func:`main` with an argv list.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import traceback
import warnings

from edgevit import __version__

SUBCOMMANDS = ("models", "export", "bench", "train", "eval", "split", "serve", "deploy", "run", "devices", "predict")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevit",
        description="Efficient vision transformers on edge devices: export, verify, quantize, benchmark, split.",
    )
    parser.add_argument("--version", action="version", version=f"edgevit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"edgevit.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"edgevit.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.add_parser(sub)
    for command in sub.choices.values():  # `edgevit export ... --debug` works as well as `edgevit --debug export`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show full tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 1 error, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = args.debug
    previous = _terminate_like_interrupt()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.formatwarning = _format_warning
            return int(args.run(args) or 0)
    except _Terminated:
        print("Terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI turns every error into one line
        if debug:
            traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it cleans up as after Ctrl-C."""


def _terminate_like_interrupt():
    """Make SIGTERM (``kill``, a CI timeout, a container stopping) unwind like Ctrl-C, so every
    command's cleanup runs (staging folders removed, nothing half-written); the old handler, or
    None off the main thread. Commands with their own SIGTERM handling (``serve``) set it later."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise _Terminated()

    return signal.signal(signal.SIGTERM, handler)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
