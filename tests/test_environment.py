"""The environments: requirements.txt agrees with openrlhf 0.11.2's own pins; our tests are the ones that run."""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from testkit import REPO


def requirements(path):
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {Requirement(line).name.lower(): Requirement(line) for line in lines if line}


def openrlhf_requires():
    """openrlhf's Requires-Dist, with the `vllm` extra's requirements included."""
    found = {}
    for spec in importlib.metadata.requires("openrlhf"):
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": "vllm"}):
            found[req.name.lower()] = req
    return found


def test_openrlhf_is_the_release_we_build_on():
    assert importlib.metadata.version("openrlhf") == "0.11.2"
    ours = requirements(REPO / "requirements.txt")["openrlhf"]
    assert str(ours.specifier) == "==0.11.2" and ours.extras == {"vllm"}


def test_every_pin_agrees_with_openrlhf():
    ours, theirs = requirements(REPO / "requirements.txt"), openrlhf_requires()
    pinned_by_openrlhf = {name for name, req in theirs.items() if any(s.operator == "==" for s in req.specifier)}
    assert pinned_by_openrlhf == {"deepspeed", "flash-attn", "ray", "transformers", "vllm"}
    for name in pinned_by_openrlhf:
        assert name in ours, f"requirements.txt does not state openrlhf's pin {theirs[name]}"
    for name, req in ours.items():
        if name in theirs:
            assert req.specifier == theirs[name].specifier or not theirs[name].specifier, (req, theirs[name])
            assert req.extras >= theirs[name].extras, (req, theirs[name])


def test_test_environment_pins_agree_with_openrlhf():
    theirs = openrlhf_requires()
    for name, req in requirements(REPO / "requirements-test.txt").items():
        if name in theirs and theirs[name].specifier:
            assert req.specifier == theirs[name].specifier, (req, theirs[name])
            assert importlib.metadata.version(name) in req.specifier


def test_openrlhf_ships_a_tests_package_and_ours_is_not_one():
    # The hazard is real: the wheel installs a top-level `tests` package.
    spec = importlib.util.find_spec("tests")
    assert spec is not None and "site-packages" in spec.origin
    # Ours has no __init__.py, so its modules are imported by file name, never as `tests.<name>`.
    assert not (REPO / "tests" / "__init__.py").exists()
    assert __name__ == "test_environment" and Path(__file__).parent == REPO / "tests"
    ours = [m for m in sys.modules.values() if getattr(m, "__file__", None) and m.__name__.startswith("test")]
    for module in ours:
        if module.__name__.startswith("tests."):
            pytest.fail(f"{module.__name__} was imported from the tests package at {module.__file__}")


def test_ci_runs_make_test_and_nothing_else():
    commands = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1].strip() == "make test"
    readme = (REPO / "README.md").read_text()
    for command in commands[:-1]:  # the shell's setup, and the browser the README tells a user to install
        assert command.startswith(("set ", "cd ")) or (
            "apt-get install -y -qq chromium" in command and "apt-get install chromium" in readme
        ), command


@pytest.mark.skipif(Path(sys.prefix).resolve() != (REPO / ".venv").resolve(), reason="runs inside `make test`'s .venv")
def test_make_test_does_not_reinstall():
    dry_run = subprocess.run(
        ["make", "-n", "venv"], cwd=REPO, capture_output=True, text=True, env={**os.environ, "MAKEFLAGS": ""}
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "pip" not in dry_run.stdout, dry_run.stdout


def test_a_python_without_openrlhf_wheels_is_refused_before_anything_is_installed(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path)
    shutil.copy(REPO / "requirements-test.txt", tmp_path)
    fake = tmp_path / "python3.13"  # answers the version check as Python 3.13 would
    fake.write_text(
        "#!/bin/bash\n"
        'case "$2" in *version_info*) exit 1;; *python_version*) echo 3.13.1; exit 0;; esac\n'
        "touch ran-something-else; exit 1\n"
    )
    fake.chmod(0o755)
    done = subprocess.run(
        ["make", "venv", f"PYTHON={fake}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    assert done.returncode != 0
    assert "Python 3.13.1; openrlhf 0.11.2 has wheels for 3.10 to 3.12 only" in done.stdout
    assert not (tmp_path / ".venv").exists() and not (tmp_path / "ran-something-else").exists()
