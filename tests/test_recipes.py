"""Recipes: every shipped recipe and ablation variant is a command line OpenRLHF 0.11.2 accepts."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import REPO

from launch.estimates import training_steps
from launch.openrlhf_cli import CommandLineError, check, flag_names
from launch.recipe import RecipeError, apply_overrides, flatten, load, load_ablation, merge, to_argv
from launch.recipe_checks import band_names, dataset_specs

RECIPES = sorted(p.relative_to(REPO) for p in (REPO / "recipes").glob("*/*.yaml") if p.parent.name != "ablations")
ABLATIONS = sorted(p.relative_to(REPO) for p in (REPO / "recipes" / "ablations").glob("*.yaml"))
VARIANTS = [(a, r) for a in ABLATIONS for r in load_ablation(REPO / a)]


def test_the_recipes_the_project_promises_exist():
    names = {p.name for p in RECIPES}
    for size in ("0.5b", "1.5b", "3b", "7b"):
        assert f"qwen2.5-{size}-ppo.yaml" in names
    for algo in ("grpo", "reinforce", "reinforce-baseline", "rloo", "dr-grpo"):
        assert f"qwen2.5-3b-{algo}.yaml" in names
    assert {
        "qwen2.5-3b-instruct-ppo.yaml",
        "qwen2.5-math-1.5b-ppo.yaml",
        "qwen2.5-1.5b-ppo-1gpu.yaml",
        "qwen2.5-3b-ppo-2x80gb.yaml",
    } <= names
    assert Path("recipes/multiply/qwen2.5-3b-ppo.yaml") in RECIPES
    assert {"qwen2.5-3b-ppo-curriculum.yaml", "qwen2.5-3b-grpo-dynamic-sampling.yaml"} <= names
    assert Path("recipes/mixed/qwen2.5-3b-ppo.yaml") in RECIPES
    assert {p.stem for p in ABLATIONS} == {
        "model-size",
        "base-vs-instruct",
        "algorithm",
        "curriculum",
        "dynamic-sampling",
    }


@pytest.mark.parametrize("path", RECIPES, ids=str)
def test_recipe_is_accepted_by_openrlhfs_parser(path):
    recipe = load(REPO / path)
    argv = to_argv(recipe.flags)
    assert all(t in flag_names() for t in argv if t.startswith("--"))  # exact names, not prefixes
    args = check(argv)  # OpenRLHF's post-parse checks too
    assert args.reward.remote_url == ["reward_funcs/openrlhf_reward.py"]
    assert args.data.label_key == "label" and args.eval.temperature == 0.0
    specs = dataset_specs(recipe.meta)
    assert recipe.meta["description"] and specs and all(s["tool"] in ("countdown", "multiply") for s in specs)


@pytest.mark.parametrize("ablation, recipe", VARIANTS, ids=lambda x: getattr(x, "name", str(x)))
def test_ablation_variant_is_accepted(ablation, recipe):
    check(to_argv(recipe.flags))


def test_ablation_variants_state_only_what_changes():
    base = load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml")
    variants = {r.meta["variant"]: r for r in load_ablation(REPO / "recipes/ablations/model-size.yaml")}
    small, full = flatten(variants["qwen2.5-0.5b"].flags), flatten(base.flags)
    assert {k for k in small.keys() | full.keys() if small.get(k) != full.get(k)} == {"actor.model_name_or_path"}
    assert flatten(variants["qwen2.5-3b"].flags) == flatten(base.flags)


def test_the_dynamic_sampling_variant_equals_its_recipe():
    variants = {r.meta["variant"]: r for r in load_ablation(REPO / "recipes/ablations/dynamic-sampling.yaml")}
    standalone = load(REPO / "recipes/countdown/qwen2.5-3b-grpo-dynamic-sampling.yaml")
    assert flatten(variants["grpo-dynamic-sampling"].flags) == flatten(standalone.flags)
    plain = flatten(variants["grpo"].flags)
    assert {k for k, v in flatten(standalone.flags).items() if plain.get(k) != v} == {
        "algo.dynamic_filtering_enable",
        "algo.dynamic_filtering_range",
    }


@pytest.mark.parametrize("variant", ["grpo", "reinforce", "reinforce-baseline", "rloo", "dr-grpo"])
def test_algorithm_variants_equal_their_recipes(variant):
    variants = {r.meta["variant"]: r for r in load_ablation(REPO / "recipes/ablations/algorithm.yaml")}
    standalone = load(REPO / f"recipes/countdown/qwen2.5-3b-{variant}.yaml")
    assert flatten(variants[variant].flags) == flatten(standalone.flags)


def test_to_argv_rules():
    flags = {
        "actor": {"adam": {"lr": 1.0e-6}, "model_name_or_path": "m"},
        "train": {"colocate_all": True},
        "ds": {"packing_samples": False, "zero_stage": None},
        "algo": {"dynamic_filtering_range": [0.0, 1.0]},
    }
    assert to_argv(flags) == [
        "--actor.adam.lr",
        "1e-06",
        "--actor.model_name_or_path",
        "m",
        "--train.colocate_all",
        "--algo.dynamic_filtering_range",
        "0.0",
        "1.0",
    ]


def test_overrides_are_read_as_yaml():
    recipe = load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml")
    changed = apply_overrides(
        recipe, ["actor.adam.lr=5e-7", "train.colocate_all=false", "critic=null", "recipe.hardware.gpus=4"]
    )
    assert changed.get("actor.adam.lr") == 5e-7 and changed.get("train.colocate_all") is False
    assert "critic.adam.lr" not in changed.flat() and changed.meta["hardware"]["gpus"] == 4
    assert recipe.get("actor.adam.lr") == 1e-6  # the original is untouched
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        apply_overrides(recipe, ["actor.adam.lr"])
    # text that is not YAML (an unclosed bracket, a tab) is taken as the string it is, not a traceback
    odd = apply_overrides(recipe, ["data.input_template=[Q: {}", "logger.wandb.group=a\tb"])
    assert odd.get("data.input_template") == "[Q: {}" and odd.get("logger.wandb.group") == "a\tb"


def test_merge_deletes_with_null():
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": None, "d": 3}}) == {"a": {"b": 1, "d": 3}}


@pytest.mark.parametrize(
    "text, message",
    [
        ("pretrain: Qwen/Qwen2.5-3B\n", "old flat OpenRLHF flag, now actor.model_name_or_path"),
        ("actor: [1, 2\n", "not valid YAML"),
        ("- a\n- b\n", "a recipe is a mapping"),
        ("base: x.yaml\nvariants: {a: {}}\n", "is an ablation"),
    ],
)
def test_bad_recipes_name_the_fix(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=message):
        load(path)


def test_old_flag_names_are_refused_with_the_new_name():
    with pytest.raises(CommandLineError, match="--pretrain: it is --actor.model_name_or_path"):
        check(["--pretrain", "Qwen/Qwen2.5-3B"])


def test_prefixes_are_refused_though_argparse_would_accept_them():
    with pytest.raises(CommandLineError, match="--actor.model_name"):
        check(["--actor.model_name", "Qwen/Qwen2.5-3B"])


@pytest.mark.parametrize(
    "ablation, variant, standalone",
    [("algorithm", v, f"qwen2.5-3b-{v}") for v in ("grpo", "reinforce", "reinforce-baseline", "rloo", "dr-grpo")]
    + [("model-size", f"qwen2.5-{s}", f"qwen2.5-{s}-ppo") for s in ("0.5b", "1.5b", "3b", "7b")]
    + [("base-vs-instruct", "instruct", "qwen2.5-3b-instruct-ppo")]
    + [("curriculum", "easy-to-hard", "qwen2.5-3b-ppo-curriculum")]
    + [("dynamic-sampling", "grpo-dynamic-sampling", "qwen2.5-3b-grpo-dynamic-sampling")],
)
def test_variants_quote_the_same_published_figures_as_their_recipes(ablation, variant, standalone):
    variants = {r.meta["variant"]: r for r in load_ablation(REPO / f"recipes/ablations/{ablation}.yaml")}
    recipe = load(REPO / f"recipes/countdown/{standalone}.yaml")
    assert [e["source"] for e in variants[variant].meta.get("expected") or []] == [
        e["source"] for e in recipe.meta.get("expected") or []
    ]


# TinyZero's scripts/train_tiny_zero.sh and veRL's code defaults (../shared/reference/tinyzero.md), as OpenRLHF reads
# them: (attribute path in OpenRLHF's parsed arguments, TinyZero's value).
TINYZERO_PPO = [
    ("actor.adam.lr", 1e-6),
    ("critic.adam.lr", 1e-5),
    ("actor.adam.betas", [0.9, 0.999]),  # veRL's AdamW: betas (0.9, 0.999), weight decay 0.01
    ("critic.adam.betas", [0.9, 0.999]),
    ("actor.adam.weight_decay", 0.01),
    ("critic.adam.weight_decay", 0.01),
    ("actor.lr_scheduler", "constant"),
    ("actor.lr_warmup_ratio", 0.0),
    ("actor.max_norm", 1.0),
    ("actor.eps_clip", 0.2),
    ("actor.entropy_coef", 0.001),
    ("critic.value_clip", 0.5),
    ("algo.advantage.estimator", "gae"),
    ("algo.advantage.gamma", 1.0),
    ("algo.advantage.lambd", 1.0),
    ("algo.kl.init_coef", 0.001),
    ("algo.kl.estimator", "k1"),
    ("rollout.batch_size", 256),
    ("rollout.n_samples_per_prompt", 1),
    ("rollout.temperature", 1.0),
    ("rollout.max_new_tokens", 1024),
    ("train.batch_size", 64),
    ("train.max_epochs", 1),
    ("train.num_episodes", 15),
    ("vllm.gpu_memory_utilization", 0.4),
    ("eval.steps", 100),
    ("ckpt.save_steps", 100),
]


def test_the_main_recipe_is_tinyzeros_run_as_openrlhf_reads_it():
    args = check(to_argv(load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml").flags))
    for dotted, value in TINYZERO_PPO:
        got = args
        for part in dotted.split("."):
            got = getattr(got, part)
        got = list(got) if isinstance(got, tuple) else got
        assert got == value, f"{dotted}: {got!r}, TinyZero: {value!r}"


PROMPTS = {"countdown": 327_680, "multiply": 32_768}  # what data_tools writes by default: TinyZero's sizes


def training_prompts(recipe) -> int:
    """The training prompts of the recipe's data as data_tools makes it from recipe.dataset: TinyZero's sizes by
    default, --train-size per band with --bands."""
    total = 0
    for spec in dataset_specs(recipe.meta):
        args = [str(a) for a in spec.get("args") or []]
        size = int(args[args.index("--train-size") + 1]) if "--train-size" in args else PROMPTS[spec["tool"]]
        total += size * max(1, len(band_names(recipe.meta)))
    return total


@pytest.mark.parametrize("path", RECIPES, ids=str)
def test_the_comments_state_the_recipes_own_steps_and_algorithm(path):
    """The step count in the num_episodes comment is OpenRLHF's for the recipe's dataset (at most that many with
    dynamic filtering), and the algorithm header names the recipe's estimator and where its KL goes."""
    text = (REPO / path).read_text()
    args = load(REPO / path).args()
    found = re.search(r"num_episodes:.*# .*?(at most )?([\d,]+) steps of ([\d,]+) prompts", text)
    at_most, steps, prompts = found.groups()
    assert bool(at_most) == args.algo.dynamic_filtering_enable
    assert int(prompts.replace(",", "")) == args.rollout.batch_size
    assert int(steps.replace(",", "")) == training_steps(args, training_prompts(load(REPO / path)))
    header = re.search(r"# ---- algorithm: (.*)", text).group(1)
    assert ("GAE" in header) == (args.algo.advantage.estimator == "gae"), header
    if args.algo.kl.init_coef == 0:
        assert "no KL" in header, header
    else:
        assert ("as a loss" in header) == bool(args.algo.kl.use_loss), header
        assert ("in the reward" in header) == (not args.algo.kl.use_loss), header


