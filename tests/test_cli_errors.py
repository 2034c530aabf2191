"""Every command-line entry point answers bad input with one line that says what is wrong, and exit status 2."""

import subprocess
import sys

import pytest
from testkit import REPO

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


@pytest.mark.parametrize("args, message", CASES, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_one_line_and_status_2(args, message):
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
