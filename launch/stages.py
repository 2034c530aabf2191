"""A curriculum: one recipe whose `recipe.stages` are trained one after another, each stage starting from the
model (and, with PPO's critic, the critic) the stage before it saved.

    python -m launch train recipes/countdown/qwen2.5-3b-ppo-curriculum.yaml [--dry-run]
    python -m launch train --resume runs/countdown-qwen2.5-3b-ppo-curriculum/20260101-120000

OpenRLHF 0.11.2 always shuffles its prompt loader, so an order over the data can only be a sequence of runs:

    recipe:
      stages:
        - {name: easy, band: easy, episodes: 2}       # a difficulty band recipe.dataset makes (data_tools --bands)
        - {name: hard, dataset: data/x/train.parquet, prompts: 65536, actor: {adam: {lr: 5.0e-7}}}

A stage is the recipe with the stage's changes: `band` (data.prompt_dataset: that band's training file),
`dataset` (data.prompt_dataset), `prompts` (data.max_samples), `episodes` (train.num_episodes), and any group of
OpenRLHF flags. Every stage after the first gets actor.model_name_or_path = the previous stage's final model
(its ckpt.output_dir) and, when both train a critic (gae), critic.model_name_or_path = the previous stage's critic,
which that stage saves because the launcher sets its critic.save_value_network (OpenRLHF writes it to
<ckpt.output_dir>_critic). Each stage is otherwise a fresh OpenRLHF run: its Adam state, learning-rate schedule
and step count start again, and its KL reference is the model it starts from (0.11.2 loads the reference from
actor.model_name_or_path; it has no flag of its own).

    runs/<task>-<recipe>/<timestamp>/
      recipe.yaml  command.sh      the curriculum: the shared flags, recipe.stages; every stage's planned command
      stage-1/  recipe.yaml command.sh job.json status.json tensorboard/ ckpt/ final/ final_critic/
      stage-2/  ...

Preflight checks every stage before the first is submitted; a model a stage will load and an earlier stage will
produce is checked as the model it is trained from. A stage is submitted only when the stage before it SUCCEEDED
and its outputs exist (status.json records how each stage's last job ended). `--resume RUN` skips the stages
that finished, continues the first one that did not (with --ckpt.load_enable: from its own checkpoints when it
has any, else from the previous stage's outputs, which its saved command names), then runs the rest.
On a cluster, a stage's outputs are written by the node of the actor's first rank and read by every node of the
next stage: the runs folder must be on a filesystem every node mounts at the same path; before each stage the
cluster probe checks that every node sees the previous stage's model.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from launch import cluster, jobs, models, preflight, probe, runs, session
from launch.check import Check, ok, warn
from launch.recipe import Recipe, RecipeError, apply_overrides, flatten, merge
from launch.recipe_checks import STAGE_KEYS, dataset_specs
from reward_funcs.cli import REPO

STATUS = "status.json"
LOCAL_ADDRESS = "http://127.0.0.1:8265"  # what a dry run prints when no cluster is named
RUN_PATHS = ("ckpt.path", "ckpt.output_dir", "logger.tensorboard_dir")  # each stage's own, none at the top


@dataclass
class Stage:
    index: int  # 1-based
    count: int
    name: str
    folder: Path
    recipe: Recipe  # resolved for `folder`
    done: bool = False  # finished in an earlier launch: its job SUCCEEDED and its outputs exist
    resume: bool = False  # submitted before and not finished: continued with --ckpt.load_enable

    def title(self) -> str:
        return f"stage {self.index}/{self.count} ({self.name})"


def is_curriculum(recipe: Recipe) -> bool:
    return bool(recipe.meta.get("stages"))


def folder(run: Path, index: int) -> Path:
    return run / f"stage-{index}"


def uses_critic(flags: dict) -> bool:
    """Whether OpenRLHF trains a critic for these flags: the gae estimator (its default)."""
    return flatten(flags).get("algo.advantage.estimator", "gae") == "gae"


def band_file(meta: dict, band: str) -> str:
    """The training file of difficulty band `band` in the dataset recipe.dataset makes with --bands."""
    for spec in dataset_specs(meta):
        args = [str(a) for a in spec.get("args") or []]
        if "--bands" in args:
            fmt = args[args.index("--format") + 1] if "--format" in args[:-1] else "parquet"
            return f"{spec['out']}/train-{band}.{fmt}"
    raise ValueError(f"no recipe.dataset makes band {band!r}")  # recipe_checks.check_stages refuses this first


def stage_recipes(top: Recipe, run: Path) -> list[Recipe]:
    """Every stage's recipe (not yet resolved for its folder): the curriculum's flags with the stage's changes, and
    from the second stage on, the previous stage's final model and critic."""
    specs = top.meta["stages"]
    flags = []
    for spec in specs:
        changed = merge(top.flags, {k: v for k, v in spec.items() if k not in STAGE_KEYS})
        sets = {
            "data.prompt_dataset": band_file(top.meta, spec["band"]) if "band" in spec else spec.get("dataset"),
            "data.max_samples": spec.get("prompts"),
            "train.num_episodes": spec.get("episodes"),
        }
        for key, value in sets.items():
            if value is not None:
                changed = runs_set(changed, key, ",".join(value) if isinstance(value, list) else value)
        flags.append(changed)
    recipes = []
    base = {k: v for k, v in top.meta.items() if k not in ("stages", "run_dir")}
    for index, (spec, mine) in enumerate(zip(specs, flags, strict=True), 1):
        if index > 1:
            previous = folder(run, index - 1) / "final"
            mine = runs_set(mine, "actor.model_name_or_path", str(previous))
            if uses_critic(mine) and uses_critic(flags[index - 2]):
                mine = runs_set(mine, "critic.model_name_or_path", f"{previous}_critic")
        if index < len(specs) and uses_critic(mine) and uses_critic(flags[index]):
            mine = runs_set(mine, "critic.save_value_network", True)  # the next stage starts from it
        run_name = flatten(top.flags).get("logger.wandb.run_name")
        if run_name:
            mine = runs_set(mine, "logger.wandb.run_name", f"{run_name}-stage-{index}")
        stage = {"index": index, "count": len(specs), "name": spec.get("name", f"stage-{index}")}
        recipes.append(Recipe(top.name, top.path, mine, {**base, "stage": stage}, dict(top.secrets)))
    return recipes


