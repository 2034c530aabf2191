"""launch.jobs: the job's command and runtime environment, and submission through Ray's job SDK."""

import http.server
import json
import shlex
import threading

import pytest
from testkit import REPO, launch_dry_run

from launch import jobs
from launch.cluster import free_port
from launch.openrlhf_cli import check

BASE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"


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
