"""A run folder and the resolved recipe it holds.

`resolve` turns a recipe into exactly what one run submits: absolute data paths, the run's own checkpoint, log
and output folders, the reward services' URLs, W&B's run name, and on resume `ckpt.load_enable`. The run folder
keeps that resolved recipe (`recipe.yaml`) beside the command it became (`command.sh`) and the jobs submitted
(`job.json`); `--resume RUN` loads the resolved recipe again and resolves it once more, so a resumed run submits
the original command plus `--ckpt.load_enable`.

    runs/<recipe>/<timestamp>/
      recipe.yaml  command.sh  job.json  tensorboard/  journal/  ckpt/  final/
"""

from __future__ import annotations

import copy
import datetime
import json
import os
from pathlib import Path

import yaml

from data_tools.output import dataset_files
from launch.jobs import is_secret
from launch.recipe import OURS, Recipe, RecipeError
from reward_funcs import tokens
from reward_funcs.cli import REPO

WANDB_PLACEHOLDER = "from-env"  # OpenRLHF logs in with WANDB_API_KEY from the environment when it is set
WANDB_PROJECT = "tinyzero-openrlhf"
# The run's own settings, put last in the recipe (and so in the command line) in this order: resuming adds
# `ckpt.load_enable` at the very end, and resolving a resolved recipe again changes nothing else.
RUN_GROUPS = ("logger", "ckpt")


def next_run_dir(runs_root: Path, name: str, now: datetime.datetime | None = None) -> Path:
    """runs/<recipe>/<timestamp>/, a folder that does not exist yet (`-2`, `-3`... within the same second)."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(runs_root).resolve() / name / stamp
    run, n = base, 1
    while run.exists():
        n += 1
        run = base.with_name(f"{stamp}-{n}")
    return run


def new_run_dir(runs_root: Path, name: str, now: datetime.datetime | None = None) -> Path:
    """A new, empty run folder; never an existing one."""
    run = next_run_dir(runs_root, name, now)
    run.mkdir(parents=True)
    return run


def _set(flags: dict, dotted: str, value) -> None:
    *groups, leaf = dotted.split(".")
    for group in groups:
        flags = flags.setdefault(group, {})
    flags[leaf] = value


def resolve(
    recipe: Recipe,
    run: Path,
    *,
    reward_urls: list[str] | None = None,
    resume: bool = False,
    wandb: bool = True,
    repo: Path = REPO,
) -> Recipe:
    """The recipe as run `run` submits it. Data paths become absolute (the job runs in Ray's copy of the
    repository); checkpoints, logs and the final model go into `run`; `reward_urls` (services started for this
    run) replace reward.remote_url; a W&B key given in the recipe moves to the job's environment, and W&B logging
    is on whenever a key is at hand (`wandb=False`: never, as for smoke runs)."""
    flags = copy.deepcopy(recipe.flags)
    meta, secrets = _take_secrets(recipe.meta, dict(recipe.secrets))
    for key in ("data.prompt_dataset", "eval.dataset"):
        if recipe.get(key):
            _set(flags, key, ",".join(str(p) for p in dataset_files(recipe.get(key), repo)))
    if reward_urls:
        _set(flags, "reward.remote_url", ",".join(reward_urls))
    _reward_token(flags, secrets)
    _set(flags, "ckpt.path", str(run / "ckpt"))
    _set(flags, "ckpt.output_dir", str(run / "final"))
    _set(flags, "logger.tensorboard_dir", str(run / "tensorboard"))
    if wandb:
        _wandb(flags, recipe, run, secrets)
    else:
        flags.get("logger", {}).get("wandb", {}).pop("key", None)
    if resume:
        _set(flags, "ckpt.load_enable", True)
    flags = {**{k: v for k, v in flags.items() if k not in RUN_GROUPS}, **{k: flags[k] for k in RUN_GROUPS}}
    return Recipe(recipe.name, recipe.path, flags, {**meta, "run_dir": str(run)}, secrets)


def _wandb(flags: dict, recipe: Recipe, run: Path, secrets: dict) -> None:
    """W&B's key into `secrets` and the placeholder OpenRLHF reads as "from the environment" into `flags`."""
    key = recipe.get("logger.wandb.key")
    if key not in (None, False, WANDB_PLACEHOLDER):
        secrets["WANDB_API_KEY"] = str(key)  # a key never goes on a command line or into a saved file
    if key == WANDB_PLACEHOLDER and not (secrets.get("WANDB_API_KEY") or os.environ.get("WANDB_API_KEY")):
        raise RecipeError("this run logs to W&B and its key is never saved: export WANDB_API_KEY=... and run again")
    if secrets.get("WANDB_API_KEY") or os.environ.get("WANDB_API_KEY"):
        _set(flags, "logger.wandb.key", WANDB_PLACEHOLDER)
        flags["logger"]["wandb"].setdefault("run_name", f"{recipe.name}-{run.name}")
        flags["logger"]["wandb"].setdefault("project", WANDB_PROJECT)


