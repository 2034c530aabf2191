"""The launcher: a recipe becomes a checked `ray job submit` of OpenRLHF's train_ppo_ray.

    python -m launch train recipes/countdown/qwen2.5-3b-ppo.yaml [--set actor.adam.lr=5e-7] [--dry-run]
    python -m launch train --resume runs/countdown-qwen2.5-3b-ppo/20260101-120000
    python -m launch preflight recipes/countdown/qwen2.5-3b-ppo.yaml
    python -m launch sweep recipes/ablations/model-size.yaml [--dry-run]
    python -m launch smoke recipes/countdown/qwen2.5-3b-ppo.yaml        # the recipe, proven in minutes
    python -m launch train recipes/countdown/qwen2.5-3b-ppo-curriculum.yaml   # stages, one after another

(or `make train RECIPE=...`, `make preflight RECIPE=...`, `make sweep ABLATION=...`, `make smoke RECIPE=...`).
With RAY_ADDRESS or --address the job goes to that cluster (multi-node included); without, a head node is
started here with this machine's GPUs and stopped when the job ends. Each run gets runs/<recipe>/<timestamp>/
with the resolved recipe, the exact command, TensorBoard logs, checkpoints and the final model; W&B logs too
when WANDB_API_KEY is set. A recipe with `recipe.stages` is a curriculum (launch/stages.py): its stages run one
after another in one run folder, each from the model the one before it saved.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from launch import cluster, jobs, preflight, runs, session, smoke, stages
from launch.recipe import Recipe, apply_overrides, load, load_ablation
from launch.session import LaunchError
from reward_funcs import cli
from reward_funcs.cli import REPO

PROG = "python -m launch"
LOCAL_ADDRESS = "http://127.0.0.1:8265"  # what a dry run prints when no cluster is named


def dry_run(recipe: Recipe, args, resume: Path | None) -> int:
    """Every check that needs no GPU (the cluster's are reported skipped) on stderr, then the exact `ray job
    submit` on stdout; nothing is started, generated or written."""
    services = session.reward_services(recipe, args.address)
    run = resume or runs.next_run_dir(args.runs_dir, recipe.name)
    resolved = runs.resolve(recipe, run, reward_urls=services and services.urls, resume=resume is not None)
    if not session.passes(preflight.run(resolved, REPO, None, probe_services=False), out=sys.stderr):
        return 1
    python = jobs.python_for(args.address, args.python)
    env = jobs.runtime_env(resolved)
    print(jobs.submit_command(args.address or LOCAL_ADDRESS, env, python, resolved.argv()), flush=True)
    return 0


def launch(recipe: Recipe, args, resume: Path | None = None) -> int:
    """Resolve `recipe` for its run (a new one, or `resume`), check it, and submit it."""
    if stages.is_curriculum(recipe):
        return stages.launch(recipe, args, resume)
    if args.dry_run:
        return dry_run(recipe, args, resume)
    services = session.reward_services(recipe, args.address)
    python = jobs.python_for(args.address, args.python)
    run = resume or runs.next_run_dir(args.runs_dir, recipe.name)
    resolved = runs.resolve(recipe, run, reward_urls=services and services.urls, resume=resume is not None)
    if args.address:  # the probe checks that every node sees the data: make it first, once the cluster answers
        cluster.reachable(args.address)
        session.ensure_dataset(resolved)
    gpus, memory, nodes = session.cluster_facts(args.address, resolved, python)
    # Cheap checks first: a machine that cannot train fails here, before any data is made or anything installed.
    config, parsed = preflight.check_config(resolved, gpus, memory)
    if not session.passes(config + nodes):
        return 1
    session.ensure_dataset(resolved)
    with session.running(services, jobs.reward_env(resolved)):
        if not session.passes(preflight.check_files(resolved, parsed, REPO)):
            return 1
        resolved = session.prepare_runtime(resolved, args.address, python, install=not args.no_install)
        if resolved is None:
            return 1
        with session.ray_head(args.address, gpus, python) as address:
            status, _ = session.submit_run(resolved, run, address, python, new_folder=resume is None)
    return 0 if status == "SUCCEEDED" else 1


def cmd_train(args) -> int:
    if args.resume:
        if args.recipe or args.set:
            raise LaunchError("--resume continues a run with its own settings: give no recipe and no --set")
        run = Path(args.resume).resolve()
        recipe = runs.load(run)
        if recipe.meta.get("stage"):
            raise LaunchError(
                f"{run} is a stage of a curriculum: resume the curriculum, python -m launch train --resume {run.parent}"
            )
        return launch(recipe, args, resume=run)
    if not args.recipe:
        raise LaunchError("give a recipe, e.g. recipes/countdown/qwen2.5-3b-ppo.yaml, or --resume RUN_DIR")
    return launch(apply_overrides(load(args.recipe), args.set), args)


def cmd_preflight(args) -> int:
    recipe = apply_overrides(load(args.recipe), args.set)
    if stages.is_curriculum(recipe):
        return stages.preflight_lines(recipe, args)
    resolved = runs.resolve(recipe, runs.next_run_dir(args.runs_dir, recipe.name))
    gpus, memory, nodes = session.cluster_facts(args.address, resolved, jobs.python_for(args.address, args.python))
    checks = preflight.run(resolved, REPO, gpus, memory) + nodes
    for c in checks:
        print(c.line(), flush=True)
    return 1 if preflight.failed(checks) else 0


def cmd_smoke(args) -> int:
    return smoke.run_smoke(apply_overrides(load(args.recipe), args.set), args)


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
        help="the job's interpreter, with the GPU runtime (default: python3 on a cluster; for a head started here, "
        ".venv-gpu's, installed on first use; the head runs from this interpreter's environment)",
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
    smoke_ = sub.add_parser(
        "smoke", help="the recipe for a few steps on its own GPUs: every stage checked, timings, a projection"
    )
    smoke_.add_argument("recipe", help="the recipe to prove, e.g. recipes/countdown/qwen2.5-3b-ppo.yaml")
    _common(smoke_, dry_run=False)
    smoke_.add_argument("--no-install", action="store_true", help="do not install the GPU runtime before submitting")
    return parser


@cli.entry_point(PROG, build_parser)
def main(args) -> int:
    commands = {"train": cmd_train, "preflight": cmd_preflight, "sweep": cmd_sweep, "smoke": cmd_smoke}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
