"""The launcher: a recipe becomes a checked `ray job submit` of OpenRLHF's train_ppo_ray.

    python -m launch train recipes/countdown/qwen2.5-3b-ppo.yaml [--set actor.adam.lr=5e-7] [--dry-run]
    python -m launch train --resume runs/qwen2.5-3b-ppo/20260101-120000
    python -m launch preflight recipes/countdown/qwen2.5-3b-ppo.yaml
    python -m launch sweep recipes/ablations/model-size.yaml [--dry-run]

(or `make train RECIPE=...`, `make preflight RECIPE=...`, `make sweep ABLATION=...`). With RAY_ADDRESS or
--address the job goes to that cluster (multi-node included); without, a head node is started here with this
machine's GPUs and stopped when the job ends. Each run gets runs/<recipe>/<timestamp>/ with the resolved recipe,
the exact command, TensorBoard logs, checkpoints and the final model; W&B logs too when WANDB_API_KEY is set.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from data_tools.output import dataset_files
from launch import cluster, jobs, preflight, runs
from launch.recipe import Recipe, apply_overrides, load, load_ablation
from reward_funcs import cli
from reward_funcs.cli import REPO, UsageError

PROG = "python -m launch"
LOCAL_ADDRESS = "http://127.0.0.1:8265"  # what a dry run prints when no cluster is named


class LaunchError(UsageError):
    """Reported as one line with the fix; exit status 2."""


def ensure_dataset(recipe: Recipe) -> None:
    """Generate the recipe's dataset with data_tools when its files are missing."""
    spec = recipe.meta.get("dataset") or {}
    wanted = [p for key in ("data.prompt_dataset", "eval.dataset") for p in dataset_files(recipe.get(key), REPO)]
    missing = [str(p) for p in wanted if not p.exists()]
    if not missing:
        return
    if not spec.get("tool") or not spec.get("out"):
        raise LaunchError(f"{', '.join(missing)} missing and the recipe has no recipe.dataset to generate it from")
    out = REPO / spec["out"]
    command = [sys.executable, "-m", f"data_tools.{spec['tool']}", "--out", str(out), *map(str, spec.get("args", []))]
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {spec['out']}: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command, cwd=REPO).returncode:
        raise LaunchError(f"generating {spec['out']} failed (see above)")


def install_runtime() -> None:
    """The GPU stack from requirements.txt, once per content (stamp in the interpreter's prefix)."""
    requirements = (REPO / "requirements.txt").read_bytes()
    stamp = Path(sys.prefix) / f".runtime-{hashlib.sha256(requirements).hexdigest()[:12]}"
    if stamp.exists():
        return
    pip = [sys.executable, "-m", "pip", "install"]
    print("installing the GPU runtime (requirements.txt), once", flush=True)
    for command in (pip + ["vllm==0.29.0"], pip + ["--no-build-isolation", "-r", str(REPO / "requirements.txt")]):
        if subprocess.run(command).returncode:
            raise LaunchError("installing requirements.txt failed (see above); fix it and run again")
    stamp.touch()


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


def dry_run(recipe: Recipe, args, resume: Path | None) -> int:
    """Every check that needs no GPU (the cluster's are reported skipped) on stderr, then the exact `ray job
    submit` on stdout; nothing is started, generated or written."""
    services = reward_services(recipe, args.address)
    run = resume or runs.next_run_dir(args.runs_dir, recipe.name)
    resolved = runs.resolve(recipe, run, reward_urls=services and services.urls, resume=resume is not None)
    if not passes(preflight.run(resolved, REPO, None, probe_services=False), out=sys.stderr):
        return 1
    python = jobs.python_for(args.address, args.python)
    env = jobs.runtime_env(resolved)
    print(jobs.submit_command(args.address or LOCAL_ADDRESS, env, python, resolved.argv()), flush=True)
    return 0


def launch(recipe: Recipe, args, resume: Path | None = None) -> int:
    """Resolve `recipe` for its run (a new one, or `resume`), check it, and submit it."""
    if args.dry_run:
        return dry_run(recipe, args, resume)
    services = reward_services(recipe, args.address)
    python = jobs.python_for(args.address, args.python)
    gpus, memory = cluster.cluster_gpus(args.address, python)
    run = resume or runs.next_run_dir(args.runs_dir, recipe.name)
    resolved = runs.resolve(recipe, run, reward_urls=services and services.urls, resume=resume is not None)
    # Cheap checks first: a machine that cannot train fails here, before any data is made or anything installed.
    config, parsed = preflight.check_config(resolved, gpus, memory)
    if not passes(config):
        return 1
    ensure_dataset(resolved)
    if services:
        services.start()
    try:
        if not passes(preflight.check_files(resolved, parsed, REPO)):
            return 1
        if args.address is None and not args.no_install:
            install_runtime()
        return submit(resolved, run, args, gpus, python, resumed=resume is not None)
    finally:
        if services:
            services.stop()


