"""The launcher: the exact command, run folders, resume, and `make train` on a machine without GPUs."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from testkit import REPO, job_command, launch_dry_run, run_launch

from launch import __main__ as cli
from launch import cluster, jobs, runs, runtime, session
from launch.openrlhf_cli import check
from launch.recipe import RecipeError, apply_overrides, load

RECIPE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"


def dry_run(*args, env=None):
    return launch_dry_run(RECIPE, *args, env=env)


def test_dry_run_prints_a_ray_job_submit_that_openrlhf_accepts():
    out = dry_run("--set", "actor.adam.lr=5e-7")
    words = shlex.split(out)
    assert words[:3] == ["ray", "job", "submit"]
    env = json.loads(words[words.index("--runtime-env-json") + 1])
    assert env["working_dir"] == str(REPO) and ".venv" in env["excludes"] and "data" in env["excludes"]
    assert not set(env["env_vars"]) & {"TOKENIZERS_PARALLELISM", "NCCL_DEBUG", "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS"}
    entry = job_command(out)
    assert entry[1:3] == ["-m", "openrlhf.cli.train_ppo_ray"]
    argv = entry[3:]
    args = check(argv)
    assert args.actor.adam.lr == 5e-7
    assert args.data.prompt_dataset == str(REPO / "data/countdown/train.parquet")  # absolute
    assert args.reward.remote_url == ["reward_funcs/openrlhf_reward.py"]  # relative to the working_dir
    assert args.logger.tensorboard_dir.endswith("/tensorboard") and not args.logger.wandb.key


def test_wandb_key_is_never_printed():
    out = dry_run(env={"WANDB_API_KEY": "secret-key-123"})
    assert "secret-key-123" not in out
    words = shlex.split(out)
    env = json.loads(words[words.index("--runtime-env-json") + 1])
    assert env["env_vars"]["WANDB_API_KEY"] == "***"
    argv = job_command(out)[3:]
    assert argv[argv.index("--logger.wandb.key") + 1] == runs.WANDB_PLACEHOLDER


def in_process_dry_run(capsys, *args) -> str:
    """The launcher's dry run in this process: quicker than `launch_dry_run` where its output is all we need."""
    assert cli.main(["train", str(RECIPE), "--dry-run", *args]) == 0
    return capsys.readouterr().out.strip()


def test_reward_sample_printing_reaches_the_job_when_set_in_the_shell(capsys, monkeypatch):
    def env_of(out):
        words = shlex.split(out)
        return json.loads(words[words.index("--runtime-env-json") + 1])["env_vars"]

    monkeypatch.setenv("REWARD_SAMPLE_EVERY", "100")
    assert env_of(in_process_dry_run(capsys))["REWARD_SAMPLE_EVERY"] == "100"
    monkeypatch.delenv("REWARD_SAMPLE_EVERY")
    assert "REWARD_SAMPLE_EVERY" not in env_of(in_process_dry_run(capsys))