def runs_set(flags: dict, dotted: str, value) -> dict:
    """A copy of `flags` with the dotted flag set (launch.runs sets them in place, on a recipe it owns)."""
    *groups, leaf = dotted.split(".")
    nested: dict = {leaf: value}
    for group in reversed(groups):
        nested = {group: nested}
    return merge(flags, nested)


def resolve_top(recipe: Recipe, run: Path, reward_urls: list[str] | None) -> Recipe:
    """The curriculum as its run folder keeps it: resolved as a plain run is (absolute data, services, secrets out
    of it), without the folders that are each stage's own."""
    resolved = runs.resolve(recipe, run, reward_urls=reward_urls)
    flat = {k: v for k, v in resolved.flat().items() if k not in RUN_PATHS}
    flags: dict = {}
    for key, value in flat.items():
        flags = runs_set(flags, key, value)
    return Recipe(resolved.name, resolved.path, flags, resolved.meta, resolved.secrets)


def finished(stage_folder: Path) -> bool:
    """A stage that finished: its last job SUCCEEDED and its outputs exist."""
    try:
        status = json.loads((stage_folder / STATUS).read_text()).get("status")
        recipe = runs.load(stage_folder)
    except (OSError, ValueError, AttributeError, RecipeError):
        return False
    return status == "SUCCEEDED" and not missing_outputs(recipe)


def outputs(recipe: Recipe) -> list[Path]:
    """What a stage leaves for the next one: its final model, and its critic when it saves one."""
    final = Path(recipe.get("ckpt.output_dir"))
    saves_critic = recipe.get("critic.save_value_network") and uses_critic(recipe.flags)
    return [final, Path(f"{final}_critic")] if saves_critic else [final]


def missing_outputs(recipe: Recipe) -> list[Path]:
    return [path for path in outputs(recipe) if not (path / "config.json").is_file()]


def plan(top: Recipe, run: Path, reward_urls: list[str] | None = None, resume: bool = False) -> list[Stage]:
    """Every stage of the curriculum in `run`, resolved for its folder. On `resume`: the stages that finished are
    `done`; the first that did not, if it was submitted, continues from its saved recipe (`resume`)."""
    stages = []
    recipes = stage_recipes(top, run)
    for index, recipe in enumerate(recipes, 1):
        where = folder(run, index)
        name = recipe.meta["stage"]["name"]
        if resume and finished(where):
            stages.append(Stage(index, len(recipes), name, where, runs.load(where), done=True))
        elif resume and (where / "recipe.yaml").is_file() and not any(s.resume for s in stages):
            saved = runs.resolve(runs.load(where), where, reward_urls=reward_urls, resume=True)
            stages.append(Stage(index, len(recipes), name, where, saved, resume=True))
        else:
            resolved = runs.resolve(recipe, where, reward_urls=reward_urls)
            stages.append(Stage(index, len(recipes), name, where, resolved))
    return stages


