"""What a recipe file may hold before anything else reads it: a name that is one folder, YAML aliases that stay
small, a `recipe:` section whose keys and types are ours, datasets the launcher may write, and a curriculum's
stages (launch/stages.py).

    from launch.recipe_checks import check_name, check_meta, check_size

Each check raises RecipeError (one line, exit status 2) naming the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from reward_funcs.cli import REPO, UsageError

MAX_VALUES = 100_000  # a recipe holds a few hundred; YAML aliases nested in aliases can expand to billions
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
DATA_TOOLS = ("countdown", "multiply")


class RecipeError(UsageError):
    """A recipe that cannot be used as written; the message names the file and the fix."""


def check_name(name, where) -> str:
    """`name` names a run folder under --runs-dir: one plain folder name, never `..` or a path."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise RecipeError(
            f"{where}: the name {name!r} becomes a run folder: use letters, digits, '.', '_' and '-' only "
            "(no '/', no '..')"
        )
    return name


def check_size(data, where) -> None:
    """Refuse YAML whose aliases expand beyond MAX_VALUES values (PyYAML shares an aliased node; everything that
    walks the recipe, merging and flattening it, would copy it each time)."""
    sizes: dict[int, int] = {}

    def size(node) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = MAX_VALUES + 1  # a node that holds itself is too big too
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                break
        sizes[id(node)] = total
        return total

    if size(data) > MAX_VALUES:
        raise RecipeError(f"{where}: its values (YAML aliases expanded) are more than {MAX_VALUES:,}: write them out")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _scalar(value) -> bool:
    return isinstance(value, (str, int, float, bool))


# our keys: what each may hold, and how to say so
KEYS = {
    "name": (lambda v: isinstance(v, str), "a name"),
    "description": (lambda v: isinstance(v, str), "text"),
    "task": (lambda v: isinstance(v, str), "a task name"),
    "variant": (lambda v: isinstance(v, str), "a name"),
    "source": (lambda v: isinstance(v, str), "a path"),
    "run_dir": (lambda v: isinstance(v, str), "a path"),
    "expected": (lambda v: isinstance(v, list), "a list of published figures"),
    "secret_env": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of names"),
    "smoke": (lambda v: isinstance(v, dict), "the smoke run's figures"),
    "env": (lambda v: isinstance(v, dict) and all(_scalar(x) for x in v.values()), "NAME: value pairs"),
    "hardware.gpus": (_positive_int, "a whole number of GPUs, e.g. 2"),
    "hardware.gpu_memory_gb": (_number, "GB per GPU, e.g. 80"),
    "dataset.tool": (lambda v: v in DATA_TOOLS, f"one of {', '.join(DATA_TOOLS)}"),
    "dataset.out": (lambda v: isinstance(v, str), "a folder under the repository, e.g. data/countdown"),
    "dataset.args": (lambda v: isinstance(v, list) and all(_scalar(a) for a in v), "a list of arguments"),
    "reward_service.instances": (_positive_int, "a whole number, at least 1"),
    "reward_service.workers": (_positive_int, "a whole number, at least 1"),
    "reward_service.port": (lambda v: _positive_int(v) and v < 65536, "a port, 1 to 65535"),
    "stages": (lambda v: isinstance(v, list) and v and all(isinstance(s, dict) for s in v), "a list of stages"),
    "stage": (lambda v: isinstance(v, dict), "the stage a run is (set by the launcher)"),
}
GROUPS = {"hardware", "dataset", "reward_service"}
# A stage's own keys (launch/stages.py); any other key of a stage is a group of OpenRLHF flags it changes.
STAGE_KEYS = {
    "name": (lambda v: isinstance(v, str), "a name"),
    "band": (lambda v: isinstance(v, str), "a difficulty band of recipe.dataset (data_tools.countdown --bands)"),
    "dataset": (lambda v: isinstance(v, str) or isinstance(v, list) and all(isinstance(p, str) for p in v), "files"),
    "prompts": (_positive_int, "a whole number of prompts, at least 1 (data.max_samples)"),
    "episodes": (_positive_int, "a whole number of passes over its prompts, at least 1 (train.num_episodes)"),
}
# Set by the launcher on every stage after the first: the previous stage's outputs.
CHAINED = ("actor.model_name_or_path", "critic.model_name_or_path")


def dataset_specs(meta: dict) -> list[dict]:
    """`recipe.dataset` as a list of {tool, out, args}: one mapping, or a list of them (a run on several)."""
    dataset = meta.get("dataset") or []
    return [d for d in (dataset if isinstance(dataset, list) else [dataset]) if d]


