"""Preflight: catch what would fail on the GPUs before any GPU is requested.

    python -m launch preflight recipes/countdown/qwen2.5-3b-ppo.yaml

Each check prints one line, `ok`, `warn` or `FAIL` with the fix; any FAIL stops `train` before it submits.
  flags    every flag exists in OpenRLHF 0.11.2's parser by exact name, and its own post-parse checks pass
  gpus     what the recipe places (actor, critic, reference, vLLM engines) against the cluster's GPUs
  model    tensor-parallel sizes against the model's attention and KV heads; context length
  batches  rollout batch x samples per prompt against train batch, micro-batches, data-parallel size
  memory   an estimate of each GPU's peak use (model states by ZeRO stage, activations, vLLM's share)
  env      the job's environment variables: none of those train_ppo_ray sets itself
  data     files exist, every label parses, the test split's reference solutions score 1.0 through the
           reward file loaded as OpenRLHF loads it, prompts fit the length budget and match
           data.apply_chat_template, the train split fills a rollout batch
  disk     the checkpoints the run will write against the free space where runs go (warns only)
  reward   an HTTP reward (when the recipe uses a URL) answers a probe correctly
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from data_tools.output import count_rows, read_rows
from launch import models
from launch.openrlhf_cli import CommandLineError, check
from launch.recipe import Recipe, to_argv

RESERVED_ENV = ("TOKENIZERS_PARALLELISM", "NCCL_DEBUG", "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS")
OPENRLHF_DEFAULT_GPUS_PER_NODE = 8
LABEL_ROWS_CHECKED = 5_000  # of each split; all of the test split's reference solutions are scored
CHARS_PER_TOKEN = 3.0  # conservative for these prompts (Qwen2.5 reads about 3.5 to 4 characters a token)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "FAIL"
    message: str

    def line(self) -> str:
        return f"{self.status:>4}  {self.name:8s} {self.message}"


def ok(name, message):
    return Check(name, "ok", message)


def warn(name, message):
    return Check(name, "warn", message)


def fail(name, message):
    return Check(name, "FAIL", message)


# ---- GPUs ----------------------------------------------------------------------------------------------------


def local_gpus() -> int:
    """GPUs on this machine that this process may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi
    lists (0 without a driver)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def local_gpu_memory_gb() -> float | None:
    """The smallest visible GPU's memory on this machine in GB (10^9 bytes), None without a driver."""
    if not shutil.which("nvidia-smi"):
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
            + ([f"--id={visible}"] if visible else []),
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
        sizes = [float(line) for line in out.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return round(min(sizes) * 2**20 / 1e9, 1) if sizes else None  # MiB -> GB of 10^9 bytes, as the estimate counts


def gpus_needed(args) -> int:
    actor = args.actor.num_nodes * args.actor.num_gpus_per_node
    engines = (args.vllm.num_engines or 0) * args.vllm.tensor_parallel_size
    if args.train.colocate_all:
        # actor, critic, reference and (the hybrid engine) vLLM share the same GPUs; in async mode OpenRLHF
        # colocates only the DeepSpeed models and the engines get GPUs of their own
        return actor + (engines if args.train.async_enable else 0)
    ref = (
        0
        if args.train.colocate_actor_ref or args.algo.kl.init_coef == 0
        else args.ref.num_nodes * args.ref.num_gpus_per_node
    )
    critic = args.critic.num_nodes * args.critic.num_gpus_per_node if args.critic.model_name_or_path else 0
    return actor + ref + critic + engines


def check_gpus(recipe: Recipe, args, cluster_gpus: int) -> list[Check]:
    checks = []
    needed = gpus_needed(args)
    built = {"actor": True, "critic": bool(args.critic.model_name_or_path), "ref": args.algo.kl.init_coef > 0}
    defaulted = [
        role for role in ("actor", "critic", "ref") if built[role] and f"{role}.num_gpus_per_node" not in recipe.flat()
    ]
    if defaulted and cluster_gpus < OPENRLHF_DEFAULT_GPUS_PER_NODE:
        checks.append(
            fail(
                "gpus",
                f"{', '.join(r + '.num_gpus_per_node' for r in defaulted)} left at OpenRLHF's default "
                f"of {OPENRLHF_DEFAULT_GPUS_PER_NODE}, the cluster has {cluster_gpus}: set them to the GPUs "
                "each node has",
            )
        )
    if args.train.colocate_all and not args.train.async_enable and args.vllm.num_engines:
        actor = args.actor.num_nodes * args.actor.num_gpus_per_node
        engines = args.vllm.num_engines * args.vllm.tensor_parallel_size
        if actor != engines:
            checks.append(
                fail(
                    "gpus",
                    f"hybrid engine (train.colocate_all) needs actor GPUs ({actor}) = vllm.num_engines x "
                    f"vllm.tensor_parallel_size ({engines}): set vllm.num_engines to "
                    f"{actor // args.vllm.tensor_parallel_size or 1}, or change actor.num_gpus_per_node (and the "
                    "colocated ref and critic with it)",
                )
            )
    # Colocated models share the actor's placement group: OpenRLHF asserts the same placement for the reference,
    # and a critic larger than the group has no bundle to go to.
    actor_place = (args.actor.num_nodes, args.actor.num_gpus_per_node)
    ref_place = (args.ref.num_nodes, args.ref.num_gpus_per_node)
    if (args.train.colocate_all or args.train.colocate_actor_ref) and built["ref"] and ref_place != actor_place:
        checks.append(
            fail(
                "gpus",
                f"colocated ref on {ref_place[0]} node(s) x {ref_place[1]} GPU(s), the actor on {actor_place[0]} x "
                f"{actor_place[1]}: OpenRLHF needs the same placement; set ref.num_nodes {actor_place[0]} and "
                f"ref.num_gpus_per_node {actor_place[1]}",
            )
        )
    critic_gpus = args.critic.num_nodes * args.critic.num_gpus_per_node
    if (
        args.train.colocate_all
        and not args.train.colocate_critic_reward
        and built["critic"]
        and critic_gpus > actor_place[0] * actor_place[1]
    ):
        checks.append(
            fail(
                "gpus",
                f"colocated critic on {critic_gpus} GPUs, more than the actor's {actor_place[0] * actor_place[1]} "
                "it shares them with: set critic.num_nodes and critic.num_gpus_per_node to at most the actor's",
            )
        )
    if needed > cluster_gpus:
        checks.append(
            fail(
                "gpus",
                f"needs {needed} GPUs, the cluster has {cluster_gpus}"
                + (
                    ": run on a GPU node, or point RAY_ADDRESS at a cluster with GPUs"
                    if cluster_gpus == 0
                    else ": lower num_gpus_per_node / vllm.num_engines, or use a bigger cluster"
                ),
            )
        )
    return checks or [ok("gpus", f"needs {needed} GPUs, the cluster has {cluster_gpus}")]


# ---- model -----------------------------------------------------------------------------------------------------


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
    checks = []
    valid = models.valid_tp_sizes(shape)
    for flag, tp in (
        ("vllm.tensor_parallel_size", args.vllm.tensor_parallel_size),
        ("ds.tensor_parallel_size", args.ds.tensor_parallel_size),
    ):
        if tp not in valid:
            checks.append(
                fail(
                    "model",
                    f"{flag} {tp} does not divide {name}'s {shape.heads} attention heads / "
                    f"{shape.kv_heads} KV heads: use one of {valid}",
                )
            )
    if args.data.max_len > shape.max_positions:
        checks.append(
            fail(
                "model",
                f"data.max_len {args.data.max_len} exceeds {name}'s context of "
                f"{shape.max_positions} tokens: lower it (prompt + response)",
            )
        )
    instruct = "instruct" in name.lower()
    template = " ".join(map(str, (recipe.meta.get("dataset") or {}).get("args", [])))
    if instruct and ("--template base" in template or (not template and not args.data.apply_chat_template)):
        checks.append(
            warn(
                "model",
                f"{name} is an instruct model but the prompts use the base template: "
                "instruct models given it collapse to padding; use --template qwen-instruct or chat",
            )
        )
    return checks or [
        ok(
            "model",
            f"{name}: {shape.heads} heads / {shape.kv_heads} KV heads, TP "
            f"{args.vllm.tensor_parallel_size} valid ({shape.source})",
        )
    ]


# ---- batches ---------------------------------------------------------------------------------------------------


def check_batches(args) -> list[Check]:
    samples = args.rollout.batch_size * args.rollout.n_samples_per_prompt
    dp = max(
        1, args.actor.num_nodes * args.actor.num_gpus_per_node // args.ds.ring_attn_size // args.ds.tensor_parallel_size
    )
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


# ---- memory ----------------------------------------------------------------------------------------------------

ADAM_BYTES = 12  # fp32 master weights, momentum and variance: the K of the ZeRO paper


def model_states_gb(params_b: float, zero_stage: int, dp: int, offload: bool = False, trainable: bool = True) -> float:
    """Per-GPU bytes of a model's states, as the ZeRO paper (and DeepSpeed's docs) count them: bf16 weights 2Ψ,
    gradients 2Ψ, Adam states KΨ (K = 12), stage 1 shards the optimizer states, 2 also the gradients, 3 all."""
    psi = params_b * 1e9
    if not trainable:
        return 2 * psi / (dp if zero_stage == 3 else 1) / 1e9
    k = 0 if offload else ADAM_BYTES
    per_stage = {0: (4 + k) * psi, 1: 4 * psi + k * psi / dp, 2: 2 * psi + (2 + k) * psi / dp, 3: (4 + k) * psi / dp}
    return per_stage[min(zero_stage, 3)] / 1e9


def activations_gb(shape: models.ModelShape, micro: int, seq: int, checkpointing: bool, logits: bool) -> float:
    """Activation memory of one micro-batch, Korthikanti et al. (2022) with flash attention: 34·s·b·h bytes per
    layer, 2·s·b·h with full recomputation; plus the fp32 logits and log-probs over the vocabulary."""
    per_layer = (2 if checkpointing else 34) * seq * micro * shape.hidden
    vocab = 8 * seq * micro * shape.vocab if logits else 0
    return (shape.layers * per_layer + vocab) / 1e9


def memory_estimate(args, shape: models.ModelShape, gpu_gb: float) -> dict[str, float]:
    """Peak GB per GPU by part, for the placement in `args` (the largest of training and generation)."""
    dp = max(1, args.actor.num_nodes * args.actor.num_gpus_per_node)
    zero, offload, seq = args.ds.zero_stage, args.ds.adam_offload, args.data.max_len
    ckpt = args.actor.gradient_checkpointing_enable
    actor = model_states_gb(shape.params, zero, dp, offload)
    critic = model_states_gb(shape.params, zero, dp, offload) if args.critic.model_name_or_path else 0.0
    ref = model_states_gb(shape.params, zero, dp, trainable=False) if args.algo.kl.init_coef > 0 else 0.0
    acts = max(
        activations_gb(shape, args.train.micro_batch_size, seq, ckpt, True),
        activations_gb(shape, args.train.micro_batch_size, seq, ckpt, False) if critic else 0.0,
    )
    vllm = args.vllm.gpu_memory_utilization * gpu_gb
    if args.train.colocate_all:
        training = {"actor states": actor, "critic states": critic, "reference weights": ref, "activations": acts}
        if not args.vllm.enable_sleep:
            training["vLLM (awake)"] = vllm
        generation = {"vLLM": vllm, **({} if args.ds.enable_sleep else {"DeepSpeed states": actor + critic + ref})}
        return training if sum(training.values()) >= sum(generation.values()) else generation
    per_role = {"actor GPU": actor + acts + (ref if args.train.colocate_actor_ref else 0), "vLLM GPU": vllm}
    role = max(per_role, key=per_role.get)
    return {role: per_role[role]}


def check_memory(recipe: Recipe, args, gpu_gb: float | None) -> list[Check]:
    shape = models.shape(args.actor.model_name_or_path)
    if shape is None:
        return [warn("memory", "model unknown: no estimate")]
    if not gpu_gb:
        return [warn("memory", "GPU memory unknown: set recipe.hardware.gpu_memory_gb to estimate")]
    parts = memory_estimate(args, shape, gpu_gb)
    total = sum(parts.values())
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in parts.items() if v)
    share = total / gpu_gb
    line = (
        f"estimate {total:.1f} of {gpu_gb:.0f} GB per GPU ({share:.0%}): {breakdown} (an estimate: model states by "
        "ZeRO's formulas plus activations; allocator overhead not counted)"
    )
    if share > 1.0:
        return [fail("memory", f"{line}; fits with: {_what_fits(args, shape, gpu_gb)}")]
    if share > 0.9:
        return [warn("memory", f"{line}; close to the limit, consider: {_what_fits(args, shape, gpu_gb, 0.9)}")]
    return [ok("memory", line)]