# ---- preflight ---------------------------------------------------------------------------------------------------


def produced(stages: list[Stage]) -> dict[str, str]:
    """Each output an earlier stage will write -> the model it is trained from (models.produced)."""
    found = {}
    for stage in stages:
        if stage.done:
            continue
        actor = stage.recipe.get("actor.model_name_or_path")
        critic = stage.recipe.get("critic.model_name_or_path") or actor
        for path in outputs(stage.recipe):
            found[str(path)] = critic if path.name.endswith("_critic") else actor
    return found


def chain_checks(stages: list[Stage], address: str | None) -> list[Check]:
    """The `stages` lines: the stages in order, what each starts from (there, for a stage that finished, or to be
    written by the stage before it), evaluations a stage's `prompts` cut short, and what a cluster needs."""
    checks = [ok("stages", f"{len(stages)} stages, one after another: {', '.join(s.name for s in stages)}")]
    for before, stage in itertools.pairwise(stages):
        if stage.done:
            continue
        made = " and ".join(p.name for p in outputs(before.recipe))
        where = "there" if before.done else "which it will write"
        checks.append(ok("stages", f"{stage.title()} starts from {before.title()}'s {made}, {where}"))
    for stage in stages:
        capped = eval_cap(stage.recipe)
        if capped and not stage.done:
            checks.append(warn("stages", capped))
    if address:
        checks.append(
            warn(
                "stages",
                "on a cluster a stage's model is written on the node of the actor's first rank and read by every "
                "node of the next stage: keep the runs folder (--runs-dir) on a filesystem every node mounts at the "
                "same path; the probe checks before each stage that every node sees the previous stage's model",
            )
        )
    return checks


def eval_cap(recipe: Recipe) -> str | None:
    """OpenRLHF cuts eval.dataset to data.max_samples too: say so when a stage's `prompts` would shorten it."""
    from data_tools.output import count_rows, dataset_files

    cap = recipe.get("data.max_samples")
    tests = [p for p in dataset_files(recipe.get("eval.dataset"), REPO) if p.is_file()]
    rows = sum(count_rows(p) for p in tests)
    if cap is None or not tests or rows <= cap:
        return None
    name = recipe.meta["stage"]["name"]
    return f"stage {name}: data.max_samples {cap:,} also cuts its evaluation to {cap:,} of the {rows:,} test prompts"


def stage_checks(
    stages: list[Stage], gpus, memory, config=True, files=True, address=None, probe_services=True
) -> list[Check]:
    """Preflight of every stage still to run, each after a line naming it: what needs no data (`config`, then the
    `stages` lines) and what reads the data and the services (`files`), as for a plain run."""
    checks = []
    with models.produced(produced(stages)):
        for stage in stages:
            if stage.done:
                checks.append(Check("stage", "done", f"{stage.title()}: finished, {stage.folder}"))
                continue
            checks.append(Check("stage", "----", f"{stage.title()}: {stage.folder}"))
            found, parsed = preflight.check_config(stage.recipe, gpus, memory) if config else ([], None)
            checks += found
            if files and (parsed is not None or not config):
                parsed = parsed or stage.recipe.args()
                checks += preflight.check_files(stage.recipe, parsed, REPO, probe_services)
    return checks + (chain_checks(stages, address) if config else [])


# ---- running ---------------------------------------------------------------------------------------------------


def commands(stages: list[Stage], address: str, python: str) -> str:
    """Every stage's `ray job submit`, each after a comment naming the stage: a script that submits them all (it
    does not wait for one to end before the next)."""
    lines = []
    for stage in stages:
        if stage.done:
            continue
        env = jobs.runtime_env(stage.recipe)
        lines += [f"# {stage.title()}: {stage.folder}", jobs.submit_command(address, env, python, stage.recipe.argv())]
    return "\n".join(lines)


def dry_run(recipe: Recipe, args, resume: Path | None) -> int:
    """Every check that needs no GPU, for every stage, on stderr; then every stage's `ray job submit` on stdout."""
    services = session.reward_services(recipe, args.address)
    run = resume or runs.next_run_dir(args.runs_dir, recipe.name)
    urls = services and services.urls
    top = recipe if resume else resolve_top(recipe, run, urls)
    stages = plan(top, run, urls, resume=resume is not None)
    if all(s.done for s in stages):
        print(f"every stage of {run} has finished: nothing to resume", file=sys.stderr, flush=True)
        return 0
    checks = stage_checks(stages, None, None, address=args.address, probe_services=False)
    if not session.passes(checks, out=sys.stderr):
        return 1
    print(commands(stages, args.address or LOCAL_ADDRESS, jobs.python_for(args.address, args.python)), flush=True)
    return 0


