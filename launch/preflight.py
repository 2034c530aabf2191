"""Preflight: catch what would fail on the GPUs before any GPU is requested.

    python -m launch preflight recipes/countdown/qwen2.5-3b-ppo.yaml

Each check prints one line, `ok`, `warn` or `FAIL` with the fix; any FAIL stops `train` before it submits.
  flags    every flag exists in OpenRLHF 0.11.2's parser by exact name, and its own post-parse checks pass
  gpus     what the recipe places (actor, critic, reference, vLLM engines) against the cluster's GPUs
  model    tensor-parallel sizes against the model's attention and KV heads; context length
  batches  rollout batch x samples per prompt against train batch, micro-batches, data-parallel size
  memory   an estimate of each GPU's peak use (model states by ZeRO stage, activations, vLLM's share)
  env      the job's environment variables: none of those train_ppo_ray sets itself
  disk     the checkpoints the run will write against the free space where it writes them (warns only)
  journal  the rollout journal's size over the full run against the checkpoints' (warns above 1%)
  data, reward   see launch/data_checks.py
The arithmetic is in launch/estimates.py; what is known of the cluster comes from launch/cluster.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from launch import estimates, jobs, models
from launch.check import Check, fail, failed, ok, warn
from launch.data_checks import check_data, check_http_reward
from launch.disk_checks import check_disk, check_journal, check_runs_dir
from launch.openrlhf_cli import CommandLineError
from launch.recipe import Recipe
from launch.recipe_checks import dataset_specs
from reward_funcs.cli import UsageError
from reward_funcs.tokens import TOKEN_ENV

__all__ = ["Check", "failed", "run"]

RESERVED_ENV = ("TOKENIZERS_PARALLELISM", "NCCL_DEBUG", "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS")
OPENRLHF_DEFAULT_GPUS_PER_NODE = 8


# ---- placement and shapes ------------------------------------------------------------------------------------


def _defaulted_gpus(recipe: Recipe, args, cluster_gpus: int | None) -> list[Check]:
    built = {"actor": True, "critic": bool(args.critic.model_name_or_path), "ref": args.algo.kl.init_coef > 0}
    flags = recipe.flat()
    defaulted = [
        f"{role}.num_gpus_per_node" for role in built if built[role] and f"{role}.num_gpus_per_node" not in flags
    ]
    if not defaulted or (cluster_gpus or 0) >= OPENRLHF_DEFAULT_GPUS_PER_NODE:
        return []
    left = f"{', '.join(defaulted)} left at OpenRLHF's default of {OPENRLHF_DEFAULT_GPUS_PER_NODE}"
    if cluster_gpus is None:
        return [warn("gpus", f"{left}: right only on nodes with 8 GPUs; set them to the GPUs each node has")]
    return [fail("gpus", f"{left}, the cluster has {cluster_gpus}: set them to the GPUs each node has")]


def _hybrid_engine(args) -> list[Check]:
    if not (args.train.colocate_all and not args.train.async_enable and args.vllm.num_engines):
        return []
    actor, engines = estimates.actor_gpus(args), estimates.engine_gpus(args)
    if actor == engines:
        return []
    shape = models.shape(args.actor.model_name_or_path)
    sizes = models.valid_tp_sizes(shape, actor) if shape else range(1, actor + 1)
    pairs = sorted((t != args.vllm.tensor_parallel_size, t) for t in sizes if actor % t == 0)  # the same TP first
    options = " or ".join(f"vllm.num_engines {actor // t} with vllm.tensor_parallel_size {t}" for _, t in pairs)
    return [
        fail(
            "gpus",
            f"hybrid engine (train.colocate_all) needs actor GPUs ({actor}) = vllm.num_engines x "
            f"vllm.tensor_parallel_size ({engines}): set {options}; or change actor.num_gpus_per_node (and the "
            "colocated ref and critic with it)",
        )
    ]


def _colocation(args) -> list[Check]:
    """Colocated models share the actor's placement group: OpenRLHF asserts the same placement for the reference,
    and a critic larger than the group has no bundle to go to."""
    checks = []
    actor = (args.actor.num_nodes, args.actor.num_gpus_per_node)
    ref = (args.ref.num_nodes, args.ref.num_gpus_per_node)
    colocated = args.train.colocate_all or args.train.colocate_actor_ref
    if colocated and args.algo.kl.init_coef > 0 and ref != actor:
        checks.append(
            fail(
                "gpus",
                f"colocated ref on {ref[0]} node(s) x {ref[1]} GPU(s), the actor on {actor[0]} x {actor[1]}: "
                f"OpenRLHF needs the same placement; set ref.num_nodes {actor[0]} and ref.num_gpus_per_node {actor[1]}",
            )
        )
    critic_gpus = args.critic.num_nodes * args.critic.num_gpus_per_node
    shares = args.train.colocate_all and not args.train.colocate_critic_reward and args.critic.model_name_or_path
    if shares and critic_gpus > actor[0] * actor[1]:
        checks.append(
            fail(
                "gpus",
                f"colocated critic on {critic_gpus} GPUs, more than the actor's {actor[0] * actor[1]} it shares them "
                "with: set critic.num_nodes and critic.num_gpus_per_node to at most the actor's",
            )
        )
    return checks


def check_gpus(recipe: Recipe, args, cluster_gpus: int | None) -> list[Check]:
    """Placement against the cluster's GPUs; `cluster_gpus` None (a dry run) checks the arithmetic alone."""
    checks = _defaulted_gpus(recipe, args, cluster_gpus) + _hybrid_engine(args) + _colocation(args)
    needed = estimates.gpus_needed(args)
    if cluster_gpus is None:
        return checks + [Check("gpus", "skip", f"needs {needed} GPUs; the cluster is not asked in a dry run")]
    if needed > cluster_gpus:
        fix = (
            "run on a GPU node, or point RAY_ADDRESS at a cluster with GPUs"
            if cluster_gpus == 0
            else "lower num_gpus_per_node / vllm.num_engines, or use a bigger cluster"
        )
        checks.append(fail("gpus", f"needs {needed} GPUs, the cluster has {cluster_gpus}: {fix}"))
    return checks or [ok("gpus", f"needs {needed} GPUs, the cluster has {cluster_gpus}")]


