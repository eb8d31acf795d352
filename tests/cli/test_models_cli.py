from __future__ import annotations

from edgevit.cli import main


def test_models_table(capsys):
    assert main(["models", "vit*"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["model", "params", "GMACs", "input", "family"]
    assert "vit_tiny_patch16_224" in out and "5.72M" in out and "test_vit" not in out


def test_models_all_includes_test_models(capsys):
    assert main(["models", "--all", "*vit*"]) == 0
    assert "test_vit" in capsys.readouterr().out


def test_unknown_pattern_is_one_line_error(capsys):
    assert main(["models", "efficientformer_l2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("UnknownNameError: no model matches 'efficientformer_l2'")
    assert "Traceback" not in err


def test_debug_shows_traceback(capsys):
    assert main(["--debug", "models", "nope_nothing"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_debug_after_the_subcommand_shows_traceback_too(capsys):
    assert main(["models", "nope_nothing", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    assert main(["models", "nope_nothing"]) == 1  # and without it, still one line
    assert "Traceback" not in capsys.readouterr().err


def test_every_option_of_every_command_has_help_that_names_its_default():
    """Issue 17 #12: `edgevit COMMAND --help` is enough to use an option (parametrized over the commands)."""
    import argparse

    from edgevit.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    problems = []
    for name, command in commands.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction) or action.default is argparse.SUPPRESS:
                continue
            label = f"{name} {action.option_strings[0] if action.option_strings else action.dest}"
            if not action.help:
                problems.append(f"{label}: no help")
            elif action.option_strings and action.default not in (None, False) and "default" not in action.help:
                problems.append(f"{label}: default {action.default!r} not in its help")
    assert problems == []


def test_models_json_lists_every_field(capsys):
    import json

    assert main(["models", "--json", "cas_vit_x*"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["cas_vit_xs"]
    assert rows[0]["params"] > 0 and rows[0]["split_points"] and rows[0]["preprocess"]["mean"]


def test_a_mistyped_model_is_refused_before_torch_is_imported():
    """Issue 17, finding 12: a typo must not cost a torch import (5-12 s)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from edgevit.cli import main\n"
        "codes = [main(['export', 'tset_vit']), main(['train', 'tset_vit', '--data', 'digits']),\n"
        "         main(['eval', 'tset_vit', '--data', 'digits']),\n"
        "         main(['split', 'tset_vit', '--data', 'digits', '--devices', 'd.toml', '--out', 'p'])]\n"
        "print('RESULT', codes, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "RESULT [1, 1, 1, 1] False" in result.stdout, result.stdout + result.stderr
    assert result.stderr.count("UnknownNameError: unknown model 'tset_vit'; closest: test_vit") == 4
