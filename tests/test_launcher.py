"""The launcher: the exact command, run folders, resume, and `make train` on a machine without GPUs."""

import datetime
import http.server
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from testkit import REPO, launch_dry_run, run_launch

from launch import __main__ as cli
from launch import jobs
from launch.jobs import free_port
from launch.openrlhf_cli import check
from launch.recipe import load

RECIPE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"


def dry_run(*args, env=None):
    return launch_dry_run(RECIPE, *args, env=env)


def test_dry_run_prints_a_ray_job_submit_that_openrlhf_accepts():
    words = shlex.split(dry_run("--set", "actor.adam.lr=5e-7"))
    assert words[:3] == ["ray", "job", "submit"]
    env = json.loads(words[words.index("--runtime-env-json") + 1])
    assert env["working_dir"] == str(REPO) and ".venv" in env["excludes"] and "data" in env["excludes"]
    assert not set(env["env_vars"]) & {"TOKENIZERS_PARALLELISM", "NCCL_DEBUG", "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS"}
    entry = words[words.index("--") + 1 :]
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
    argv = words[words.index("--") + 4 :]
    assert argv[argv.index("--logger.wandb.key") + 1] == jobs.WANDB_PLACEHOLDER


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


def test_runs_never_overwrite_each_other(tmp_path):
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    first = jobs.new_run_dir(tmp_path, "r", now)
    second = jobs.new_run_dir(tmp_path, "r", now)
    assert first != second and first.name == "20260102-030405" and second.name == "20260102-030405-2"


def test_resume_repeats_the_run_with_load_enable(tmp_path, monkeypatch):
    recipe = load(RECIPE)
    run = jobs.new_run_dir(tmp_path, recipe.name)
    argv = jobs.training_argv(recipe, run, REPO)
    jobs.save_run(run, recipe, argv, "ray job submit ...", {"job_id": "raysubmit_1"})
    resumed_recipe, resumed = cli._resume(run)
    assert resumed == [*argv, "--ckpt.load_enable"]
    args = check(resumed)
    assert args.ckpt.load_enable and args.ckpt.path == str(run / "ckpt")  # the same checkpoint folder
    assert resumed_recipe.flat() == recipe.flat()
    submitted = []
    monkeypatch.setattr(cli, "cluster_gpus", lambda address, python="python3": (2, 80.0))
    monkeypatch.setattr(jobs, "submit", lambda address, entry, env, job_id=None: submitted.append(entry) or "job")
    monkeypatch.setattr(jobs, "follow", lambda address, job: "SUCCEEDED")
    monkeypatch.setattr(cli, "ensure_dataset", lambda recipe: None)
    monkeypatch.setattr(cli.preflight, "run", lambda *a, **k: [])
    monkeypatch.setattr(cli.preflight, "check_data", lambda *a, **k: [])
    assert cli.main(["train", "--resume", str(run), "--address", "http://127.0.0.1:1"]) == 0
    assert submitted[0].split()[3:] == resumed
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]  # no new run folder


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_make_train_stops_at_the_gpu_check_without_installing_anything():
    before = sorted(p.name for p in (REPO / ".venv").glob(".runtime-*")) if (REPO / ".venv").exists() else []
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
    assert subprocess.run([sys.executable, "-c", "import vllm"], capture_output=True).returncode != 0


def test_missing_dataset_is_generated_before_submission(tmp_path):
    out = tmp_path / "generated"
    recipe = cli.apply_overrides(
        load(RECIPE),
        [
            f"recipe.dataset.out={out}",
            "recipe.dataset.args=[--train-size, 40, --test-size, 10]",
            f"data.prompt_dataset={out / 'train.parquet'}",
            f"eval.dataset={out / 'test.parquet'}",
        ],
    )
    cli.ensure_dataset(recipe)
    assert (out / "train.parquet").is_file() and (out / "test.parquet").is_file()
    cli.ensure_dataset(recipe)  # present: nothing to do, nothing overwritten
    with pytest.raises(cli.LaunchError, match="no recipe.dataset"):
        cli.ensure_dataset(cli.apply_overrides(recipe, ["recipe.dataset=null", "eval.dataset=/nowhere/test.parquet"]))


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


def test_resume_points_at_the_services_started_now(tmp_path, monkeypatch):
    recipe = cli.apply_overrides(load(RECIPE), ["recipe.reward_service={instances: 1, port: 6200}"])
    run = jobs.new_run_dir(tmp_path, recipe.name)
    old = cli.apply_overrides(recipe, ["reward.remote_url=http://127.0.0.1:5999/get_reward"])
    jobs.save_run(run, recipe, jobs.training_argv(old, run, REPO), "ray job submit ...", {"job_id": "j"})
    resumed_recipe, argv = cli._resume(run)
    printed = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    args = cli.build_parser().parse_args(["train", "--resume", str(run), "--dry-run"])
    assert cli.launch(resumed_recipe, args, argv, run) == 0
    assert "--reward.remote_url http://127.0.0.1:6200/get_reward" in printed[0] and ":5999" not in printed[0]


def test_port_choice_does_not_follow_the_global_random_seed(monkeypatch):
    """Two processes that seed `random` alike (tests do) must not try the same ports in the same order."""
    state = jobs._random.getstate()
    picks = []
    for seed in (0, 1):
        monkeypatch.setattr(jobs, "_handed_out", set())
        jobs._random.setstate(state)
        random.seed(seed)
        picks.append([free_port() for _ in range(5)])
    assert picks[0] == picks[1]  # the private generator alone decides


def test_ports_are_distinct_free_and_outside_the_ephemeral_range():
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low - 1024 >= 1000:  # room below the ephemeral range: the kernel never gives these to outgoing connections
        assert all(p < low for p in ports) and jobs.port_range()[1] == low
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))


def test_submit_waits_for_a_job_agent_that_is_not_up_yet():
    """A head that has just started answers 503 "No available agent" for a few seconds: submit retries that,
    and only that."""
    answers = [(503, b"No available agent to submit job, please try again later.")] * 2
    answers.append((200, json.dumps({"submission_id": "job-1", "job_id": None}).encode()))
    posts = []

    class Dashboard(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # the client's version check
            self.reply(200, json.dumps({"ray_version": "2.55.0", "version": "4", "ray_commit": "x"}).encode())

        def do_POST(self):
            posts.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.reply(*answers[min(len(posts), len(answers)) - 1])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Dashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert jobs.submit(address, "echo hi", {}, "job-1") == "job-1"
        assert len(posts) == 3
        answers[:] = [(500, b"something else went wrong")]
        with pytest.raises(RuntimeError, match="something else went wrong"):
            jobs.submit(address, "echo hi", {}, "job-2")
    finally:
        server.shutdown()


def test_the_cluster_interpreter_is_python3_unless_given(capsys):
    def interpreter(*args):
        return shlex.split(in_process_dry_run(capsys, *args).split(" -- ", 1)[1])[:3]

    assert interpreter("--address", "http://head:8265")[0] == "python3"
    chosen = interpreter("--address", "http://head:8265", "--python", "/opt/rl/.venv/bin/python")
    assert chosen == ["/opt/rl/.venv/bin/python", "-m", "openrlhf.cli.train_ppo_ray"]
    assert interpreter()[0] == sys.executable