def _tensor_parallel(args, name: str, shape: models.ModelShape) -> list[Check]:
    valid = models.valid_tp_sizes(shape)
    sizes = {
        "vllm.tensor_parallel_size": args.vllm.tensor_parallel_size,
        "ds.tensor_parallel_size": args.ds.tensor_parallel_size,
    }
    return [
        fail(
            "model",
            f"{flag} {tp} does not divide {name}'s {shape.heads} attention heads / {shape.kv_heads} KV heads: "
            f"use one of {valid}",
        )
        for flag, tp in sizes.items()
        if tp not in valid
    ]


def _context(args, name: str, shape: models.ModelShape) -> list[Check]:
    if args.data.max_len <= shape.max_positions:
        return []
    return [
        fail(
            "model",
            f"data.max_len {args.data.max_len} exceeds {name}'s context of {shape.max_positions} tokens: lower it "
            "(prompt + response)",
        )
    ]


def _instruct_template(recipe: Recipe, args, name: str) -> list[Check]:
    template = " ".join(str(a) for spec in dataset_specs(recipe.meta) for a in spec.get("args", []))
    base = "--template base" in template or (not template and not args.data.apply_chat_template)
    if "instruct" not in name.lower() or not base:
        return []
    return [
        warn(
            "model",
            f"{name} is an instruct model but the prompts use the base template: instruct models given it collapse "
            "to padding; use --template qwen-instruct or chat",
        )
    ]


def check_model(recipe: Recipe, args) -> list[Check]:
    name = args.actor.model_name_or_path
    shape = models.shape(name)
    if shape is None:
        return [
            warn(
                "model",
                f"nothing known about {name} (no local config.json, not a Qwen2.5 model): "
                "tensor-parallel sizes and context length unchecked",
            )
        ]
    checks = _tensor_parallel(args, name, shape) + _context(args, name, shape) + _instruct_template(recipe, args, name)
    tp = args.vllm.tensor_parallel_size
    summary = f"{name}: {shape.heads} heads / {shape.kv_heads} KV heads, TP {tp} valid ({shape.source})"
    return checks or [ok("model", summary)]


def check_batches(args) -> list[Check]:
    samples, dp = estimates.samples_per_step(args), estimates.data_parallel(args)
    checks = []
    if samples % args.train.batch_size:
        checks.append(
            fail(
                "batches",
                f"rollout.batch_size x n_samples_per_prompt = {samples} samples per step is not a "
                f"multiple of train.batch_size {args.train.batch_size}: make it divide",
            )
        )
    if args.train.batch_size % (args.train.micro_batch_size * dp):
        checks.append(
            fail(
                "batches",
                f"train.batch_size {args.train.batch_size} is not a multiple of train.micro_batch_size "
                f"{args.train.micro_batch_size} x {dp} data-parallel GPUs: make it divide",
            )
        )
    if args.train.batch_size > samples:
        checks.append(
            fail(
                "batches",
                f"train.batch_size {args.train.batch_size} exceeds the {samples} samples a step produces: lower it",
            )
        )
    return checks or [
        ok(
            "batches",
            f"{samples} samples a step, {samples // args.train.batch_size} update(s) of "
            f"{args.train.batch_size}, micro-batch {args.train.micro_batch_size} x {dp} GPUs",
        )
    ]


# ---- memory, environment -------------------------------------------------------------------------------