def submit(recipe: Recipe, run: Path, args, gpus: int, python: str, resumed: bool) -> int:
    """Submit the resolved recipe to the cluster (a local head when none is named) and follow the job."""
    head = None
    address = args.address
    if address is None:
        head = cluster.LocalHead(gpus)
        try:
            address = head.start()
        except RuntimeError as e:
            head.stop()
            raise LaunchError(f"could not start a local Ray head: {e}") from None
    try:
        try:
            run.mkdir(parents=True, exist_ok=resumed)
        except FileExistsError:
            raise LaunchError(f"{run} appeared while launching: run the command again") from None
        env = jobs.runtime_env(recipe)
        runs.save(run, recipe, jobs.submit_command(address, env, python, recipe.argv()))
        job = jobs.submit(address, jobs.entrypoint(python, recipe.argv()), env)
        runs.add_job(run, {"job_id": job, "address": address, "env_vars": sorted(env["env_vars"])})
        print(f"submitted {job}; run folder {run}", flush=True)
        status = jobs.follow(address, job)
        print(f"job {job} {status}", flush=True)
        return 0 if status == "SUCCEEDED" else 1
    finally:
        if head:
            head.stop()


def cmd_train(args) -> int:
    if args.resume:
        if args.recipe or args.set:
            raise LaunchError("--resume continues a run with its own settings: give no recipe and no --set")
        run = Path(args.resume).resolve()
        return launch(runs.load(run), args, resume=run)
    if not args.recipe:
        raise LaunchError("give a recipe, e.g. recipes/countdown/qwen2.5-3b-ppo.yaml, or --resume RUN_DIR")
    return launch(apply_overrides(load(args.recipe), args.set), args)


def cmd_preflight(args) -> int:
    recipe = apply_overrides(load(args.recipe), args.set)
    gpus, memory = cluster.cluster_gpus(args.address, jobs.python_for(args.address, args.python))
    resolved = runs.resolve(recipe, runs.next_run_dir(args.runs_dir, recipe.name))
    checks = preflight.run(resolved, REPO, gpus, memory)
    for c in checks:
        print(c.line(), flush=True)
    return 1 if preflight.failed(checks) else 0


def cmd_sweep(args) -> int:
    status = 0
    for recipe in load_ablation(args.ablation):
        print(f"==== {recipe.name}", flush=True)
        status |= launch(apply_overrides(recipe, args.set), args)
    return status


def _common(p, dry_run: bool = True) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS") or None,
        help="the Ray cluster's dashboard, http://HOST:8265 (default: RAY_ADDRESS; none: a head started here)",
    )
    p.add_argument(
        "--python",
        default=None,
        help="the interpreter with openrlhf on the cluster's nodes (default: python3 on a cluster, this one "
        "for a local head)",
    )
    cli.add_runs_dir(p)
    if dry_run:
        p.add_argument("--dry-run", action="store_true", help="print the exact ray job submit command and exit")
        p.add_argument("--no-install", action="store_true", help="do not install requirements.txt before submitting")


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=cli.Parser)
    train = sub.add_parser("train", help="check a recipe and run it as a Ray job")
    train.add_argument("recipe", nargs="?", help="the recipe, e.g. recipes/countdown/qwen2.5-3b-ppo.yaml")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    _common(train)
    pre = sub.add_parser("preflight", help="check a recipe against OpenRLHF, the cluster, the model and the data")
    pre.add_argument("recipe", help="the recipe to check")
    _common(pre, dry_run=False)
    sweep = sub.add_parser("sweep", help="run every variant of an ablation")
    sweep.add_argument("ablation", help="the ablation, e.g. recipes/ablations/model-size.yaml")
    _common(sweep)
    return parser


@cli.entry_point(PROG, build_parser)
def main(args) -> int:
    return {"train": cmd_train, "preflight": cmd_preflight, "sweep": cmd_sweep}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
