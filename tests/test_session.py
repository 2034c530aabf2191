"""launch.session: the GPU runtime prepared for a head started here, and what a followed job printed."""

import sys
from pathlib import Path

import pytest
from test_runtime import CUDA_TORCH, stand_in_venv
from testkit import REPO

from launch import install as installer
from launch import runtime, session
from launch.recipe import load

RECIPE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"
NO_FLASH_ATTN = {"torch": CUDA_TORCH, "vllm": "0.29.0", "openrlhf": "0.11.2"}


def test_a_given_interpreter_is_used_as_it_is_and_gets_sdpa_without_flash_attn(tmp_path, monkeypatch, capsys):
    """--python on a local node: nothing installed into .venv-gpu; the facts are that interpreter's; without
    flash-attn the run is switched to sdpa, and the switch reaches the submitted command line."""
    monkeypatch.setattr(installer, "install", lambda *a, **k: pytest.fail("the runtime was installed"))
    venv = stand_in_venv(tmp_path / "mine", state=NO_FLASH_ATTN)
    (venv / "bin" / "ray").write_text("#!/bin/sh\n")
    recipe = load(RECIPE)
    prepared = session.prepare_runtime(recipe, None, runtime.python(venv), install=True)
    assert prepared is not None, capsys.readouterr().out
    assert prepared.args().ds.attn_implementation == "sdpa"
    argv = prepared.argv()
    assert argv[argv.index("--ds.attn_implementation") + 1] == "sdpa"
    assert "warn  attn" in capsys.readouterr().out


def test_a_given_interpreter_without_ray_beside_it_is_refused(tmp_path, capsys):
    venv = stand_in_venv(tmp_path / "mine", state={**NO_FLASH_ATTN, "flash_attn": "2.8.3"})
    assert session.prepare_runtime(load(RECIPE), None, runtime.python(venv), install=False) is None
    assert f"FAIL  runtime  no ray beside {runtime.python(venv)}" in capsys.readouterr().out


def test_on_a_cluster_nothing_is_prepared_here(monkeypatch):
    monkeypatch.setattr(installer, "install", lambda *a, **k: pytest.fail("the runtime was installed"))
    recipe = load(RECIPE)
    assert session.prepare_runtime(recipe, "http://head:8265", "python3", install=True) is recipe


def test_the_head_runs_from_the_jobs_environment(tmp_path):
    assert session.ray_beside(sys.executable) == Path(sys.executable).with_name("ray")
    assert session.ray_beside(str(tmp_path / "env" / "bin" / "python")) == tmp_path / "env" / "bin" / "ray"


def test_a_tail_names_the_last_error_and_sees_phrases_split_across_chunks(capsys):
    tail = session.Tail(keep=3, watch=("checkpoint_states",))
    for chunk in ["loading...\ncheckpoint_", "states: {'global_step': 2}\n", "Traceback (most recent call last):\n"]:
        tail.write(chunk)
    tail.write("RuntimeError: CUDA error: out of memory\nbye\n")
    assert tail.saw("checkpoint_states") and not tail.saw("something else")
    assert tail.last_error() == "RuntimeError: CUDA error: out of memory"
    assert len(tail.lines) == 3  # bounded
    assert "checkpoint_states" in capsys.readouterr().out  # written through