def _reward_token(flags: dict, secrets: dict) -> None:
    """A reward service's token written in reward.remote_url (`?token=...`) moves to the job's environment as
    REWARD_TOKEN; the URL keeps `${REWARD_TOKEN}`, which the job's shell expands. A resolved recipe read back
    (or a recipe written with the placeholder) takes the token from this shell."""
    urls = flags.get("reward", {}).get("remote_url")
    if not isinstance(urls, str) or "token=" not in urls:
        return
    replaced = [tokens.token_out_of_url(url) for url in urls.split(",")]
    found = {token for _, token in replaced if token}
    if len(found) > 1:
        raise RecipeError("reward.remote_url holds different tokens: give every reward service the same one")
    if found:
        secrets[tokens.TOKEN_ENV] = found.pop()
    _set(flags, "reward.remote_url", ",".join(url for url, _ in replaced))
    if tokens.URL_PLACEHOLDER in flags["reward"]["remote_url"]:
        token = secrets.get(tokens.TOKEN_ENV) or os.environ.get(tokens.TOKEN_ENV)
        if not token:
            raise RecipeError(
                "reward.remote_url needs the reward service's token, which is never saved: export REWARD_TOKEN=... "
                "and run again"
            )
        tokens.check_token(token, "reward.remote_url or $REWARD_TOKEN")
        secrets[tokens.TOKEN_ENV] = token


def _take_secrets(meta: dict, secrets: dict) -> tuple[dict, dict]:
    """Move the secret variables of `recipe.env` (names holding KEY, TOKEN, SECRET or PASSWORD) out of the recipe,
    keeping their names in `recipe.secret_env`; a resolved recipe read back takes them from this shell."""
    env = dict(meta.get("env") or {})
    names = sorted({*meta.get("secret_env", []), *(name for name in env if is_secret(name))})
    missing = []
    for name in names:
        value = env.pop(name, None)
        value = secrets.get(name) or os.environ.get(name) if value is None else value
        if value is None:
            missing.append(name)
        else:
            secrets[name] = str(value)
    if missing:
        raise RecipeError(
            f"this run needs the secret {', '.join(missing)}, which is never saved: export "
            f"{' '.join(m + '=...' for m in missing)} and run again"
        )
    if not names:
        return meta, secrets
    return {**meta, "env": env, "secret_env": names}, secrets


def _write(path: Path, text: str) -> None:
    """Write `path` whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def save(run: Path, recipe: Recipe, command: str) -> None:
    """Keep the resolved recipe and the command it became, before anything is submitted."""
    saved = {OURS: {**recipe.meta, "name": recipe.name, "source": str(recipe.path)}, **recipe.flags}
    _write(run / "recipe.yaml", yaml.safe_dump(saved, sort_keys=False))
    _write(run / "command.sh", command + "\n")


def add_job(run: Path, job: dict) -> None:
    """Add a submitted job to the run's `job.json` (a resumed run has several)."""
    record = run / "job.json"
    jobs = json.loads(record.read_text()).get("jobs", []) if record.is_file() else []
    _write(record, json.dumps({"jobs": [*jobs, job]}, indent=2) + "\n")


def load(run: Path) -> Recipe:
    """The resolved recipe a run folder keeps."""
    path = Path(run) / "recipe.yaml"
    saved = yaml.safe_load(path.read_text()) if path.is_file() else None
    meta = saved.get(OURS) if isinstance(saved, dict) else None
    if not isinstance(meta, dict) or "run_dir" not in meta:
        raise RecipeError(f"{run} is not a run folder (no resolved recipe.yaml): pass runs/<recipe>/<timestamp>")
    flags = {k: v for k, v in saved.items() if k != OURS}
    return Recipe(meta["name"], Path(meta.get("source", run)), flags, meta)
