"""Dataset folders under abuse: --force swaps them atomically under a reader, killed runs lose nothing and leave
nothing behind, and the documented commands (`make data`, `python -m data_tools.X --out data/X`) work on a fresh
clone and when run again."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from testkit import REPO

from data_tools import countdown, output
from data_tools.output import sha256

TINY = ["--train-size", "20", "--test-size", "5", "--workers", "1"]


def make(out, *args):
    return countdown.main(["--out", str(out), *TINY, *args])


def complete(out):
    """The seed of the dataset in `out`, after checking every file against its manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    for name, info in manifest["files"].items():
        assert sha256(out / name) == info["sha256"], name
    return manifest["seed"]


# A separate process, so that it reads while the writer's renames run (a thread would wait for the GIL).
READER = r"""
import hashlib, json, sys
from pathlib import Path
out, stop = Path(sys.argv[1]), Path(sys.argv[2])
polls = missing = broken = 0
seen = set()
print("ready", flush=True)
while polls % 64 or not stop.exists():
    polls += 1
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        seen.update(hashlib.sha256((out / name).read_bytes()).hexdigest() for name in manifest["files"])
    except FileNotFoundError:
        missing += 1
    except (ValueError, KeyError):
        broken += 1
print(json.dumps({"polls": polls, "missing": missing, "broken": broken, "seen": sorted(seen)}))
"""


def test_a_reader_always_finds_a_complete_folder_while_force_replaces_it(tmp_path):
    if not sys.platform.startswith(("linux", "darwin")):
        pytest.skip("only Linux and macOS can exchange two folders atomically")
    out, stop = tmp_path / "out", tmp_path / "stop"
    assert make(out) == 0
    written = {info["sha256"] for info in json.loads((out / "manifest.json").read_text())["files"].values()}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(out), str(stop)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert reader.stdout.readline() == "ready\n"
        for seed in range(1, 41):
            assert make(out, "--seed", str(seed), "--force") == 0
            manifest = json.loads((out / "manifest.json").read_text())
            written |= {info["sha256"] for info in manifest["files"].values()}
    finally:
        stop.touch()
        found = json.loads(reader.communicate(timeout=60)[0])
    assert found["polls"] > 40  # it did read while the folder was replaced
    assert (found["missing"], found["broken"]) == (0, 0), found
    assert set(found["seen"]) <= written  # every file read was one a run wrote, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "stop"]


# Runs `--force` in a process that SIGKILLs itself at its `at`-th rename, exchange or removal of a folder.
KILLED = r"""
import os, shutil, signal, sys
from data_tools import countdown, output
out, at, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
calls = 0
def fatal(step):
    def wrapped(*args, **kwargs):
        global calls
        calls += 1
        if calls == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(*args, **kwargs)
    return wrapped
os.rename, os.replace, shutil.rmtree = fatal(os.rename), fatal(os.replace), fatal(shutil.rmtree)
if hasattr(output, "_rename2"):
    output._rename2 = fatal(output._rename2) if mode == "exchange" else (lambda *args: False)
tiny = ["--train-size", "20", "--test-size", "5", "--workers", "1"]
sys.exit(countdown.main(["--out", out, *tiny, "--seed", "7", "--force"]))
"""


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
@pytest.mark.parametrize("at", [1, 2, 3, 4, 5])
def test_a_run_killed_at_any_step_loses_nothing_and_the_next_run_tidies_up(tmp_path, mode, at):
    out = tmp_path / "out"
    assert make(out) == 0
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(out), str(at), mode], cwd=REPO, capture_output=True, timeout=120
    )
    assert killed.returncode in (0, -signal.SIGKILL), killed.stderr
    if at <= 2:
        assert killed.returncode == -signal.SIGKILL  # every way of replacing takes at least two steps
    if mode == "exchange":
        assert complete(out) in (0, 7)  # at every moment, the old folder or the new one
    assert make(out, "--seed", "9") == 2  # the next run, refused (it would change the data) ...
    assert complete(out) in (0, 7)  # ... finds the old folder or the new one, whole ...
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # ... and has removed what the killed run left


