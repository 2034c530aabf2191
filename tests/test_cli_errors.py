"""Every command-line entry point answers bad input with one line that says what is wrong, and exit status 2;
every option of every parser has a help text."""

import argparse
import importlib
import subprocess
import sys

import pytest

from reward_funcs.cli import REPO

CASES = [
    (["launch", "train", "--bogus"], "unrecognized arguments: --bogus"),
    (["launch"], "arguments are required: command"),
    (
        ["launch", "train", "--address", "http://127.0.0.1:9", "recipes/countdown/qwen2.5-3b-ppo.yaml"],
        "the Ray cluster at http://127.0.0.1:9 did not answer",
    ),
    (["launch", "preflight", "recipes/nowhere.yaml"], "no such recipe file"),
    (["analysis.evaluate", "--model", "x"], "--model needs --data"),
    (["analysis.evaluate", "--model", "x", "--data", "/nowhere.parquet"], "no such dataset"),
    (["analysis.evaluate", "--model", "x", "--data", "x", "--n", "4"], "--n above 1 needs --temperature"),
    (["analysis.curves", "/nowhere"], "no such run folder: /nowhere"),
    (["analysis.report", "/nowhere.yaml"], "no such recipe file"),
    (["reward_funcs.server", "--port", "99999"], "--port 0 to 65535"),
    (["data_tools.multiply", "--out", "/tmp/x", "--digits", "12"], "--digits must be 1 to 9"),
]


def run_module(args, timeout=120):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", CASES, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_one_line_and_status_2(args, message):
    result = run_module(args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


PPO = "recipes/countdown/qwen2.5-3b-ppo.yaml"
ABLATION = "recipes/ablations/model-size.yaml"
# The same three kinds of bad input for every family of entry points: (module and arguments, what the line says).
# {tmp} is the test's own folder, so that nothing lands in the repository. The reward service reads no file, so
# it has no "missing file" case.
BAD_INPUT = {
    "launch": {
        "unknown flag": (["launch", "train", "--bogus"], "unrecognized arguments: --bogus"),
        "missing file": (["launch", "preflight", "recipes/nowhere.yaml"], "no such recipe file"),
        "bad value": (
            ["launch", "train", PPO, "--set", "nokeyvalue", "--dry-run"],
            "--set 'nokeyvalue': write KEY=VALUE",
        ),
    },
    "data_tools.countdown": {
        "unknown flag": (["data_tools.countdown", "--out", "{tmp}/o", "--bogus"], "unrecognized arguments: --bogus"),
        "missing file": (["data_tools.countdown", "--out", "{tmp}/o", "--source", "{tmp}/no.parquet"], "no such file"),
        "bad value": (["data_tools.countdown", "--out", "{tmp}/o", "--counts", "3,9"], "each count must be 2 to 6"),
    },
    "data_tools.multiply": {
        "unknown flag": (["data_tools.multiply", "--out", "{tmp}/o", "--bogus"], "unrecognized arguments: --bogus"),
        "missing file": (["data_tools.multiply", "--out", "{tmp}/nowhere/o"], "the parent folder of {tmp}/nowhere/o"),
        "bad value": (["data_tools.multiply", "--out", "{tmp}/o", "--digits", "twelve"], "invalid int value: 'twelve'"),
    },
    "reward_funcs.server": {
        "unknown flag": (["reward_funcs.server", "--bogus"], "unrecognized arguments: --bogus"),
        "bad value": (["reward_funcs.server", "--port", "99999"], "--port 0 to 65535"),
    },
    "analysis.evaluate": {
        "unknown flag": (["analysis.evaluate", "--model", "m", "--data", "d", "--bogus"], "unrecognized arguments"),
        "missing file": (["analysis.evaluate", "--model", "m", "--data", "{tmp}/no.parquet"], "no such dataset"),
        "bad value": (["analysis.evaluate", "--model", "m", "--data", "d", "--n", "0"], "--n, --max-new-tokens"),
    },
    "analysis.curves": {
        "unknown flag": (["analysis.curves", "{tmp}", "--bogus"], "unrecognized arguments: --bogus"),
        "missing file": (["analysis.curves", "{tmp}/nowhere"], "no such run folder: {tmp}/nowhere"),
        "bad value": (["analysis.curves", "{tmp}", "--smooth", "1.5"], "--smooth must be in [0, 1)"),
    },
    "analysis.report": {
        "unknown flag": (["analysis.report", ABLATION, "--bogus"], "unrecognized arguments: --bogus"),
        "missing file": (["analysis.report", "{tmp}/nowhere.yaml"], "no such recipe file"),
        "bad value": (["analysis.report", PPO, "--out", "{tmp}/r"], "an ablation needs `base: <recipe>`"),
    },
}


@pytest.mark.parametrize(
    "module, kind",
    [pytest.param(module, kind, id=f"{module}: {kind}") for module, kinds in BAD_INPUT.items() for kind in kinds],
)
def test_bad_input_is_one_line_from_the_program_and_status_2(tmp_path, module, kind):
    args, message = BAD_INPUT[module][kind]
    result = run_module([a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"python -m {module}: error: "), result.stderr
    assert message.format(tmp=tmp_path) in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


PARSERS = [
    "data_tools.countdown",
    "data_tools.multiply",
    "reward_funcs.server",
    "analysis.evaluate",
    "analysis.curves",
    "analysis.report",
    "launch.__main__",
    "launch.probe",
    "launch.runtime",
    "analysis.smoke",
]


def options(parser: argparse.ArgumentParser, command: tuple[str, ...] = ()):
    """(the option as typed, its help) for every option of `parser` and of its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from options(sub, (*command, name))
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield " ".join((*command, action.option_strings[-1])), action.help


@pytest.mark.parametrize("module", PARSERS)
def test_every_option_has_a_help_text(module):
    found = list(options(importlib.import_module(module).build_parser()))
    assert found  # the walk sees the options
    assert [flag for flag, help in found if not help or help == argparse.SUPPRESS] == []
