"""Running a resolved recipe: the data it needs, its reward services, the GPU runtime, a Ray head (started here
when no cluster is named), and its jobs, each followed to its end. Used by `launch train` and `launch smoke`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path

from data_tools.output import dataset_files
from launch import cluster, jobs, preflight, probe, runs, runtime
from launch import install as installer
from launch.check import fail
from launch.recipe import Recipe, apply_overrides
from launch.recipe_checks import dataset_specs
from reward_funcs.cli import REPO, UsageError


class LaunchError(UsageError):
    """Reported as one line with the fix; exit status 2."""


def ensure_dataset(recipe: Recipe) -> None:
    """Generate the recipe's datasets with data_tools when their files are missing: each recipe.dataset whose
    folder holds a missing file."""
    specs = dataset_specs(recipe.meta)
    wanted = [p for key in ("data.prompt_dataset", "eval.dataset") for p in dataset_files(recipe.get(key), REPO)]
    missing = [p for p in wanted if not p.exists()]
    if not missing:
        return
    makers = [s for s in specs if s.get("tool") and s.get("out")]
    unmade = [str(p) for p in missing if not any(p.is_relative_to(REPO / s["out"]) for s in makers)]
    if unmade:
        raise LaunchError(f"{', '.join(unmade)} missing, and no recipe.dataset of the recipe generates it: make it")
    for spec in makers:
        if any(p.is_relative_to(REPO / spec["out"]) for p in missing):
            generate_dataset(spec)


def generate_dataset(spec: dict) -> None:
    """`python -m data_tools.<tool> --out <out> <args>` for one recipe.dataset."""
    out = REPO / spec["out"]
    command = [sys.executable, "-m", f"data_tools.{spec['tool']}", "--out", str(out), *map(str, spec.get("args", []))]
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {spec['out']}: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command, cwd=REPO).returncode:
        raise LaunchError(f"generating {spec['out']} failed (see above)")


def passes(checks, out=None) -> bool:
    """Print the findings (to `out`, default stdout); False (and say so) when one of them is a FAIL."""
    for c in checks:
        print(c.line(), file=out or sys.stdout, flush=True)
    if preflight.failed(checks):
        print("preflight failed: nothing was submitted", file=sys.stderr)
        return False
    return True


def reward_services(recipe: Recipe, address: str | None) -> jobs.RewardServices | None:
    """The services `recipe.reward_service` asks for, ports chosen, not started yet."""
    spec = recipe.meta.get("reward_service")
    if not spec:
        return None
    if address is not None:
        raise LaunchError(
            "recipe.reward_service starts services on this machine, for a single-node run; on a "
            "cluster run python -m reward_funcs.server on a node and set reward.remote_url to it"
        )
    return jobs.RewardServices(spec)


def cluster_facts(address: str | None, recipe: Recipe, python: str) -> tuple[int, float | None, list]:
    """(GPUs, the smallest GPU's memory in GB or None, findings per node): of this machine, or, on the cluster at
    `address`, from the probe job run on every node with the resolved `recipe`'s data files and run folder."""
    if address is None:
        gpus, memory = cluster.cluster_gpus(None)
        return gpus, memory, []
    found = cluster.cluster_probe(address, recipe, python)
    return found["gpus"], found.get("gpu_memory_gb"), probe.node_checks(found)


@contextlib.contextmanager
def running(services: jobs.RewardServices | None, env: dict | None = None):
    """The reward services up for the length of the block, `env` added to theirs (jobs.reward_env of the run)."""
    if services:
        services.start(env)
    try:
        yield
    finally:
        if services:
            services.stop()


def ray_beside(python: str) -> Path:
    """The `ray` of the environment `python` belongs to: the local head runs from the job's environment, so that
    Ray's workers (OpenRLHF's actors) have what the job has."""
    return Path(shutil.which(python) or python).with_name("ray")


def prepare_runtime(recipe: Recipe, address: str | None, python: str, install: bool) -> Recipe | None:
    """For a head started here: the GPU runtime installed when the job uses it (unless `install` is off), the
    job's interpreter able to train with a `ray` beside it, and attention switched to sdpa when flash-attn is not
    usable there; the recipe as it will run, or None when a check failed (printed). On a cluster the probe has
    checked every node: nothing to do."""
    if address is not None:
        return recipe
    venv = runtime.default_venv()
    own = python == runtime.python(venv)  # not --python
    facts = (installer.install(venv) if install else runtime.read_manifest(venv)) if own else None
    checks = runtime.interpreter_checks(python)
    if not own and not preflight.failed(checks):
        facts = runtime.probe(python)
    if not ray_beside(python).exists():
        checks.append(fail("runtime", f"no ray beside {python}: the local Ray head runs from the job's environment"))
    args = recipe.args()
    if not passes(checks + runtime.attention_checks(args, facts)):
        return None
    override = runtime.attention_override(args, facts) or {}
    return apply_overrides(recipe, [f"{k}={v}" for k, v in override.items()]) if override else recipe


@contextlib.contextmanager
def ray_head(address: str | None, gpus: int, python: str):
    """The cluster's address: `address`, or a head started here from the job's environment (`python`'s), stopped
    when the block ends."""
    if address is not None:
        yield address
        return
    ray = ray_beside(python)
    head = cluster.LocalHead(gpus, ray_bin=str(ray) if ray.exists() else None)
    try:
        address = head.start()
    except RuntimeError as e:
        head.stop()
        raise LaunchError(f"could not start a local Ray head: {e}") from None
    try:
        yield address
    finally:
        head.stop()


class Tail:
    """Writes through to stdout, keeps the last lines (to name what a failed job said last), and notes which of the
    `watch` phrases the job printed at any point."""

    def __init__(self, keep: int = 200, watch: tuple[str, ...] = ()):
        self.lines: deque[str] = deque(maxlen=keep)
        self.watch, self.found = watch, set()
        self._carry = ""  # the end of the last chunk: a phrase may be split between two

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        self.lines.extend(line for line in text.splitlines() if line.strip())
        window = self._carry + text
        self.found.update(phrase for phrase in self.watch if phrase in window)
        self._carry = window[-max((len(p) for p in self.watch), default=0) :] if self.watch else ""

    def flush(self) -> None:
        sys.stdout.flush()

    def saw(self, phrase: str) -> bool:
        return phrase in self.found

    def last_error(self) -> str:
        """The last line that reads like an error, else the last line."""
        words = ("Error", "Exception", "error:", "Traceback", "FAILED")
        found = [line for line in self.lines if any(w in line for w in words)]
        return (found or list(self.lines) or ["(the job printed nothing)"])[-1].strip()[:300]


def submit_run(
    recipe: Recipe, run: Path, address: str, python: str, new_folder: bool = True, watch: tuple[str, ...] = ()
) -> tuple[str, Tail]:
    """Keep the resolved recipe in `run`, submit it, follow the job; (its final status, what it printed last)."""
    try:
        run.mkdir(parents=True, exist_ok=not new_folder)
    except FileExistsError:
        raise LaunchError(f"{run} appeared while launching: run the command again") from None
    env = jobs.runtime_env(recipe)
    runs.save(run, recipe, jobs.submit_command(address, env, python, recipe.argv()))
    job = jobs.submit(address, jobs.entrypoint(python, recipe.argv()), env)
    runs.add_job(run, {"job_id": job, "address": address, "env_vars": sorted(env["env_vars"])})
    print(f"submitted {job}; run folder {run}", flush=True)
    tail = Tail(watch=watch)
    status = jobs.follow(address, job, tail)
    print(f"job {job} {status}", flush=True)
    return status, tail