def check_meta(meta, where) -> None:
    """The `recipe:` section: known keys, each of the right type; a dataset the launcher may write."""
    if not isinstance(meta, dict):
        raise RecipeError(f"{where}: `recipe:` must be a mapping of our settings (name, dataset, hardware, ...)")
    for key, value in meta.items():
        if key == "dataset" and isinstance(value, list):  # several datasets: each one a mapping
            groups = value
        elif key in GROUPS:
            groups = [value]
        else:
            _check_key(key, value, where)
            continue
        for group in groups:
            if not isinstance(group, dict):
                raise RecipeError(f"{where}: recipe.{key} must be a mapping, got {group!r}")
            for k, v in group.items():
                _check_key(f"{key}.{k}", v, where)
    for dataset in dataset_specs(meta):
        if dataset.get("out") is not None:
            _check_dataset(dataset, where)
    if meta.get("stages"):
        check_stages(meta["stages"], meta, where)


def _check_key(dotted: str, value, where) -> None:
    if dotted not in KEYS:
        close = difflib.get_close_matches(dotted, [*GROUPS, *KEYS], n=1, cutoff=0.7)
        hint = f": did you mean recipe.{close[0]}?" if close else f"; ours are {', '.join(sorted(KEYS))}"
        raise RecipeError(f"{where}: recipe.{dotted} is not a setting of ours{hint}")
    valid, what = KEYS[dotted]
    if not valid(value):
        raise RecipeError(f"{where}: recipe.{dotted} must be {what}, got {value!r}")


def _check_dataset(dataset: dict, where) -> None:
    """`train` generates the data only into the repository, and never replaces a folder (no --force)."""
    out = (REPO / dataset["out"]).resolve()
    if Path(dataset["out"]).is_absolute() or not out.is_relative_to(REPO):
        raise RecipeError(
            f"{where}: recipe.dataset.out {dataset['out']!r} is outside the repository: the launcher generates "
            "data only under it (e.g. data/countdown); make other data with python -m data_tools yourself"
        )
    if "--force" in map(str, dataset.get("args") or []):
        raise RecipeError(f"{where}: recipe.dataset.args holds --force: the launcher never replaces data; remove it")


def band_names(meta: dict) -> list[str]:
    """The difficulty bands recipe.dataset makes (the value of `--bands` in its args), in order."""
    for spec in dataset_specs(meta):
        args = [str(a) for a in spec.get("args") or []]
        if "--bands" in args[:-1]:
            return [name.strip() for name in args[args.index("--bands") + 1].split(",")]
    return []


def check_stages(stages: list, meta: dict, where) -> None:
    """A curriculum's stages: each a mapping of our stage keys (STAGE_KEYS) and groups of OpenRLHF flags, with a
    plain name of its own, a band recipe.dataset makes, one source of prompts, and no model of its own after the
    first (a stage starts from the one before it)."""
    names = []
    for index, stage in enumerate(stages, 1):
        at = f"{where}: recipe.stages[{index}]"
        for key, value in stage.items():
            if key in STAGE_KEYS:
                valid, what = STAGE_KEYS[key]
                if not valid(value):
                    raise RecipeError(f"{at}.{key} must be {what}, got {value!r}")
            elif key == "recipe" or not isinstance(value, dict):
                close = difflib.get_close_matches(key, list(STAGE_KEYS), n=1, cutoff=0.7)
                hint = f": did you mean {close[0]}?" if close else f"; a stage holds {', '.join(STAGE_KEYS)}"
                raise RecipeError(f"{at}.{key} is neither a stage setting nor a group of OpenRLHF flags{hint}")
        names.append(check_name(stage.get("name", f"stage-{index}"), f"{at}.name"))
        if "band" in stage and "dataset" in stage:
            raise RecipeError(f"{at} gives both band and dataset: a stage trains on one of them")
        if "band" in stage and stage["band"] not in band_names(meta):
            made = ", ".join(band_names(meta)) or "none"
            raise RecipeError(
                f"{at}.band {stage['band']!r} is not a band recipe.dataset makes (it makes {made}): add it to "
                "recipe.dataset's --bands (python -m data_tools.countdown --bands easy,medium,hard)"
            )
        chained = [key for key in CHAINED if _dotted(stage, key) is not None]
        if index > 1 and chained:
            raise RecipeError(
                f"{at} sets {', '.join(chained)}: a stage after the first starts from the previous stage's model "
                "(and critic); remove it, or start a new run"
            )
    if len(set(names)) != len(names):
        raise RecipeError(f"{where}: recipe.stages has two stages named alike ({', '.join(names)}): name each once")


def _dotted(tree: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree
