"""From a resolved recipe to a Ray job: the job's runtime environment and command, the same as a `ray job submit`
a person can run, submission through Ray's job SDK, following the job to its end, and the reward services a
single-node run starts here.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

from launch.cluster import free_port
from launch.recipe import Recipe
from reward_funcs.cli import REPO

ENTRYPOINT_MODULE = "openrlhf.cli.train_ppo_ray"
# Heavy or private folders never shipped as the job's working_dir.
EXCLUDES = [".venv", ".git", "data", "runs", ".hypothesis", ".pytest_cache", "**/__pycache__"]
SECRET_ENV = ("WANDB_API_KEY",)
# Our own settings, taken from the launching shell to every node of the job when set there.
FORWARDED_ENV = ("REWARD_SAMPLE_EVERY",)


def runtime_env(recipe: Recipe | None) -> dict:
    """The repository as working_dir; `recipe.env` (the recipe's own variables), then FORWARDED_ENV and the
    secrets from this shell, then the recipe's secrets."""
    env_vars = {k: str(v) for k, v in ((recipe.meta.get("env") if recipe else None) or {}).items()}
    for name in (*FORWARDED_ENV, *SECRET_ENV):
        if os.environ.get(name):
            env_vars[name] = os.environ[name]
    env_vars.update(recipe.secrets if recipe else {})
    return {"working_dir": str(REPO), "excludes": EXCLUDES, "env_vars": env_vars}


def masked(env: dict) -> dict:
    shown = json.loads(json.dumps(env))
    for name in shown.get("env_vars", {}):
        if name in SECRET_ENV:
            shown["env_vars"][name] = "***"
    return shown


def python_for(address: str | None, python: str | None = None) -> str:
    """The job's interpreter: `--python` when given; ours for a head we start here; `python3` on a cluster."""
    return python or (sys.executable if address is None else "python3")


def entrypoint(python: str, argv: list[str]) -> str:
    """The job's shell command: Ray runs it through a shell, so every argument is quoted."""
    return shlex.join([python, "-m", ENTRYPOINT_MODULE, *argv])


def submit_command(address: str, env: dict, entrypoint: str) -> str:
    """`ray job submit` with the same address, runtime env and entrypoint, secrets masked."""
    return (
        f"ray job submit --address {shlex.quote(address)} --runtime-env-json {shlex.quote(json.dumps(masked(env)))}"
        f" -- {entrypoint}"
    )


def submit(address: str, entrypoint: str, env: dict, job_id: str | None = None, wait: float = 120) -> str:
    """Submit the job; a head that has just started may have no job agent yet ("No available agent to submit
    job"): that answer is retried for up to `wait` seconds."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    deadline = time.monotonic() + wait
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, runtime_env=env, submission_id=job_id)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def follow(address: str, job_id: str, out=sys.stdout) -> str:
    """Print the job's logs as they come; return its final status. Ctrl-C stops the job."""
    import asyncio

    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)

    async def tail():
        async for lines in client.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        client.stop_job(job_id)
        out.write(f"\nstopping job {job_id}\n")
    except Exception as e:  # the log stream dropped: the job may well go on, so wait for its status
        out.write(f"\nlost the job's log stream ({type(e).__name__}: {e}); waiting for it to end\n")
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return str(status.value)
        time.sleep(5)


# ---- reward services -----------------------------------------------------------------------------------------


class RewardServices:
    """`recipe.reward_service: {instances: N, workers: W, port: P}`: N local services on ports P, P+1, ... for a
    single-node run; OpenRLHF gets their URLs comma-separated and uses them round-robin."""

    def __init__(self, spec: dict):
        self.instances = int(spec.get("instances", 1))
        self.workers = int(spec.get("workers", 1))
        first = spec.get("port")
        self.ports = (
            [int(first) + i for i in range(self.instances)] if first else [free_port() for _ in range(self.instances)]
        )
        self.urls = [f"http://127.0.0.1:{port}/get_reward" for port in self.ports]
        self.processes: list[subprocess.Popen] = []

    def start(self) -> list[str]:
        import urllib.request

        for port in self.ports:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "reward_funcs.server", "--port", str(port), "--workers", str(self.workers)],
                    cwd=REPO,
                )
            )
        deadline = time.monotonic() + 120
        for url, process in zip(self.urls, self.processes, strict=True):
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(url.replace("/get_reward", "/health"), timeout=5):
                        break
                except OSError:
                    if process.poll() is not None:
                        self.stop()
                        raise RuntimeError(
                            f"the reward service for {url} exited with status {process.returncode}"
                        ) from None
                    time.sleep(0.1)
            else:
                self.stop()
                raise RuntimeError(f"the reward service for {url} did not answer /health")
        return self.urls

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