def test_only_stale_folders_of_runs_that_are_gone_are_removed(tmp_path):
    out = tmp_path / "out"
    assert make(out) == 0
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(finished.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        left = {
            f".out.tmp-{gone}": False,  # as today's writer named them: a run that is gone
            f".out.old-{gone}": False,
            f".out.tmp-{alive.pid}": True,  # a run still writing
            f".out.tmp-{gone}@another-host": True,  # another machine's, on a shared disk: its pid means nothing here
            ".out.tmp-notes": True,  # not ours at all
        }
        for name in left:
            (tmp_path / name).mkdir()
            (tmp_path / name / "train.parquet").write_text("partial")
        assert make(out, "--seed", "3", "--force") == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", *(n for n, kept in left.items() if kept)])
    finally:
        alive.kill()
        alive.wait()


def test_force_on_a_linked_out_replaces_the_folder_it_points_to_and_keeps_the_link(tmp_path):
    (tmp_path / "disk").mkdir()
    assert make(tmp_path / "disk" / "countdown") == 0
    link = tmp_path / "countdown"
    link.symlink_to(tmp_path / "disk" / "countdown")
    assert make(link, "--seed", "4", "--force") == 0
    assert link.is_symlink() and complete(tmp_path / "disk" / "countdown") == 4
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["countdown"]


def test_the_fallback_for_filesystems_that_cannot_exchange_still_replaces(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "_rename2", lambda *args: False)
    out = tmp_path / "out"
    assert make(out) == 0
    assert make(out, "--seed", "5", "--force") == 0
    assert complete(out) == 5 and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_analysis_outputs_keep_their_behaviour(tmp_path):
    out = tmp_path / "runs" / "r" / "eval"
    with output.atomic_folder(out, force=False, parents=True) as tmp:
        (tmp / "results.json").write_text("{}")
    with pytest.raises(output.cli.UsageError, match="already exists"):
        with output.atomic_folder(out, force=False, parents=True):
            pass
    with pytest.raises(RuntimeError), output.atomic_folder(out, force=True) as tmp:
        (tmp / "results.json").write_text('{"new": 1}')
        raise RuntimeError("the model crashed")
    assert (out / "results.json").read_text() == "{}"
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval"]


# ---- an existing --out, a fresh clone, make data --------------------------------------------------------------


def test_the_same_command_again_is_up_to_date_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert make(out) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert make(out) == 0
    assert "is up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_an_existing_out_that_differs_is_refused_naming_how(tmp_path, capsys):
    out = tmp_path / "out"
    assert make(out) == 0
    capsys.readouterr()
    assert make(out, "--seed", "3") == 2
    assert "made with --seed 0 (this run: 3)" in capsys.readouterr().err
    (out / "train.parquet").write_bytes(b"damaged")
    assert make(out) == 2
    assert "train.parquet does not match its manifest.json" in capsys.readouterr().err


def test_skip_existing_keeps_another_dataset_and_says_so(tmp_path, capsys):
    out = tmp_path / "out"
    assert make(out) == 0
    before = (out / "train.parquet").read_bytes()
    capsys.readouterr()
    assert make(out, "--seed", "3", "--skip-existing") == 0
    assert "skipped" in capsys.readouterr().out and (out / "train.parquet").read_bytes() == before
    assert make(out, "--seed", "3", "--skip-existing", "--force") == 2
    assert "pass one of them" in capsys.readouterr().err
    shutil.rmtree(out)
    (out / "notes").mkdir(parents=True)  # not a dataset: skipping it would hide the problem
    assert make(out, "--skip-existing") == 2
    assert "holds no manifest.json" in capsys.readouterr().err


def fresh_clone(tmp_path):
    """The repository as a fresh clone has it: no data/ (git-ignored), only what the data tools need."""
    root = tmp_path / "clone"
    for name in ("data_tools", "reward_funcs"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "requirements-test.txt"):
        shutil.copy(REPO / name, root / name)
    return root


def python(cwd, *args, root=None):
    """`python -m ARGS` in `cwd`, importing the clone at `root` (by default, `cwd` itself)."""
    env = {**os.environ, "PYTHONPATH": str(root or cwd)}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_readme_commands_work_on_a_fresh_clone_and_again(tmp_path):
    root = fresh_clone(tmp_path)
    small = {"countdown": ["--train-size", "20", "--test-size", "5"], "multiply": ["--draws", "500"]}
    small["multiply"] += ["--train-size", "40", "--test-size", "10"]
    for tool, sizes in small.items():
        first = python(root, f"data_tools.{tool}", "--out", f"data/{tool}", *sizes)
        assert first.returncode == 0, first.stderr
        again = python(root, f"data_tools.{tool}", "--out", f"data/{tool}", *sizes)
        assert again.returncode == 0 and "is up to date" in again.stdout, again.stderr
    assert sorted(p.name for p in (root / "data").iterdir()) == ["countdown", "multiply"]
    # Any other missing parent is still refused: only the repository's own data/ is made.
    elsewhere = python(tmp_path, "data_tools.countdown", "--out", "data/countdown", *small["countdown"], root=root)
    assert elsewhere.returncode == 2 and "the parent folder of data/countdown does not exist" in elsewhere.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_data_skips_what_exists_says_so_and_makes_the_rest(tmp_path):
    root = fresh_clone(tmp_path)
    (root / ".venv").mkdir()
    (root / ".venv" / ".installed-test").touch()  # the test environment stands in for make's own venv
    made = python(root, "data_tools.countdown", "--out", "data/countdown", "--train-size", "20", "--test-size", "5")
    assert made.returncode == 0, made.stderr
    make_data = ["make", "-s", "-C", str(root), "data", f"PY={sys.executable}", "INSTALL_HASH=test"]
    first = subprocess.run(make_data, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "data/countdown exists (made with --test-size 5 (this run: 1024)" in first.stdout
    assert complete(root / "data" / "multiply") == 1  # TinyZero's multiplication, made after the skip
    before = {p: p.read_bytes() for p in (root / "data").glob("*/*")}
    again = subprocess.run(make_data, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "data/multiply is up to date" in again.stdout and "data/countdown exists" in again.stdout
    assert {p: p.read_bytes() for p in (root / "data").glob("*/*")} == before
