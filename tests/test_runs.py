"""launch.runs: run folders, the resolved recipe they keep, and resolving a recipe for a run."""

import datetime
import json
import os
import subprocess

import pytest
from testkit import REPO

from launch import jobs, runs
from launch.recipe import RecipeError, apply_overrides, load
from reward_funcs import tokens
from reward_funcs.cli import UsageError

RECIPE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"


def test_runs_never_overwrite_each_other(tmp_path):
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    first = runs.new_run_dir(tmp_path, "r", now)
    second = runs.new_run_dir(tmp_path, "r", now)
    assert first != second and first.name == "20260102-030405" and second.name == "20260102-030405-2"


def test_resolve_sets_the_runs_own_folders_and_absolute_data(tmp_path):
    run = tmp_path / "run"
    recipe = apply_overrides(load(RECIPE), ["eval.dataset=data/a/test.parquet, /abs/b/test.parquet"])
    resolved = runs.resolve(recipe, run)
    args = resolved.args()
    assert args.data.prompt_dataset == str(REPO / "data/countdown/train.parquet")
    assert args.eval.dataset == f"{REPO / 'data/a/test.parquet'},/abs/b/test.parquet"  # every file of the list
    assert (args.ckpt.path, args.ckpt.output_dir) == (str(run / "ckpt"), str(run / "final"))
    assert args.logger.tensorboard_dir == str(run / "tensorboard") and not args.ckpt.load_enable
    assert resolved.meta["run_dir"] == str(run) and recipe.get("ckpt.path") != str(run / "ckpt")  # a copy
    assert runs.resolve(resolved, run).argv() == resolved.argv()  # resolving again changes nothing


def test_resolve_for_a_resume_adds_load_enable_last_and_todays_services(tmp_path):
    run = tmp_path / "run"
    resolved = runs.resolve(load(RECIPE), run, reward_urls=["http://127.0.0.1:5999/get_reward"])
    resumed = runs.resolve(resolved, run, reward_urls=["http://127.0.0.1:6200/get_reward"], resume=True)
    before, after = resolved.argv(), resumed.argv()
    at = before.index("--reward.remote_url") + 1
    assert before[at] == "http://127.0.0.1:5999/get_reward" and after[at] == "http://127.0.0.1:6200/get_reward"
    assert after == [*before[:at], after[at], *before[at + 1 :], "--ckpt.load_enable"]


