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

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from data_tools.output import Parser
from launch import jobs, preflight
from launch.openrlhf_cli import CommandLineError, check
from launch.recipe import Recipe, RecipeError, apply_overrides, load, load_ablation

REPO = Path(__file__).resolve().parents[1]
PROG = "python -m launch"


class LaunchError(Exception):
    """Reported as one line with the fix; exit status 2."""


def ensure_dataset(recipe: Recipe) -> None:
    """Generate the recipe's dataset with data_tools when its files are missing."""
    spec = recipe.meta.get("dataset") or {}
    wanted = [recipe.get(k) for k in ("data.prompt_dataset", "eval.dataset") if recipe.get(k)]
    missing = [p for p in wanted if not (REPO / p).exists()]
    if not missing:
        return
    if not spec.get("tool") or not spec.get("out"):
        raise LaunchError(f"{', '.join(missing)} missing and the recipe has no recipe.dataset to generate it from")
    command = [
        sys.executable,
        "-m",
        f"data_tools.{spec['tool']}",
        "--out",
        str(REPO / spec["out"]),
        *map(str, spec.get("args", [])),
    ]
    (REPO / spec["out"]).parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {spec['out']}: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command, cwd=REPO).returncode:
        raise LaunchError(f"generating {spec['out']} failed (see above)")


def cluster_gpus(address: str | None, python: str = "python3") -> tuple[int, float | None]:
    """(GPUs, the smallest GPU's memory in GB or None) of this machine, or of the cluster at `address`."""
    if address is None:
        gpus = preflight.local_gpus()
        return gpus, preflight.local_gpu_memory_gb() if gpus else None
    try:
        found = probe_cluster(address, None, python)
        return found["gpus"], found.get("gpu_memory_gb")
    except LaunchError:
        raise
    except Exception as e:  # the job SDK's errors: connection refused, not a Ray dashboard, ...
        raise LaunchError(
            f"the Ray cluster at {address} did not answer ({type(e).__name__}: {e}): check RAY_ADDRESS "
            "or --address (the dashboard's http://HOST:8265)"
        ) from None


def probe_cluster(address: str, recipe: Recipe | None, python: str = "python3") -> dict:
    """Run launch.probe on the cluster through the launcher's own submit path."""
    args = []
    if recipe is not None and recipe.get("eval.dataset") and (REPO / recipe.get("eval.dataset")).is_file():
        urls = [u for u in str(recipe.get("reward.remote_url", "")).split(",") if u.endswith(".py")]
        args = [
            "--reward",
            urls[0],
            "--data",
            str(REPO / recipe.get("eval.dataset")),
            "--input-key",
            recipe.get("data.input_key", "prompt"),
            "--label-key",
            recipe.get("data.label_key", "label"),
        ]
    env = jobs.runtime_env(recipe or Recipe("probe", REPO, {}), REPO)
    job = jobs.submit(address, shlex.join([python, "-m", "launch.probe", *args]), env)
    lines = []

    class Capture:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    status = jobs.follow(address, job, Capture())
    found = [line for chunk in lines for line in chunk.splitlines() if line.startswith("PROBE ")]
    if status != "SUCCEEDED" or not found:
        raise LaunchError(f"the probe job {job} ended {status}: {''.join(lines)[-500:]}")
    return json.loads(found[-1][len("PROBE ") :])


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


def print_checks(checks) -> bool:
    for c in checks:
        print(c.line(), flush=True)
    return not preflight.failed(checks)


def cmd_preflight(args) -> int:
    recipe = apply_overrides(load(args.recipe), args.set)
    gpus, memory = cluster_gpus(args.address, args.python or "python3")
    return 0 if print_checks(preflight.run(recipe, REPO, gpus, memory, runs_dir=Path(args.runs_dir))) else 1


def _resume(run: Path) -> tuple[Recipe, list[str]]:
    job = run / "job.json"
    if not job.is_file():
        raise LaunchError(f"{run} is not a run folder (no job.json): pass runs/<recipe>/<timestamp>")
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    meta = saved.pop("recipe")
    argv = json.loads(job.read_text())["argv"]
    if "--ckpt.load_enable" not in argv:
        argv = [*argv, "--ckpt.load_enable"]
    return Recipe(meta["name"], Path(meta.get("source", run)), saved, meta), argv


