"""Recipes: one YAML per experiment whose keys are OpenRLHF's own dotted flags, plus a `recipe:` section of ours.

    actor:                          ->  --actor.model_name_or_path Qwen/Qwen2.5-3B --actor.adam.lr 1e-06
      model_name_or_path: Qwen/Qwen2.5-3B
      adam: {lr: 1.0e-6}
    train: {colocate_all: true}     ->  --train.colocate_all          (true is a bare switch)
    ds: {packing_samples: false}    ->  (nothing: false and null are left out)
    algo: {dynamic_filtering_range: [0.0, 1.0]}  ->  --algo.dynamic_filtering_range 0.0 1.0

`to_argv` is the only place that knows how YAML becomes flags, and `Recipe.argv` the only place that calls it:
preflight parses that argv with OpenRLHF's parser (`Recipe.args`), the launcher submits it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from launch.recipe_checks import RecipeError, check_meta, check_name, check_size
from reward_funcs.cli import REPO

OURS = "recipe"  # the top-level section that is not OpenRLHF's

__all__ = ["OURS", "Recipe", "RecipeError", "apply_overrides", "flatten", "load", "load_ablation", "merge", "to_argv"]


@dataclass
class Recipe:
    name: str
    path: Path
    flags: dict  # nested OpenRLHF flags
    meta: dict = field(default_factory=dict)  # the `recipe:` section
    secrets: dict = field(default_factory=dict, repr=False)  # variables for the job's environment, never saved

    def flat(self) -> dict[str, object]:
        return flatten(self.flags)

    def get(self, dotted: str, default=None):
        return self.flat().get(dotted, default)

    def argv(self) -> list[str]:
        """OpenRLHF's command line for this recipe."""
        return to_argv(self.flags)

    def args(self):
        """The arguments OpenRLHF's train_ppo_ray would run with (its parser and post-parse checks); raises
        CommandLineError when it would refuse them."""
        from launch.openrlhf_cli import check, check_values

        check_values(self.flat())
        return check(self.argv())


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _scalar(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_argv(flags: dict) -> list[str]:
    """OpenRLHF's argv for nested `flags`: true -> bare switch; false/None -> omitted; lists -> several values."""
    argv = []
    for key, value in flatten(flags).items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            argv += [f"--{key}", *(_scalar(v) for v in value)]
        else:
            argv += [f"--{key}", _scalar(value)]
    return argv


def merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` applied key by key (nested dicts merged; a null deletes the key)."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def set_dotted(tree: dict, dotted: str, value) -> dict:
    nested: dict = value
    for part in reversed(dotted.split(".")):
        nested = {part: nested}
    return merge(tree, nested)


def _value(text: str):
    """YAML's reading of `text`, except that numbers such as 5e-7 (a string to YAML 1.1) are numbers."""
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:  # not YAML (a tab, an unclosed bracket...): the text as it is
        return text
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            pass
    return value


def apply_overrides(recipe: Recipe, overrides: list[str]) -> Recipe:
    """`--set key=value` overrides: the value is read as YAML (`1e-6`, `true`, `[0, 1]`, `null` to remove)."""
    flags, meta = recipe.flags, recipe.meta
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise RecipeError(f"--set {item!r}: write KEY=VALUE, e.g. --set actor.adam.lr=5e-7")
        value = _value(text)
        if key.startswith(OURS + "."):
            meta = set_dotted(meta, key[len(OURS) + 1 :], value)
        else:
            flags = set_dotted(flags, key, value)
    check_meta(meta, f"--set on {recipe.path}")
    return Recipe(recipe.name, recipe.path, flags, meta, recipe.secrets)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file (see recipes/)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of OpenRLHF flag groups, plus `{OURS}:`")
    check_size(data, path)
    return data


def default_name(path: Path) -> str:
    """A recipe's run folder name: its folder and file, so recipes/countdown/x.yaml and recipes/multiply/x.yaml
    never share runs/<name>/."""
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem


def load(path: str | Path) -> Recipe:
    path = Path(path)
    data = _read(path)
    if "base" in data and "variants" in data:
        raise RecipeError(f"{path} is an ablation: use `python -m launch sweep {path}`")
    meta = data.pop(OURS, {}) or {}
    check_meta(meta, path)
    for key, value in data.items():
        if not isinstance(value, dict):
            from launch.openrlhf_cli import OLD_FLAGS

            new = OLD_FLAGS.get(key)
            hint = f"; {key!r} is an old flat OpenRLHF flag, now {new}" if new else ""
            raise RecipeError(
                f"{path}: top-level key {key!r} must group flags (e.g. actor: {{...}}), got {value!r}{hint}"
            )
    return Recipe(check_name(meta.get("name", default_name(path)), path), path, data, meta)


def load_ablation(path: str | Path) -> list[Recipe]:
    """An ablation: `base:` (a recipe path, relative to the repository) and `variants:` {name: changes}."""
    path = Path(path)
    data = _read(path)
    if "base" not in data or not isinstance(data.get("variants"), dict) or not data["variants"]:
        raise RecipeError(f"{path}: an ablation needs `base: <recipe>` and `variants: {{name: {{changed keys}}}}`")
    base = load(REPO / data["base"])  # relative to the repository, wherever the command runs
    recipes = []
    for name, changes in data["variants"].items():
        if not isinstance(changes, dict | None):
            raise RecipeError(f"{path}: variant {name!r} must be a mapping of the keys it changes")
        changes = dict(changes or {})
        meta = merge(base.meta, changes.pop(OURS, {}) or {})
        check_meta(meta, f"{path}, variant {name!r}")
        variant = check_name(f"{path.stem}-{name}", f"{path}, variant {name!r}")
        recipes.append(Recipe(variant, path, merge(base.flags, changes), {**meta, "variant": name}))
    return recipes