def test_a_wandb_key_in_the_recipe_goes_to_the_environment_only(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    resolved = runs.resolve(apply_overrides(load(RECIPE), ["logger.wandb.key=secret-789"]), tmp_path / "r")
    assert resolved.secrets == {"WANDB_API_KEY": "secret-789"}
    assert resolved.get("logger.wandb.key") == runs.WANDB_PLACEHOLDER
    assert resolved.get("logger.wandb.run_name") == "countdown-qwen2.5-3b-ppo-r"
    runs.save(tmp_path, resolved, "ray job submit ...")
    assert "secret-789" not in (tmp_path / "recipe.yaml").read_text()
    assert runs.load(tmp_path).secrets == {}


def test_a_run_folder_keeps_the_resolved_recipe_and_every_job(tmp_path):
    run = runs.new_run_dir(tmp_path, "r")
    resolved = runs.resolve(load(RECIPE), run)
    runs.save(run, resolved, "ray job submit -- python -m openrlhf.cli.train_ppo_ray")
    runs.add_job(run, {"job_id": "a"})
    runs.add_job(run, {"job_id": "b"})
    loaded = runs.load(run)
    assert loaded.flags == resolved.flags and loaded.name == resolved.name and loaded.argv() == resolved.argv()
    assert [j["job_id"] for j in json.loads((run / "job.json").read_text())["jobs"]] == ["a", "b"]
    assert (run / "command.sh").read_text().startswith("ray job submit")
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize("content", [None, "", "actor: {}\n", "recipe: {name: x}\n", "- a list\n"])
def test_loading_a_folder_that_is_not_a_run_is_refused(tmp_path, content):
    if content is not None:
        (tmp_path / "recipe.yaml").write_text(content)
    with pytest.raises(RecipeError, match="is not a run folder"):
        runs.load(tmp_path)


TOKEN = "tok-abcdefghijklmnop0123"


def test_a_reward_token_in_the_url_goes_to_the_environment_only(tmp_path, monkeypatch):
    """A token written in reward.remote_url leaves the recipe for the job's environment; the saved recipe, the
    command and the job's argv carry ${REWARD_TOKEN}, which the job's shell expands to the token."""
    monkeypatch.delenv("REWARD_TOKEN", raising=False)
    url = f"http://10.0.0.5:5000/get_reward?token={TOKEN}"
    resolved = runs.resolve(apply_overrides(load(RECIPE), [f"reward.remote_url={url}"]), tmp_path / "r")
    assert resolved.secrets == {"REWARD_TOKEN": TOKEN}
    assert resolved.get("reward.remote_url") == "http://10.0.0.5:5000/get_reward?token=${REWARD_TOKEN}"
    entry = jobs.entrypoint("python3", resolved.argv())
    command = jobs.submit_command("http://127.0.0.1:8265", jobs.runtime_env(resolved), "python3", resolved.argv())
    runs.save(tmp_path, resolved, command)
    for text in (entry, command, (tmp_path / "recipe.yaml").read_text(), (tmp_path / "command.sh").read_text()):
        assert TOKEN not in text
    assert jobs.runtime_env(resolved)["env_vars"]["REWARD_TOKEN"] == TOKEN
    script = 'show() { for a in "$@"; do printf "%s\\0" "$a"; done; }; show ' + entry
    argv = subprocess.run(
        ["/bin/sh", "-c", script], env={**os.environ, "REWARD_TOKEN": TOKEN}, capture_output=True, text=True
    ).stdout.split("\0")
    assert argv[argv.index("--reward.remote_url") + 1] == url  # what OpenRLHF gets in the job


def test_a_reward_url_with_the_placeholder_takes_the_token_from_this_shell(tmp_path, monkeypatch):
    recipe = apply_overrides(load(RECIPE), ["reward.remote_url=http://10.0.0.5:5000/get_reward?token=${REWARD_TOKEN}"])
    monkeypatch.delenv("REWARD_TOKEN", raising=False)
    with pytest.raises(RecipeError, match="export REWARD_TOKEN"):
        runs.resolve(recipe, tmp_path / "r")
    monkeypatch.setenv("REWARD_TOKEN", "has space and is short")
    with pytest.raises(UsageError, match="16 or more"):
        runs.resolve(recipe, tmp_path / "r")
    monkeypatch.setenv("REWARD_TOKEN", TOKEN)
    assert runs.resolve(recipe, tmp_path / "r").secrets == {"REWARD_TOKEN": TOKEN}
    two = f"http://a:1/get_reward?token={TOKEN},http://b:1/get_reward?token={TOKEN}x"
    with pytest.raises(RecipeError, match="different tokens"):
        runs.resolve(apply_overrides(load(RECIPE), [f"reward.remote_url={two}"]), tmp_path / "r")


def test_the_job_log_shows_no_token():
    line = f"Namespace(remote_url='http://h:5000/get_reward?token={TOKEN}', x='?token=${{REWARD_TOKEN}}')\n"
    assert tokens.mask_token(line) == (
        "Namespace(remote_url='http://h:5000/get_reward?token=***', x='?token=${REWARD_TOKEN}')\n"
    )


def test_every_run_journals_into_its_own_folder(tmp_path, monkeypatch):
    """The job's environment gives the reward the run's journal/ folder, the eval files (absolute, as resolved) and
    their label column; REWARD_JOURNAL_SAMPLE comes from this shell; recipe.env can turn the journal off."""
    (tmp_path / "test.parquet").write_text("")
    evals = f"eval.dataset={tmp_path / 'test.parquet'},data/a/test.parquet"  # the second made before the job
    recipe = apply_overrides(load(RECIPE), [evals, "data.label_key=answer"])
    resolved = runs.resolve(recipe, tmp_path / "run")
    monkeypatch.setenv("REWARD_JOURNAL_SAMPLE", "0.5")
    env = jobs.runtime_env(resolved)["env_vars"]
    assert env["REWARD_JOURNAL_DIR"] == str(tmp_path / "run" / "journal")
    assert env["REWARD_JOURNAL_EVAL"] == f"{tmp_path / 'test.parquet'},{REPO / 'data/a/test.parquet'}"
    assert (env["REWARD_JOURNAL_LABEL_KEY"], env["REWARD_JOURNAL_SAMPLE"]) == ("answer", "0.5")
    # a resumed run resolves its saved recipe into the same folder again: the same journal, new files beside the old
    assert jobs.runtime_env(runs.resolve(runs.load(_saved(tmp_path, resolved)), tmp_path / "run"))["env_vars"][
        "REWARD_JOURNAL_DIR"
    ] == str(tmp_path / "run" / "journal")
    off = runs.resolve(apply_overrides(recipe, ["recipe.env.REWARD_JOURNAL_DIR=''"]), tmp_path / "run2")
    assert jobs.runtime_env(off)["env_vars"]["REWARD_JOURNAL_DIR"] == ""
    assert not any(k.startswith("REWARD_JOURNAL_D") for k in jobs.runtime_env(recipe)["env_vars"])  # not a run


def _saved(tmp_path, resolved):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    runs.save(run, resolved, "command")
    return run