def _what_fits(args, shape, gpu_gb, limit=1.0) -> str:
    import copy

    trial = copy.deepcopy(args)
    changes = []
    steps = [
        (
            "actor.gradient_checkpointing_enable: true",
            lambda a: setattr(a.actor, "gradient_checkpointing_enable", True),
        ),
        (
            "train.micro_batch_size: halved",
            lambda a: setattr(a.train, "micro_batch_size", max(1, a.train.micro_batch_size // 2)),
        ),
        ("ds.zero_stage: 3", lambda a: setattr(a.ds, "zero_stage", 3)),
        ("ds.adam_offload: true", lambda a: setattr(a.ds, "adam_offload", True)),
    ]
    for label, change in steps:
        change(trial)
        changes.append(label)
        if sum(memory_estimate(trial, shape, gpu_gb).values()) <= limit * gpu_gb:
            return ", ".join(changes)
    return "nothing short of more or larger GPUs"


# ---- environment -----------------------------------------------------------------------------------------------


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


# ---- data and reward -------------------------------------------------------------------------------------------


def _load_reward_file(path: Path):
    spec = importlib.util.spec_from_file_location("reward_func", path)  # as SingleTurnAgentExecutor does
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def _prompt_text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in prompt) + "<|im_start|>assistant\n"


def reference_completion(label: dict) -> str | None:
    from reward_funcs import TASKS

    answer = TASKS[label["task"]].reference_answer(label)
    return None if answer is None else f" ... </think>\n<answer>{answer}</answer><|endoftext|>"


def dataset_paths(spec: str | None, repo: Path) -> list[Path]:
    """The files of a comma-separated dataset flag, relative ones under the repository."""
    names = [n.strip() for n in (spec or "").split(",") if n.strip()]
    return [Path(n) if Path(n).is_absolute() else repo / n for n in names]


def training_steps(args, prompts: int) -> int:
    """OpenRLHF's global steps: every episode walks the prompts in rollout batches, the last one partial."""
    prompts = min(prompts, args.data.max_samples)
    return args.train.num_episodes * -(-prompts // args.rollout.batch_size)


# ---- disk ------------------------------------------------------------------------------------------------------


def check_disk(args, repo: Path, runs_dir: Path) -> list[Check]:
    """What the run's checkpoints will take on disk, against the free space where runs are written. OpenRLHF
    rotates the DeepSpeed checkpoints of the actor and the critic (ckpt.max_num each, plus the best one), but
    keeps every `global_step*_hf` copy (ckpt.save_hf) and every `best_global_step*_hf` copy."""
    shape = models.shape(args.actor.model_name_or_path)
    files = dataset_paths(args.data.prompt_dataset, repo)
    if shape is None or not files or not all(f.is_file() for f in files):
        return []
    steps = training_steps(args, sum(count_rows(f) for f in files))
    every = args.ckpt.save_steps
    model_gb = 2 * shape.params  # bf16 weights
    ds_gb = (2 + ADAM_BYTES) * shape.params * (2 if args.critic.model_name_or_path else 1)  # actor (+ critic)
    saves = steps // every if every > 0 else 0
    hf_saves = saves if args.ckpt.save_hf else 0
    best = bool(args.eval.dataset) and args.eval.steps > 0 and args.ckpt.best_metric_key != "none" and every > 0
    ds_saves = min(args.ckpt.max_num, saves) + (1 if best and saves else 0)
    total = hf_saves * model_gb + ds_saves * ds_gb + model_gb
    where = runs_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free / 1e9
    copies = f"{hf_saves} Hugging Face copies of {model_gb:.1f} GB (every {every} steps, never deleted)"
    if best and args.ckpt.save_hf:
        copies += f", plus one more each time the eval metric improves (at most {steps // args.eval.steps})"
    line = (
        f"checkpoints take about {total:,.0f} GB over {steps:,} steps: "
        + (f"{copies}, {ds_saves} DeepSpeed checkpoints of {ds_gb:.0f} GB (rotated), " if saves else "none saved, ")
        + f"the final model; {free:,.0f} GB free at {where}"
    )
    if total <= free:
        return [ok("disk", line)]
    if not saves:
        return [warn("disk", f"{line}: not even the final model fits; free space, or pass --runs-dir elsewhere")]
    used = [(k * model_gb if hf_saves else 0) + min(k, ds_saves) * ds_gb for k in range(1, saves + 1)]
    full = next((k for k, gb in enumerate(used, 1) if gb > free), saves) * every
    return [
        warn(
            "disk",
            f"{line}: the disk fills near step {full:,}; raise ckpt.save_steps, lower ckpt.max_num, set "
            "ckpt.save_hf false (the final model is still saved), or stop the run before then",
        )
    ]


def check_data(recipe: Recipe, args, repo: Path) -> list[Check]:
    from reward_funcs import TASKS, LabelError, parse_label

    if not args.data.label_key:
        return [fail("data", "data.label_key is not set: OpenRLHF would send empty labels; set it to label")]
    checks = []
    train_rows = 0
    files = {"train": args.data.prompt_dataset, "test": args.eval.dataset}
    budget = args.data.max_len - (args.rollout.max_new_tokens or 0)
    for split, spec in files.items():
        for path in dataset_paths(spec, repo):
            name = str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)
            if not path.is_file():
                planned = (recipe.meta.get("dataset") or {}).get("out")
                if planned and str(path).startswith(str(repo / planned)):
                    checks.append(warn("data", f"{name} does not exist yet: `train` generates it from recipe.dataset"))
                else:
                    checks.append(
                        fail(
                            "data",
                            f"{name} does not exist and no recipe.dataset makes it: generate it "
                            "with python -m data_tools.countdown / multiply, or fix the path",
                        )
                    )
                continue
            rows = read_rows(path, None if split == "test" else LABEL_ROWS_CHECKED)
            if not rows:
                checks.append(fail("data", f"{name} has no rows: generate it again, or fix the path"))
                continue
            if args.data.input_key not in rows[0]:
                checks.append(
                    fail(
                        "data",
                        f"{name} has no column {args.data.input_key!r} (data.input_key); it has "
                        f"{', '.join(map(repr, rows[0]))}: set data.input_key to the prompt column",
                    )
                )
                continue
            bad = []
            for row in rows:
                try:
                    label = parse_label(row.get(args.data.label_key or "label", ""))
                    TASKS[label["task"]].check_label(label)
                except LabelError as e:
                    bad.append(str(e))
            if bad:
                checks.append(fail("data", f"{name}: {len(bad)} of {len(rows)} labels cannot be scored, e.g. {bad[0]}"))
                continue
            chat = isinstance(rows[0][args.data.input_key], list)
            if chat and not args.data.apply_chat_template:
                checks.append(
                    fail(
                        "data",
                        f"{name} holds chat messages but data.apply_chat_template is off: OpenRLHF would pass the "
                        "list itself as the prompt; set data.apply_chat_template true, or use --template base / "
                        "qwen-instruct",
                    )
                )
                continue
            if not chat and args.data.apply_chat_template:
                checks.append(
                    warn(
                        "data",
                        f"{name} holds rendered prompts and data.apply_chat_template is on: each prompt is wrapped "
                        "once more as a user message; make the data with --template chat, or turn it off",
                    )
                )
            if split == "train":
                train_rows += count_rows(path) if len(rows) == LABEL_ROWS_CHECKED else len(rows)
            longest = max(len(_prompt_text(r[args.data.input_key])) for r in rows)
            if longest / CHARS_PER_TOKEN > budget:
                checks.append(
                    fail(
                        "data",
                        f"{name}: prompts up to ~{longest / CHARS_PER_TOKEN:.0f} tokens exceed the "
                        f"budget data.max_len - rollout.max_new_tokens = {budget}: raise data.max_len",
                    )
                )
                continue
            if split == "test":
                checks += _score_references(args, repo, name, rows)
            checks.append(ok("data", f"{name}: {len(rows):,} rows checked, labels parse, prompts fit {budget} tokens"))
    prompts = min(train_rows, args.data.max_samples)
    if 0 < prompts < args.rollout.batch_size:
        checks.append(
            warn(
                "data",
                f"{prompts} training prompts, fewer than one rollout batch ({args.rollout.batch_size}): every step "
                "gets only those; lower rollout.batch_size or make more data",
            )
        )
    return checks or [warn("data", "no dataset in the recipe")]


def _score_references(args, repo, name, rows) -> list[Check]:
    urls = args.reward.remote_url or []
    files = [u for u in urls if u.endswith(".py")]
    if not files:
        return []
    reward = _load_reward_file(repo / files[0])
    missed = 0
    scored = 0
    for row in rows:
        label = json.loads(row[args.data.label_key])
        completion = reference_completion(label)
        if completion is None:
            continue
        prompt = _prompt_text(row[args.data.input_key])
        scored += 1
        missed += reward([prompt + completion], [prompt], [row[args.data.label_key]])["rewards"][0].item() != 1.0
    if missed:
        return [
            fail(
                "data",
                f"{name}: {missed} of {scored} reference solutions do not score 1.0 through {files[0]}: "
                "the dataset and the reward disagree; regenerate the data",
            )
        ]
    return [ok("data", f"{name}: all {scored} reference solutions score 1.0 through {files[0]}")]


def check_http_reward(args, repo: Path) -> list[Check]:
    urls = [u for u in (args.reward.remote_url or []) if u.startswith("http")]
    if not urls:
        return []
    import urllib.request

    key = args.data.label_key or "label"
    rows = read_rows(repo / args.eval.dataset, 200) if args.eval.dataset else []
    rows = [r for r in rows if reference_completion(json.loads(r[key])) is not None]
    if not rows:
        return [warn("reward", "no test row with a reference solution to probe the HTTP reward with")]
    row = rows[0]
    prompt = _prompt_text(row[args.data.input_key])
    body = {
        "query": [prompt + reference_completion(json.loads(row[key]))],
        "prompts": [prompt],
        "labels": [row[key]],
    }
    checks = []
    for url in urls:
        try:
            request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                rewards = json.loads(response.read())["rewards"]
        except Exception as e:  # any failure is the same finding: the service cannot be used
            checks.append(
                fail("reward", f"{url} did not answer the probe ({e}): start it with python -m reward_funcs.server")
            )
            continue
        checks.append(
            ok("reward", f"{url} answers")
            if rewards == [1.0]
            else fail("reward", f"{url} scored a reference solution {rewards}, expected [1.0]")
        )
    return checks


# ---- all -------------------------------------------------------------------------------------------------------


def run(
    recipe: Recipe,
    repo: Path,
    cluster_gpus: int,
    gpu_memory_gb: float | None = None,
    data: bool = True,
    runs_dir: Path | None = None,
) -> list[Check]:
    """All checks for `recipe`; stops after `flags` if OpenRLHF refuses the command line."""
    argv = to_argv(recipe.flags)
    empty = [k for k, v in recipe.flat().items() if v == ""]
    if empty:
        return [
            fail(
                "flags",
                f"{', '.join(empty)} is empty: give a value (for a tensor-parallel size, 1 is one GPU "
                "per engine) or remove the key",
            )
        ]
    try:
        args = check(argv)
    except CommandLineError as e:
        return [fail("flags", f"OpenRLHF 0.11.2 refuses the recipe: {e}")]
    checks = [ok("flags", f"{sum(t.startswith('--') for t in argv)} flags accepted by OpenRLHF 0.11.2's parser")]
    sized_for = (recipe.meta.get("hardware") or {}).get("gpu_memory_gb")
    gpu_gb = gpu_memory_gb or sized_for
    checks += check_gpus(recipe, args, cluster_gpus)
    checks += check_model(recipe, args)
    checks += check_batches(args)
    memory = check_memory(recipe, args, gpu_gb)
    if gpu_memory_gb and sized_for and abs(gpu_memory_gb - sized_for) > 0.1 * sized_for:
        memory = [
            Check(
                c.name,
                c.status,
                f"{c.message}; the cluster's GPUs have {gpu_memory_gb:g} GB, the recipe was sized for {sized_for:g} GB",
            )
            for c in memory
        ]
    checks += memory
    checks += check_env(recipe)
    if data:
        checks += check_data(recipe, args, repo)
        checks += check_disk(args, repo, runs_dir or repo / "runs")
        checks += check_http_reward(args, repo)
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == "FAIL" for c in checks)
