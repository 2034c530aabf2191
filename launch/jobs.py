"""From a resolved recipe to a Ray job: the job's runtime environment and command, the same as a `ray job submit`
a person can run, submission through Ray's job SDK, following the job to its end, and the reward services a
single-node run starts here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from launch import runtime
from launch.cluster import free_port
from launch.recipe import Recipe
from reward_funcs import task_logs
from reward_funcs.cli import REPO, UsageError
from reward_funcs.tokens import TOKEN_ENV, URL_PLACEHOLDER, mask_token

ENTRYPOINT_MODULE = "openrlhf.cli.train_ppo_ray"
# Heavy or private folders never shipped as the job's working_dir.
EXCLUDES = [".venv", ".venv-gpu", ".git", "data", "runs", ".hypothesis", ".pytest_cache", "**/__pycache__"]
SECRET_ENV = ("WANDB_API_KEY", TOKEN_ENV)  # taken from the launching shell when set there
# Our own settings, taken from the launching shell to every node of the job when set there.
FORWARDED_ENV = ("REWARD_SAMPLE_EVERY", "REWARD_JOURNAL_SAMPLE")
JOURNAL_FOLDER = "journal"  # the rollout journal's folder in a run folder (reward_funcs/journal.py)


# Variables whose value is a secret: never printed, never saved, only given to the job's environment.
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def is_secret(name: str) -> bool:
    return any(word in name.upper() for word in SECRET_WORDS)


def runtime_env(recipe: Recipe | None) -> dict:
    """The repository as working_dir; the rollout journal's settings and, for a mixed-task recipe, the per-task
    logs' switch, then `recipe.env` (the recipe's own
    variables), then FORWARDED_ENV and the secrets from this shell, then the recipe's secrets."""
    env_vars = reward_env(recipe)
    env_vars.update({k: str(v) for k, v in ((recipe.meta.get("env") if recipe else None) or {}).items()})
    for name in (*FORWARDED_ENV, *SECRET_ENV):
        if os.environ.get(name):
            env_vars[name] = os.environ[name]
    env_vars.update(recipe.secrets if recipe else {})
    return {"working_dir": str(REPO), "excludes": EXCLUDES, "env_vars": env_vars}


def reward_env(recipe: Recipe | None) -> dict:
    """What the reward, in the job or in a service started for it, is told about the run: its journal, and for a
    mixed-task recipe the per-task logs' switch (reward_funcs.task_logs); `recipe.env`'s REWARD_* last, so that
    `REWARD_JOURNAL_DIR: ""` turns the journal off in the services as in the job."""
    env = journal_env(recipe)
    if recipe and recipe.meta.get("task") == "mixed":
        env[task_logs.ENV] = "1"
    own = (recipe.meta.get("env") if recipe else None) or {}
    env.update({name: str(value) for name, value in own.items() if name.startswith("REWARD_")})  # the recipe's say
    return env


def journal_env(recipe: Recipe | None) -> dict:
    """A run's rollout journal: its folder in the run folder, the eval files that tell eval samples apart (those
    found here; a hub dataset's samples count as training ones), and their label column. Only for a resolved recipe
    (one with a run folder); `recipe.env: {REWARD_JOURNAL_DIR: ""}` turns it off."""
    run = recipe.meta.get("run_dir") if recipe else None
    if not run:
        return {}
    env = {"REWARD_JOURNAL_DIR": str(Path(run) / JOURNAL_FOLDER)}
    # a resolved recipe's local files are absolute (made before the job starts, if not yet); a hub name is not
    files = [f for f in str(recipe.get("eval.dataset") or "").split(",") if Path(f).is_absolute() or Path(f).is_file()]
    if files:
        env["REWARD_JOURNAL_EVAL"] = ",".join(files)
        env["REWARD_JOURNAL_LABEL_KEY"] = str(recipe.get("data.label_key") or "label")
    return env


def masked(env: dict) -> dict:
    """`env` with the value of every secret variable replaced by ***."""
    shown = json.loads(json.dumps(env))
    for name in shown.get("env_vars", {}):
        if is_secret(name):
            shown["env_vars"][name] = "***"
    return shown


def python_for(address: str | None, python: str | None = None) -> str:
    """The job's interpreter: `--python` when given; the GPU runtime's (launch.runtime) for a head we start here;
    `python3` on a cluster."""
    return python or (runtime.python(runtime.default_venv()) if address is None else "python3")


