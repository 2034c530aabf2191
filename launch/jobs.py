"""From a checked recipe to a Ray job: run folders, the exact command, the runtime env, a local head when no
cluster is named, submission through Ray's job SDK, and following the job to its end."""

from __future__ import annotations

import datetime
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from launch.recipe import Recipe, to_argv

ENTRYPOINT = "-m openrlhf.cli.train_ppo_ray"
# Heavy or private folders never shipped as the job's working_dir.
EXCLUDES = [".venv", ".git", "data", "runs", ".hypothesis", ".pytest_cache", "**/__pycache__"]
WANDB_PLACEHOLDER = "from-env"  # OpenRLHF logs in with WANDB_API_KEY from the environment when it is set
SECRET_ENV = ("WANDB_API_KEY",)


# ---- run folders -------------------------------------------------------------------------------------------


def new_run_dir(runs_root: Path, name: str, now: datetime.datetime | None = None) -> Path:
    """runs/<recipe>/<timestamp>/, never an existing folder."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = runs_root / name / stamp
    run, n = base, 1
    while run.exists():
        n += 1
        run = base.with_name(f"{stamp}-{n}")
    run.mkdir(parents=True)
    return run


def training_argv(recipe: Recipe, run: Path, repo: Path, resume: bool = False) -> list[str]:
    """OpenRLHF's argv for this run: the recipe's flags, absolute data paths, and the run's own folders."""
    flags = recipe.flat()
    for key in ("data.prompt_dataset", "eval.dataset"):
        if flags.get(key):
            flags[key] = ",".join(
                str((repo / p.strip()).resolve()) if not Path(p.strip()).is_absolute() else p.strip()
                for p in str(flags[key]).split(",")
            )
    flags.update(
        {
            "ckpt.path": str(run / "ckpt"),
            "ckpt.output_dir": str(run / "final"),
            "logger.tensorboard_dir": str(run / "tensorboard"),
        }
    )
    if flags.get("logger.wandb.key") not in (None, False, WANDB_PLACEHOLDER):
        os.environ["WANDB_API_KEY"] = str(flags["logger.wandb.key"])  # a key never goes on a command line
    if os.environ.get("WANDB_API_KEY"):
        flags.update({"logger.wandb.key": WANDB_PLACEHOLDER, "logger.wandb.run_name": f"{recipe.name}-{run.name}"})
        flags.setdefault("logger.wandb.project", "tinyzero-openrlhf")
    if resume:
        flags["ckpt.load_enable"] = True
    return to_argv(_nest(flags))


def _nest(flat: dict) -> dict:
    tree: dict = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


# Our own settings, taken from the launching shell to every node of the job when set there.
FORWARDED_ENV = ("REWARD_SAMPLE_EVERY",)


def runtime_env(recipe: Recipe, repo: Path) -> dict:
    """`recipe.env` (the recipe's own variables), then FORWARDED_ENV and the secrets, from this shell."""
    env_vars = {k: str(v) for k, v in (recipe.meta.get("env") or {}).items()}
    for name in (*FORWARDED_ENV, *SECRET_ENV):
        if os.environ.get(name):
            env_vars[name] = os.environ[name]
    return {"working_dir": str(repo), "excludes": EXCLUDES, "env_vars": env_vars}


def masked(env: dict) -> dict:
    shown = json.loads(json.dumps(env))
    for name in SECRET_ENV:
        if name in shown.get("env_vars", {}):
            shown["env_vars"][name] = "***"
    return shown


def entrypoint(python: str, argv: list[str]) -> str:
    """The job's shell command: Ray runs it through a shell, so every argument is quoted."""
    return shlex.join([python, "-m", "openrlhf.cli.train_ppo_ray", *argv])


def python_for(address: str | None, python: str | None = None) -> str:
    """The job's interpreter: `--python` when given; ours for a head we start here; `python3` on a cluster."""
    return python or (sys.executable if address is None else "python3")


def submit_command(address: str, env: dict, entrypoint: str) -> str:
    """`ray job submit` with the same address, runtime env and entrypoint, secrets masked."""
    return (
        f"ray job submit --address {shlex.quote(address)} --runtime-env-json {shlex.quote(json.dumps(masked(env)))}"
        f" -- {entrypoint}"
    )


def save_run(run: Path, recipe: Recipe, argv: list[str], command: str, extra: dict) -> None:
    resolved = {"recipe": {**recipe.meta, "name": recipe.name, "source": str(recipe.path)}, **recipe.flags}
    (run / "recipe.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (run / "command.sh").write_text(command + "\n")
    (run / "job.json").write_text(json.dumps({"argv": argv, **extra}, indent=2) + "\n")


# ---- a local head ------------------------------------------------------------------------------------------


def port_range() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range (32768 and up by default), which it never hands to outgoing
    connections: a port found free there stays free until its server binds it, even while Ray opens dozens."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(1024, low - 12000), low


_handed_out: set[int] = set()
_random = random.Random()  # our own: a test that seeds `random` must not make two processes pick alike


def free_port() -> int:
    """A loopback port that nobody listens on, never the same one twice in this process."""
    low, high = port_range()
    for _ in range(1000 if high - low >= 1000 else 0):
        port = _random.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    while True:  # no room below the ephemeral range on this machine: let the kernel choose
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class LocalHead:
    """A Ray head on this machine with its GPUs, owned by us: `ray start --head --block` in a session of its own,
    so that `stop()` ends exactly this cluster (not every Ray process on the machine, as `ray stop` would)."""

    def __init__(self, gpus: int, ray_bin: str | None = None):
        self.gpus = gpus
        self.ray = ray_bin or str(Path(sys.executable).with_name("ray"))
        self.port, self.dashboard, self.client_port, self.agent_port = (free_port() for _ in range(4))
        self.address = f"http://127.0.0.1:{self.dashboard}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> str:
        command = [
            self.ray,
            "start",
            "--head",
            "--block",
            f"--port={self.port}",
            f"--dashboard-port={self.dashboard}",
            "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={self.client_port}",  # not Ray's fixed defaults, which another Ray may hold
            f"--dashboard-agent-listen-port={self.agent_port}",
            f"--num-gpus={self.gpus}",
            "--include-dashboard=true",
            "--disable-usage-stats",
        ]
        self.process = subprocess.Popen(
            command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode().strip().splitlines()
                raise RuntimeError(f"ray start exited with status {self.process.returncode}: {error[-1:]}")
            try:
                JobSubmissionClient(self.address).list_jobs()
                return self.address
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the Ray dashboard at {self.address} did not come up") from None
                time.sleep(1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# ---- jobs --------------------------------------------------------------------------------------------------


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
                    cwd=Path(__file__).resolve().parents[1],
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