# ---- what a recipe may hold ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "/etc/x", "a/b", "..", ".hidden", "", "two words"])
def test_a_name_is_one_plain_folder(tmp_path, name):
    path = tmp_path / "r.yaml"
    path.write_text((REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml").read_text() + "\n# renamed\n")
    text = path.read_text().replace("recipe:\n", f"recipe:\n  name: {name!r}\n", 1)
    path.write_text(text)
    with pytest.raises(RecipeError, match="becomes a run folder"):
        load(path)


def test_an_ablation_variant_name_is_one_plain_folder(tmp_path):
    path = tmp_path / "ablation.yaml"
    path.write_text("base: recipes/countdown/qwen2.5-3b-ppo.yaml\nvariants:\n  ../../x: {}\n")
    with pytest.raises(RecipeError, match="becomes a run folder"):
        load_ablation(path)


def test_yaml_aliases_that_expand_too_far_are_refused(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 values
    path = tmp_path / "bomb.yaml"
    path.write_text("recipe:\n  description: bomb\n" + "\n".join(f"x{i}:\n  {line}" for i, line in enumerate(levels)))
    with pytest.raises(RecipeError, match="YAML aliases expanded"):
        load(path)


def test_recipes_of_two_tasks_never_share_a_run_folder():
    names = {load(REPO / p).name for p in RECIPES}
    assert len(names) == len(RECIPES)
    assert load(REPO / "recipes/multiply/qwen2.5-3b-ppo.yaml").name == "multiply-qwen2.5-3b-ppo"
    assert load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml").name == "countdown-qwen2.5-3b-ppo"


@pytest.mark.parametrize(
    "change, message",
    [
        ("rollout.batch_size=-1", "rollout.batch_size must be a whole number of at least 1"),
        ("train.micro_batch_size=0", "train.micro_batch_size must be a whole number of at least 1"),
        ("train.colocate_all=maybe", "train.colocate_all is a switch: give true or false"),
        ("actor.adam.lrr=1e-6", "did you mean --actor.adam.lr?"),
        ("recipe.hardware.gpus=two", "recipe.hardware.gpus must be a whole number of GPUs"),
        ("recipe.hardware.gpu_memory_gb=-80", "recipe.hardware.gpu_memory_gb must be GB per GPU"),
        ("recipe.reward_service.port=70000", "recipe.reward_service.port must be a port"),
        ("recipe.hardwre.gpus=2", "did you mean recipe.hardware?"),
        ("recipe.env.X=[1, 2]", "recipe.env must be NAME: value pairs"),
    ],
)
def test_bad_values_are_refused_with_the_fix(change, message):
    with pytest.raises((RecipeError, CommandLineError), match=re.escape(message)):
        apply_overrides(load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"), [change]).args()


def test_an_ablation_finds_its_base_from_any_working_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "launch", "sweep", str(REPO / "recipes/ablations/model-size.yaml"), "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ray job submit") == len(load_ablation(REPO / "recipes/ablations/model-size.yaml"))