def test_resume_submits_the_original_argv_plus_load_enable(tmp_path, monkeypatch):
    """The run folder keeps the resolved recipe; resuming resolves it again: the same command, plus
    --ckpt.load_enable, into the same folders, with no new run folder."""
    submitted = []
    monkeypatch.setattr(cluster, "reachable", lambda address: None)
    monkeypatch.setattr(cluster, "cluster_probe", lambda address, recipe=None, python="python3": {"gpus": 2})
    monkeypatch.setattr(jobs, "submit", lambda address, entry, env, job_id=None: submitted.append(entry) or "job")
    monkeypatch.setattr(jobs, "follow", lambda address, job, out=None: "SUCCEEDED")
    monkeypatch.setattr(session, "ensure_dataset", lambda recipe: None)
    address = ["--address", "http://127.0.0.1:1"]
    assert cli.main(["train", str(RECIPE), "--runs-dir", str(tmp_path), *address]) == 0
    (run,) = (tmp_path / "countdown-qwen2.5-3b-ppo").iterdir()
    assert cli.main(["train", "--resume", str(run), *address]) == 0
    original, resumed = (shlex.split(entry)[3:] for entry in submitted)
    assert resumed == [*original, "--ckpt.load_enable"]
    args = check(resumed)
    assert args.ckpt.load_enable and args.ckpt.path == str(run / "ckpt")  # the same checkpoint folder
    assert runs.load(run).flat() == {**runs.resolve(load(RECIPE), run).flat(), "ckpt.load_enable": True}
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]  # no new run folder
    assert [j["job_id"] for j in json.loads((run / "job.json").read_text())["jobs"]] == ["job", "job"]


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_make_train_stops_at_the_gpu_check_without_installing_anything():
    before = sorted(p.name for p in (REPO / ".venv").glob(".runtime-*")) if (REPO / ".venv").exists() else []
    runtime_before = runtime.default_venv().exists()
    result = subprocess.run(
        ["make", "train", f"RECIPE={RECIPE.relative_to(REPO)}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    assert result.returncode != 0
    assert "FAIL  gpus     needs 2 GPUs, the cluster has 0" in result.stdout
    assert "nothing was submitted" in result.stderr
    assert "installing the GPU runtime" not in result.stdout and "generating" not in result.stdout
    assert sorted(p.name for p in (REPO / ".venv").glob(".runtime-*")) == before
    assert runtime.default_venv().exists() == runtime_before  # no GPU runtime made
    assert subprocess.run([sys.executable, "-c", "import vllm"], capture_output=True).returncode != 0


@pytest.fixture
def data_folder():
    """A folder under the repository's data/ (the only place the launcher generates data), removed afterwards."""
    out = REPO / "data" / f"test-{uuid.uuid4().hex[:8]}" / "generated"
    yield out
    shutil.rmtree(out.parent, ignore_errors=True)


def test_missing_dataset_is_generated_before_submission(data_folder):
    out = data_folder
    recipe = apply_overrides(
        load(RECIPE),
        [
            f"recipe.dataset.out={out.relative_to(REPO)}",
            "recipe.dataset.args=[--train-size, 40, --test-size, 10]",
            f"data.prompt_dataset={out / 'train.parquet'}",
            f"eval.dataset={out / 'test.parquet'}",
        ],
    )
    session.ensure_dataset(recipe)
    assert (out / "train.parquet").is_file() and (out / "test.parquet").is_file()
    session.ensure_dataset(recipe)  # present: nothing to do, nothing overwritten
    with pytest.raises(session.LaunchError, match="no recipe.dataset"):
        session.ensure_dataset(apply_overrides(recipe, ["recipe.dataset=null", "eval.dataset=/nowhere/test.parquet"]))


@pytest.mark.parametrize(
    "change, message",
    [
        ("recipe.dataset.out=/tmp/anywhere", "is outside the repository"),
        ("recipe.dataset.out=../outside", "is outside the repository"),
        ("recipe.dataset.args=[--force]", "holds --force"),
    ],
)
def test_the_launcher_generates_data_only_into_the_repository_and_never_replaces_it(change, message):
    with pytest.raises(RecipeError, match=message):
        apply_overrides(load(RECIPE), [change])


def test_sweep_dry_run_covers_every_variant():
    result = run_launch("sweep", "recipes/ablations/algorithm.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("ray job submit")]
    assert len(commands) == 6
    estimators = [shlex.split(c)[shlex.split(c).index("--algo.advantage.estimator") + 1] for c in commands]
    assert estimators == ["gae", "group_norm", "reinforce", "reinforce_baseline", "rloo", "dr_grpo"]


def test_bad_recipe_path_is_one_line(tmp_path):
    result = run_launch("train", "recipes/nope.yaml", "--dry-run")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no such recipe file" in result.stderr


def test_resume_points_at_the_services_started_now(tmp_path, capsys):
    recipe = apply_overrides(load(RECIPE), ["recipe.reward_service={instances: 1, port: 6200}"])
    run = runs.new_run_dir(tmp_path, recipe.name)
    old = runs.resolve(recipe, run, reward_urls=["http://127.0.0.1:5999/get_reward"])
    runs.save(run, old, "ray job submit ...")
    assert cli.main(["train", "--resume", str(run), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "--reward.remote_url http://127.0.0.1:6200/get_reward" in printed and ":5999" not in printed


def test_the_cluster_interpreter_is_python3_unless_given(capsys):
    def interpreter(*args):
        return job_command(in_process_dry_run(capsys, *args))[:3]

    assert interpreter("--address", "http://head:8265")[0] == "python3"
    chosen = interpreter("--address", "http://head:8265", "--python", "/opt/rl/.venv/bin/python")
    assert chosen == ["/opt/rl/.venv/bin/python", "-m", "openrlhf.cli.train_ppo_ray"]
    assert interpreter()[0] == runtime.python(runtime.default_venv())  # the GPU runtime's, not the tests' .venv


def test_wandb_key_given_as_a_flag_never_reaches_the_command(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = dry_run("--set", "logger.wandb.key=secret-key-456")
    assert "secret-key-456" not in out and f"--logger.wandb.key {runs.WANDB_PLACEHOLDER}" in out


SECRETS = {
    "recipe.env.HF_TOKEN": "hf-tok-111",
    "recipe.env.MY_API_KEY": "key-222",
    "recipe.env.DB_PASSWORD": "pw-333",
    "recipe.env.SOME_SECRET": "sec-444",
    "logger.wandb.key": "wandb-555",
}


def test_secrets_reach_the_job_only(tmp_path, monkeypatch, capsys):
    """Secret variables of recipe.env and logger.wandb.key never appear in what is printed or saved; the job gets
    them through its runtime environment; a resume takes them from the shell again."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    submitted = []
    monkeypatch.setattr(cluster, "reachable", lambda address: None)
    monkeypatch.setattr(cluster, "cluster_probe", lambda address, recipe=None, python="python3": {"gpus": 2})
    monkeypatch.setattr(jobs, "submit", lambda address, entry, env, job_id=None: submitted.append(env) or "job")
    monkeypatch.setattr(jobs, "follow", lambda address, job, out=None: "SUCCEEDED")
    monkeypatch.setattr(session, "ensure_dataset", lambda recipe: None)
    sets = [a for key, value in SECRETS.items() for a in ("--set", f"{key}={value}")]
    common = ["--runs-dir", str(tmp_path), "--address", "http://127.0.0.1:1"]
    assert cli.main(["train", str(RECIPE), "--dry-run", *sets, *common]) == 0
    assert cli.main(["train", str(RECIPE), *sets, "--set", "recipe.env.PLAIN=visible", *common]) == 0
    (run,) = (tmp_path / "countdown-qwen2.5-3b-ppo").iterdir()
    shown = capsys.readouterr()
    saved = "".join(p.read_text() for p in run.iterdir() if p.is_file())
    for value in SECRETS.values():
        assert value not in shown.out + shown.err and value not in saved
    env = submitted[0]["env_vars"]
    assert {env[k] for k in ("HF_TOKEN", "MY_API_KEY", "DB_PASSWORD", "SOME_SECRET", "WANDB_API_KEY")} == {
        *SECRETS.values()
    }
    assert env["PLAIN"] == "visible" and "PLAIN: visible" in (run / "recipe.yaml").read_text()
    assert cli.main(["train", "--resume", str(run), "--address", "http://127.0.0.1:1"]) == 2
    assert "needs the secret DB_PASSWORD, HF_TOKEN, MY_API_KEY, SOME_SECRET" in capsys.readouterr().err
    for name in ("HF_TOKEN", "MY_API_KEY", "DB_PASSWORD", "SOME_SECRET"):
        monkeypatch.setenv(name, "from-shell")
    assert cli.main(["train", "--resume", str(run), "--address", "http://127.0.0.1:1"]) == 2
    assert "export WANDB_API_KEY=" in capsys.readouterr().err  # the W&B key given in the recipe is not saved either
    monkeypatch.setenv("WANDB_API_KEY", "wandb-from-shell")
    assert cli.main(["train", "--resume", str(run), "--address", "http://127.0.0.1:1"]) == 0
    assert submitted[-1]["env_vars"]["HF_TOKEN"] == "from-shell"
    assert submitted[-1]["env_vars"]["WANDB_API_KEY"] == "wandb-from-shell"


def test_a_dry_run_runs_every_check_that_needs_no_gpu(capsys):
    """It fails like train would (here on batch arithmetic), prints nothing to run, and reports the cluster's
    checks as skipped."""
    assert cli.main(["train", str(RECIPE), "--dry-run", "--set", "train.batch_size=48"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert "FAIL  batches" in out.err and "is not a multiple of train.batch_size 48" in out.err
    assert "skip  gpus     needs 2 GPUs; the cluster is not asked in a dry run" in out.err
    assert cli.main(["train", str(RECIPE), "--dry-run"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("ray job submit") and "  ok  flags" in out.err and "  ok  runs" in out.err


@pytest.mark.parametrize("where", ["a file", "/proc"])
def test_an_unwritable_runs_dir_fails_before_any_head_starts(tmp_path, monkeypatch, capsys, where):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    runs_dir = blocker / "runs" if where == "a file" else Path("/proc/runs")
    monkeypatch.setattr(cluster, "cluster_gpus", lambda address, python="python3": (2, None))
    monkeypatch.setattr(cluster, "LocalHead", lambda *a, **k: pytest.fail("a Ray head was started"))
    monkeypatch.setattr(session, "ensure_dataset", lambda recipe: pytest.fail("data was generated"))
    assert cli.main(["train", str(RECIPE), "--runs-dir", str(runs_dir)]) == 1
    assert "FAIL  runs     cannot write" in capsys.readouterr().out
    assert cli.main(["train", str(RECIPE), "--runs-dir", str(runs_dir), "--dry-run"]) == 1
    assert "FAIL  runs     cannot write" in capsys.readouterr().err


def test_a_node_that_cannot_see_the_data_stops_train_before_submission(tmp_path, monkeypatch, capsys):
    """On a cluster the probe's per-node findings are preflight lines: one node missing the data is a FAIL."""
    node = {"node_id": "b", "name": "10.0.0.2", "ip": "10.0.0.2", "gpus": 0, "python": "python3", "imports": {}}
    node.update(visible={str(REPO / "data/countdown/train.parquet"): False}, writable=None, gpu_memory_gb=None)
    monkeypatch.setattr(cluster, "reachable", lambda address: None)
    monkeypatch.setattr(
        cluster, "cluster_probe", lambda address, recipe=None, python="python3": {"gpus": 2, "nodes": [node]}
    )
    monkeypatch.setattr(jobs, "submit", lambda *a, **k: pytest.fail("a job was submitted"))
    made = []
    monkeypatch.setattr(session, "ensure_dataset", made.append)  # made before the probe, so that it is checked
    args = ["train", str(RECIPE), "--runs-dir", str(tmp_path), "--address", "http://127.0.0.1:1"]
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert "FAIL  nodes    node 10.0.0.2 cannot see" in out and "data/countdown/train.parquet" in out
    assert len(made) == 1 and not list(tmp_path.iterdir())  # no run folder


def test_a_cpu_only_torch_in_the_jobs_interpreter_fails_before_any_head_starts(tmp_path, monkeypatch, capsys):
    """The tests' own interpreter has torch's CPU build: as the job's interpreter it is a preflight failure with the
    fix, not a crash inside Ray's actors."""
    monkeypatch.setattr(cluster, "cluster_gpus", lambda address, python="python3": (2, None))
    monkeypatch.setattr(cluster, "LocalHead", lambda *a, **k: pytest.fail("a Ray head was started"))
    monkeypatch.setattr(session, "ensure_dataset", lambda recipe: None)
    args = ["train", str(RECIPE), "--runs-dir", str(tmp_path), "--no-install", "--python", sys.executable]
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert f"FAIL  runtime  the job's interpreter {sys.executable} has torch" in out and "CPU-only build" in out
    assert not list(tmp_path.iterdir())  # no run folder