def check_memory(recipe: Recipe, args, gpu_gb: float | None) -> list[Check]:
    shape = models.shape(args.actor.model_name_or_path)
    if shape is None:
        return [warn("memory", "model unknown: no estimate")]
    if not gpu_gb:
        return [warn("memory", "GPU memory unknown: set recipe.hardware.gpu_memory_gb to estimate")]
    parts = estimates.memory_estimate(args, shape, gpu_gb)
    total = sum(parts.values())
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in parts.items() if v)
    share = total / gpu_gb
    line = (
        f"estimate {total:.1f} of {gpu_gb:.0f} GB per GPU ({share:.0%}): {breakdown} (an estimate: model states by "
        "ZeRO's formulas plus activations; allocator overhead not counted)"
    )
    if share > 1.0:
        return [fail("memory", f"{line}; fits with: {estimates.what_fits(args, shape, gpu_gb)}")]
    if share > 0.9:
        return [
            warn("memory", f"{line}; close to the limit, consider: {estimates.what_fits(args, shape, gpu_gb, 0.9)}")
        ]
    return [ok("memory", line)]


def check_env(recipe: Recipe) -> list[Check]:
    env = recipe.meta.get("env") or {}
    reserved = [name for name in env if name in RESERVED_ENV]
    if reserved:
        return [
            fail(
                "env",
                f"{', '.join(reserved)} in recipe.env: train_ppo_ray sets it itself and the job would fail; remove it",
            )
        ]
    return [ok("env", f"{len(env)} variable(s) for the job, none reserved")]


# ---- all -------------------------------------------------------------------------------------------------------


def check_flags(recipe: Recipe) -> tuple[list[Check], object]:
    """OpenRLHF's parser and post-parse checks on the recipe's command line; (findings, its parsed arguments)."""
    empty = [k for k, v in recipe.flat().items() if v == ""]
    if empty:
        message = (
            f"{', '.join(empty)} is empty: give a value (for a tensor-parallel size, 1 is one GPU per engine) or "
            "remove the key"
        )
        return [fail("flags", message)], None
    try:
        args = recipe.args()
        jobs.entrypoint("python3", recipe.argv())  # every value can go through a shell command
    except CommandLineError as e:
        return [fail("flags", f"OpenRLHF 0.11.2 refuses the recipe: {e}")], None
    except UsageError as e:
        return [fail("flags", str(e))], None
    count = sum(t.startswith("--") for t in recipe.argv())
    return [ok("flags", f"{count} flags accepted by OpenRLHF 0.11.2's parser")], args


def _memory(recipe: Recipe, args, measured_gb: float | None) -> list[Check]:
    """The memory check against the measured GPUs, else what the recipe was sized for; says when they differ."""
    sized_for = (recipe.meta.get("hardware") or {}).get("gpu_memory_gb")
    checks = check_memory(recipe, args, measured_gb or sized_for)
    if measured_gb and sized_for and abs(measured_gb - sized_for) > 0.1 * sized_for:
        note = f"; the cluster's GPUs have {measured_gb:g} GB, the recipe was sized for {sized_for:g} GB"
        checks = [Check(c.name, c.status, c.message + note) for c in checks]
    return checks


def check_config(
    recipe: Recipe, cluster_gpus: int | None, gpu_memory_gb: float | None = None
) -> tuple[list[Check], object]:
    """What needs no data and no network: flags, placement, shapes, batches, memory, environment, the runs folder;
    (findings, OpenRLHF's parsed arguments or None when it refuses the command line). `cluster_gpus` None: the
    cluster is unknown (a dry run) and its checks are skipped."""
    checks, args = check_flags(recipe)
    if args is None:
        return checks, None
    checks += check_gpus(recipe, args, cluster_gpus)
    checks += check_model(recipe, args)
    checks += check_batches(args)
    checks += _memory(recipe, args, gpu_memory_gb)
    checks += check_env(recipe)
    checks += check_runs_dir(recipe)
    return checks, args


def check_files(recipe: Recipe, args, repo: Path, probe_services: bool = True) -> list[Check]:
    """What reads the data, the disk and the reward services (`probe_services` False: services that start with
    the run are not up yet, as in a dry run)."""
    checks = check_data(recipe, args, repo) + check_disk(args, repo) + check_journal(recipe, args, repo)
    if probe_services or not recipe.meta.get("reward_service"):
        token = recipe.secrets.get(TOKEN_ENV) or os.environ.get(TOKEN_ENV)
        return checks + check_http_reward(args, repo, token)
    return checks + [Check("reward", "skip", "the reward services start with the run: not probed in a dry run")]


def run(
    recipe: Recipe,
    repo: Path,
    cluster_gpus: int | None,
    gpu_memory_gb: float | None = None,
    data: bool = True,
    probe_services: bool = True,
) -> list[Check]:
    """All checks for `recipe` (resolved or not); stops after `flags` if OpenRLHF refuses the command line.
    `data=False` leaves out what reads files or the network (data, disk, reward)."""
    checks, args = check_config(recipe, cluster_gpus, gpu_memory_gb)
    if args is not None and data:
        checks += check_files(recipe, args, repo, probe_services)
    return checks
