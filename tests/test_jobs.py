"""launch.jobs: the job's command and runtime environment, and submission through Ray's job SDK."""

import http.server
import json
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit import REPO, job_command, launch_dry_run

from launch import jobs
from launch.cluster import free_port
from launch.openrlhf_cli import check
from reward_funcs.cli import UsageError

BASE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"


class FakeDashboard:
    """A Ray dashboard's job API on loopback: answers the client's version check, records each job submission's
    JSON body and answers it with `answers` in turn (the last one repeated)."""

    def __init__(self, answers):
        self.answers, self.posts = answers, []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
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
                fake.posts.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.reply(*fake.answers[min(len(fake.posts), len(fake.answers)) - 1])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


def test_submit_waits_for_a_job_agent_that_is_not_up_yet():
    """A head that has just started answers 503 "No available agent" for a few seconds: submit retries that,
    and only that."""
    answers = [(503, b"No available agent to submit job, please try again later.")] * 2
    answers.append((200, json.dumps({"submission_id": "job-1", "job_id": None}).encode()))
    with FakeDashboard(answers) as dashboard:
        assert jobs.submit(dashboard.address, "echo hi", {}, "job-1") == "job-1"
        assert len(dashboard.posts) == 3
        answers[:] = [(500, b"something else went wrong")]
        with pytest.raises(RuntimeError, match="something else went wrong"):
            jobs.submit(dashboard.address, "echo hi", {}, "job-2")


def dry_run(*sets):
    return launch_dry_run(BASE, *[a for s in sets for a in ("--set", s)])


def test_entrypoint_is_shell_quoted():
    out = dry_run("data.input_template='Question: {}; Answer:'")
    argv = job_command(out)[3:]  # after: python -m openrlhf.cli.train_ppo_ray
    assert argv[argv.index("--data.input_template") + 1] == "Question: {}; Answer:"
    # what the launcher hands Ray's job SDK, which runs it through a shell, splits back into the same argv
    assert shlex.split(jobs.entrypoint("python3", argv))[3:] == argv
    check(argv)


ADVERSARIAL = [
    "$(touch {canary})",
    "`touch {canary}`",
    "a; touch {canary}",
    "line one\nline two",
    "say \"hi\" and 'bye'",
    "two  spaces,   three, trailing ",
    " leading",
    "back\\slash\\",
    'quote after backslash \\"',
    "<timestamp> > {canary}",
    "",
    "*",
    "~/x",
]


def sh_argv(entry: str) -> list[str]:
    """The argv /bin/sh makes of `entry` (the job's shell), with the program replaced by one that prints it."""
    script = 'show() { for a in "$@"; do printf "%s\\0" "$a"; done; }; show ' + entry
    result = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True)
    return result.stdout.split("\0")[:-1]


def test_the_entrypoint_reads_back_as_the_argv_in_a_real_shell(tmp_path):
    canary = tmp_path / "ran"
    argv = ["--data.input_template", *(v.format(canary=canary) for v in ADVERSARIAL)]
    entry = jobs.entrypoint("python3", argv)
    assert sh_argv(entry) == ["python3", "-m", "openrlhf.cli.train_ppo_ray", *argv]
    assert not canary.exists()  # nothing ran as shell code


@given(st.lists(st.text(st.characters(blacklist_characters="\t\0", blacklist_categories=("Cs",))), max_size=4))
@settings(max_examples=200, deadline=None)
def test_any_text_without_tabs_reads_back_exactly(values):
    words = jobs.entry_words("python3", values)
    assert all(w and " " not in w for w in words)  # what list2cmdline leaves as it is
    assert shlex.split(jobs.entrypoint("python3", values))[3:] == values


def test_a_tab_is_refused_in_one_line():
    with pytest.raises(UsageError, match="holds a tab"):
        jobs.entrypoint("python3", ["a\tb"])


def test_the_printed_command_submits_exactly_what_the_sdk_submits(tmp_path):
    """The printed `ray job submit`, run by a shell with the real ray CLI, posts the same job to the dashboard as
    the launcher's own SDK call: the same entrypoint string, the same runtime env (secrets masked in both the
    print and the post, where the SDK sends the value)."""
    canary = tmp_path / "ran"
    argv = ["--data.input_template", *(v.format(canary=canary) for v in ADVERSARIAL)]
    env = {"working_dir": str(REPO), "excludes": jobs.EXCLUDES, "env_vars": {"HF_TOKEN": "hf-secret-1"}}
    accepted = (200, json.dumps({"submission_id": "job-1", "job_id": None}).encode())
    with FakeDashboard([accepted]) as dashboard:
        printed = jobs.submit_command(dashboard.address, env, "python3", argv)
        assert "hf-secret-1" not in printed
        shell_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        subprocess.run(["bash", "-c", printed], env=shell_env, capture_output=True, timeout=120)
        jobs.submit(dashboard.address, jobs.entrypoint("python3", argv), env, "job-2")
        by_cli, by_sdk = (json.loads(post) for post in dashboard.posts[:2])
    assert by_cli["entrypoint"] == by_sdk["entrypoint"] == jobs.entrypoint("python3", argv)
    assert sh_argv(by_cli["entrypoint"])[3:] == argv and not canary.exists()
    assert by_cli["runtime_env"]["env_vars"] == {"HF_TOKEN": "***"}  # the printed command carries no secret
    assert by_sdk["runtime_env"]["env_vars"] == {"HF_TOKEN": "hf-secret-1"}  # the job gets it from the launcher


def test_the_reward_is_told_of_its_journal_and_of_mixed_tasks(tmp_path):
    """The job and the services started for it get the run's journal folder; only a mixed-task recipe turns on the
    per-task logs (a one-task run logs no six constant series)."""
    from launch import runs
    from launch.recipe import load

    plain = runs.resolve(load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"), tmp_path / "a")
    mixed = runs.resolve(load(REPO / "recipes/mixed/qwen2.5-3b-ppo.yaml"), tmp_path / "b")
    assert jobs.reward_env(plain)["REWARD_JOURNAL_DIR"] == str(tmp_path / "a" / "journal")
    assert "REWARD_TASK_LOGS" not in jobs.runtime_env(plain)["env_vars"]
    assert jobs.reward_env(mixed)["REWARD_TASK_LOGS"] == "1" == jobs.runtime_env(mixed)["env_vars"]["REWARD_TASK_LOGS"]
    assert jobs.reward_env(mixed)["REWARD_JOURNAL_DIR"] == str(tmp_path / "b" / "journal")
    tests = [str(REPO / "data" / task / "test.parquet") for task in ("countdown", "multiply")]
    assert jobs.reward_env(mixed)["REWARD_JOURNAL_EVAL"].split(",") == tests  # made before the job, if not yet