# ---- the command ---------------------------------------------------------------------------------------------
#
# The SDK submits an entrypoint string that Ray runs through /bin/sh. `ray job submit ... -- WORDS` does not pass
# WORDS through: it joins them with subprocess.list2cmdline (Windows quoting: a word with a space or a tab is
# wrapped in double quotes, a double quote becomes \"). So the entrypoint is written as words that list2cmdline
# leaves alone (no space, no tab, never empty) and whose only double quotes stand outside single quotes, where
# list2cmdline's \" reads back as a double quote in sh. Then the SDK and the printed command submit the same
# string, and sh splits it into exactly our argv.

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")
_PATH = _PLAIN - {"=", "@", "%", "+", ":", ","}


def sh_word(value: str) -> str:
    """`value` as sh source that reads back as one word, with no double space, no tab, and no double quote
    inside single quotes."""
    if URL_PLACEHOLDER in value:  # left for the job's shell to expand: the token never is on a command line
        return URL_PLACEHOLDER.join(sh_word(piece) if piece else "" for piece in value.split(URL_PLACEHOLDER))
    if "\t" in value or "\0" in value:
        raise UsageError(f"{value[:60]!r} holds a tab or NUL, which cannot pass through a shell command: remove it")
    if value and set(value) <= _PLAIN:
        return value
    parts = []
    for piece in re.split(r"(['\"])", value):
        if piece == "'":
            parts.append("\\'")
        elif piece == '"':
            parts.append('"')  # list2cmdline writes it as \", which sh reads as a double quote
        elif piece:
            parts.append("'" + piece.replace(" ", " ''") + "'")  # a space is never followed by another
    return "".join(parts) or "''"


def entry_words(python: str, argv: list[str], module: str = ENTRYPOINT_MODULE) -> list[str]:
    """The job's command, `python -m module argv`, as `ray job submit -- WORDS` takes it. The interpreter is quoted
    whenever it holds more than a path's characters (sh would read `A=1` as an assignment)."""
    program = sh_word(python)
    if program == python and not ("/" in python and set(python) <= _PATH):  # bare, and not plainly a path
        program = f"'{python}'"
    return " ".join([program, *(sh_word(w) for w in ["-m", module, *argv])]).split(" ")


def entrypoint(python: str, argv: list[str], module: str = ENTRYPOINT_MODULE) -> str:
    """The job's shell command, as both the SDK and `ray job submit` submit it."""
    return subprocess.list2cmdline(entry_words(python, argv, module))


def submit_command(address: str, env: dict, python: str, argv: list[str]) -> str:
    """`ray job submit` with the same address, runtime env (secrets masked) and entrypoint: every word quoted, so
    that running it submits exactly what the launcher submitted."""
    head = ["ray", "job", "submit", "--address", address, "--runtime-env-json", json.dumps(masked(env)), "--"]
    return shlex.join([*head, *entry_words(python, argv)])


def submit(
    address: str, entrypoint: str, env: dict, job_id: str | None = None, wait: float = 120, num_gpus: float = 0
) -> str:
    """Submit the job; a head that has just started may have no job agent yet ("No available agent to submit
    job"): that answer is retried for up to `wait` seconds."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    deadline = time.monotonic() + wait
    while True:
        try:
            return client.submit_job(
                entrypoint=entrypoint, runtime_env=env, submission_id=job_id, entrypoint_num_gpus=num_gpus or None
            )
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def follow(address: str, job_id: str, out=sys.stdout) -> str:
    """Print the job's logs as they come, a reward service's token masked; return its final status. Ctrl-C stops
    the job."""
    import asyncio

    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)

    async def tail():
        async for lines in client.tail_job_logs(job_id):
            out.write(mask_token(lines))  # OpenRLHF prints its arguments, a reward URL's token among them
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

    def start(self, env: dict | None = None) -> list[str]:
        """Start the services, `env` added to their environment (a run's `journal_env`, for instance)."""
        import urllib.request

        # On loopback the services need no token, and their URLs (printed, saved with the run) carry none: a
        # REWARD_TOKEN meant for a remote service must not make these require one.
        env = {**{name: value for name, value in os.environ.items() if name != "REWARD_TOKEN"}, **(env or {})}
        for port in self.ports:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "reward_funcs.server", "--port", str(port), "--workers", str(self.workers)],
                    cwd=REPO,
                    env=env,
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

    def restart(self, env: dict | None = None) -> list[str]:
        """Stop the services and start them again on the same ports with `env` (a curriculum's next stage: its own
        journal folder); the URLs the jobs were given stay right."""
        self.stop()
        self.processes = []
        return self.start(env)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
