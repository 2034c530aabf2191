"""Regressions found in review: each test fails on the code before its fix."""

import json
import shlex
import time

import pytest
from testkit import REPO, launch_dry_run

from launch import jobs, preflight
from launch.openrlhf_cli import check
from launch.recipe import apply_overrides, load
from reward_funcs import LabelError, multiply

BASE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"


def dry_run(*sets):
    return launch_dry_run(BASE, *[a for s in sets for a in ("--set", s)])


def test_entrypoint_is_shell_quoted():
    out = dry_run("data.input_template='Question: {}; Answer:'")
    words = shlex.split(out)
    argv = words[words.index("--") + 4 :]  # after: python -m openrlhf.cli.train_ppo_ray
    assert argv[argv.index("--data.input_template") + 1] == "Question: {}; Answer:"
    # what the launcher hands Ray's job SDK, which runs it through a shell, splits back into the same argv
    assert shlex.split(jobs.entrypoint("python3", argv))[3:] == argv
    check(argv)


def test_wandb_key_given_as_a_flag_never_reaches_the_command(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = dry_run("logger.wandb.key=secret-key-456")
    assert "secret-key-456" not in out and f"--logger.wandb.key {jobs.WANDB_PLACEHOLDER}" in out


def test_async_colocation_gives_the_engines_their_own_gpus():
    recipe = apply_overrides(load(BASE), ["train.async_enable=true", "vllm.enable_sleep=false"])
    assert preflight.gpus_needed(check(preflight.to_argv(recipe.flags))) == 4
    assert preflight.gpus_needed(check(preflight.to_argv(load(BASE).flags))) == 2


def test_cuda_visible_devices_limits_the_local_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert preflight.local_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert preflight.local_gpus() == 0


def test_no_reference_model_no_reference_gpus():
    recipe = apply_overrides(load(BASE), ["algo.kl.init_coef=0", "ref=null"])
    checks = preflight.check_gpus(recipe, check(preflight.to_argv(recipe.flags)), 2)
    assert [c.status for c in checks] == ["ok"], [c.line() for c in checks]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from data_tools import countdown

    out = tmp_path_factory.mktemp("data") / "countdown"
    countdown.main(["--out", str(out), "--train-size", "20", "--test-size", "5"])
    return out


def test_unset_label_key_is_a_failure_not_a_crash(data):
    recipe = apply_overrides(
        load(BASE),
        [
            "data.label_key=null",
            f"data.prompt_dataset={data / 'train.parquet'}",
            f"eval.dataset={data / 'test.parquet'}",
        ],
    )
    checks = preflight.run(recipe, REPO, 2)
    assert any(c.status == "FAIL" and "data.label_key is not set" in c.message for c in checks)


def test_http_probe_skips_rows_without_a_reference(data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(data / "test.parquet").to_pylist()
    label = json.loads(rows[0]["label"])
    label["solution"] = None
    rows[0]["label"] = json.dumps(label)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    recipe = apply_overrides(
        load(BASE), ["reward.remote_url=http://127.0.0.1:9/get_reward", f"eval.dataset={tmp_path / 'test.parquet'}"]
    )
    checks = preflight.check_http_reward(check(preflight.to_argv(recipe.flags)), REPO)
    assert [c.status for c in checks] == ["FAIL"] and "did not answer" in checks[0].message


def test_absurd_multiplication_labels_are_refused_quickly():
    for numbers in ([10**18] * 300, [2**63 - 1] * 200_000, [2**2000, 3]):
        start = time.perf_counter()
        with pytest.raises(LabelError):
            multiply.check_label({"task": "multiply", "numbers": numbers, "product": 1})
        assert time.perf_counter() - start < 0.5


def test_evaluate_refuses_an_existing_out_before_loading_anything(tmp_path, monkeypatch):
    from analysis import evaluate

    (tmp_path / "eval").mkdir()
    monkeypatch.setattr(evaluate, "make_backend", lambda *a: pytest.fail("a model was loaded"))
    assert evaluate.main(["--model", "x", "--data", "y.parquet", "--out", str(tmp_path / "eval")]) == 2