def launch(recipe: Recipe, args, resume: Path | None = None) -> int:
    """Check every stage still to run, then submit them one after another, each once the one before SUCCEEDED."""
    if args.dry_run:
        return dry_run(recipe, args, resume)
    services = session.reward_services(recipe, args.address)
    python = jobs.python_for(args.address, args.python)
    run = resume or runs.next_run_dir(args.runs_dir, recipe.name)
    urls = services and services.urls
    top = recipe if resume else resolve_top(recipe, run, urls)
    stages = plan(top, run, urls, resume=resume is not None)
    todo = [s for s in stages if not s.done]
    if not todo:
        print(f"every stage of {run} has finished: nothing to resume", flush=True)
        return 0
    if args.address:  # the probe checks that every node sees the data: make it first, once the cluster answers
        cluster.reachable(args.address)
        for stage in todo:
            session.ensure_dataset(stage.recipe)
    gpus, memory, nodes = session.cluster_facts(args.address, todo[0].recipe, python)
    if not session.passes(stage_checks(stages, gpus, memory, files=False, address=args.address) + nodes):
        return 1
    for stage in todo:
        session.ensure_dataset(stage.recipe)
    with session.running(services):
        if not session.passes(stage_checks(stages, gpus, memory, config=False)):
            return 1
        if not prepare(todo, args, python):
            return 1
        with session.ray_head(args.address, gpus, python) as address:
            if not resume:
                run.mkdir(parents=True)
                runs.save(run, top, commands(stages, address, python))
            return run_stages(todo, run, address, python, on_cluster=args.address is not None, services=services)


def prepare(todo: list[Stage], args, python: str) -> bool:
    """The GPU runtime for the first stage still to run (session.prepare_runtime), and the attention it settles
    on for every stage."""
    first = todo[0].recipe
    prepared = session.prepare_runtime(first, args.address, python, install=not args.no_install)
    if prepared is None:
        return False
    changed = [f"{k}={v}" for k, v in prepared.flat().items() if first.flat().get(k) != v]
    for stage in todo:
        stage.recipe = apply_overrides(stage.recipe, changed) if changed else stage.recipe
    return True


def run_stages(todo: list[Stage], run: Path, address: str, python: str, on_cluster: bool, services=None) -> int:
    """Submit each stage once the one before it SUCCEEDED and left its outputs; stop at the first that did not.
    The reward services started for the run are restarted for each stage with its environment (jobs.reward_env:
    the stage's own journal folder)."""
    for stage in todo:
        print(f"==== {stage.title()}: {stage.folder}", flush=True)
        if services:
            services.restart(jobs.reward_env(stage.recipe))
        if on_cluster and stage.index > 1:  # every node must see the model the previous stage wrote
            nodes = probe.node_checks(cluster.cluster_probe(address, stage.recipe, python))
            if not session.passes(nodes):
                return 1
        fresh = not (stage.resume or stage.folder.is_dir())  # a folder left by a launch that stopped before submitting
        status, _ = session.submit_run(stage.recipe, stage.folder, address, python, new_folder=fresh)
        record_status(stage.folder, status)
        missing = missing_outputs(stage.recipe) if status == "SUCCEEDED" else []
        if status != "SUCCEEDED" or missing:
            why = f"ended {status}" if not missing else f"SUCCEEDED but left no {', '.join(map(str, missing))}"
            print(
                f"{stage.title()} {why}: no later stage was submitted; continue with "
                f"python -m launch train --resume {run}",
                file=sys.stderr,
                flush=True,
            )
            return 1
    print(f"every stage of {run} finished", flush=True)
    return 0


def record_status(stage_folder: Path, status: str) -> None:
    """status.json: how the stage's last job ended, written whole."""
    path = stage_folder / STATUS
    tmp = path.with_name(f".{STATUS}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"status": status, "time": time.time()}) + "\n")
    tmp.replace(path)


def preflight_lines(recipe: Recipe, args) -> int:
    """`launch preflight` on a curriculum: every stage's checks, printed; 1 when one of them fails."""
    run = runs.next_run_dir(args.runs_dir, recipe.name)
    stages = plan(resolve_top(recipe, run, None), run)
    python = jobs.python_for(args.address, args.python)
    gpus, memory, nodes = session.cluster_facts(args.address, stages[0].recipe, python)
    checks = stage_checks(stages, gpus, memory, address=args.address) + nodes
    for c in checks:
        print(c.line(), flush=True)
    return 1 if preflight.failed(checks) else 0