def launch(recipe: Recipe, args, argv: list[str] | None = None, run: Path | None = None) -> int:
    address = args.address
    services = None
    if recipe.meta.get("reward_service"):
        if address is not None:
            raise LaunchError(
                "recipe.reward_service starts services on this machine, for a single-node run; on a "
                "cluster run python -m reward_funcs.server on a node and set reward.remote_url to it"
            )
        services = jobs.RewardServices(recipe.meta["reward_service"])
        recipe = apply_overrides(recipe, [f"reward.remote_url={','.join(services.urls)}"])
        if argv is not None and "--reward.remote_url" in argv:  # a resumed run: point it at today's services
            argv = list(argv)
            argv[argv.index("--reward.remote_url") + 1] = ",".join(services.urls)
    if args.dry_run:
        run = run or Path(args.runs_dir) / recipe.name / "<timestamp>"
        argv = argv or jobs.training_argv(recipe, run, REPO)
        check(argv)  # the command OpenRLHF would get must pass its parser
        entry = jobs.entrypoint(jobs.python_for(address, args.python), argv)
        print(jobs.submit_command(address or "http://127.0.0.1:8265", jobs.runtime_env(recipe, REPO), entry))
        return 0
    gpus, memory = cluster_gpus(address, jobs.python_for(address, args.python))
    # Cheap checks first: a machine that cannot train fails here, before any data is made or anything installed.
    if not print_checks(preflight.run(recipe, REPO, gpus, memory, data=False)):
        print("preflight failed: nothing was submitted", file=sys.stderr)
        return 1
    ensure_dataset(recipe)
    if services:
        services.start()
    try:
        return _checked_launch(recipe, args, argv, run, address, gpus)
    finally:
        if services:
            services.stop()


def _checked_launch(recipe: Recipe, args, argv, run, address, gpus) -> int:
    args_ = check(jobs.training_argv(recipe, REPO / "runs" / "preflight", REPO))
    late = preflight.check_data(recipe, args_, REPO) + preflight.check_disk(args_, REPO, Path(args.runs_dir))
    if not print_checks(late + preflight.check_http_reward(args_, REPO)):
        print("preflight failed: nothing was submitted", file=sys.stderr)
        return 1
    if address is None and not args.no_install:
        install_runtime()
    head = None
    if address is None:
        head = jobs.LocalHead(gpus)
        try:
            address = head.start()
        except RuntimeError as e:
            head.stop()
            raise LaunchError(f"could not start a local Ray head: {e}") from None
    try:
        if run is None:
            run = jobs.new_run_dir(Path(args.runs_dir).resolve(), recipe.name)
            argv = jobs.training_argv(recipe, run, REPO)
        env = jobs.runtime_env(recipe, REPO)
        entry = jobs.entrypoint(jobs.python_for(args.address, args.python), argv)
        job = jobs.submit(address, entry, env)
        jobs.save_run(
            run,
            recipe,
            argv,
            jobs.submit_command(address, env, entry),
            {"job_id": job, "address": address, "env_vars": sorted(env["env_vars"])},
        )
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
        recipe, argv = _resume(Path(args.resume))
        return launch(recipe, args, argv, Path(args.resume).resolve())
    if not args.recipe:
        raise LaunchError("give a recipe, e.g. recipes/countdown/qwen2.5-3b-ppo.yaml, or --resume RUN_DIR")
    return launch(apply_overrides(load(args.recipe), args.set), args)


def cmd_sweep(args) -> int:
    status = 0
    for recipe in load_ablation(args.ablation):
        print(f"==== {recipe.name}", flush=True)
        status |= launch(apply_overrides(recipe, args.set), args)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
        p.add_argument(
            "--address", default=os.environ.get("RAY_ADDRESS") or None, help="Ray cluster (default: RAY_ADDRESS)"
        )
        p.add_argument(
            "--python",
            default=None,
            help="the interpreter with openrlhf on the cluster's nodes (default: python3 on a cluster, this one "
            "for a local head)",
        )

    train = sub.add_parser("train", help="check a recipe and run it as a Ray job")
    train.add_argument("recipe", nargs="?")
    common(train)
    train.add_argument("--dry-run", action="store_true", help="print the exact ray job submit command and exit")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument("--runs-dir", default=str(REPO / "runs"))
    train.add_argument("--no-install", action="store_true", help="do not install requirements.txt before submitting")
    pre = sub.add_parser("preflight", help="check a recipe against OpenRLHF, the cluster, the model and the data")
    pre.add_argument("recipe")
    common(pre)
    pre.add_argument("--runs-dir", default=str(REPO / "runs"), help="where runs go (for the disk check)")
    sweep = sub.add_parser("sweep", help="run every variant of an ablation")
    sweep.add_argument("ablation")
    common(sweep)
    sweep.add_argument("--dry-run", action="store_true")
    sweep.add_argument("--runs-dir", default=str(REPO / "runs"))
    sweep.add_argument("--no-install", action="store_true")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": cmd_train, "preflight": cmd_preflight, "sweep": cmd_sweep}[args.command](args)
    except (LaunchError, RecipeError, CommandLineError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
