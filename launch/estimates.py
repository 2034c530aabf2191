"""The arithmetic preflight judges a recipe by, from OpenRLHF's parsed arguments alone: GPUs placed, samples and
steps, memory per GPU, disk taken by checkpoints. Pure functions: no files, no cluster, no clock.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from launch.models import ModelShape

ADAM_BYTES = 12  # fp32 master weights, momentum and variance: the K of the ZeRO paper


# ---- GPUs and batches ----------------------------------------------------------------------------------------


def actor_gpus(args) -> int:
    return args.actor.num_nodes * args.actor.num_gpus_per_node


def engine_gpus(args) -> int:
    return (args.vllm.num_engines or 0) * args.vllm.tensor_parallel_size


def gpus_needed(args) -> int:
    """GPUs the run places: actor, critic, reference and vLLM engines, shared where they are colocated."""
    if args.train.colocate_all:
        # actor, critic, reference and (the hybrid engine) vLLM share the same GPUs; in async mode OpenRLHF
        # colocates only the DeepSpeed models and the engines get GPUs of their own
        return actor_gpus(args) + (engine_gpus(args) if args.train.async_enable else 0)
    ref = (
        0
        if args.train.colocate_actor_ref or args.algo.kl.init_coef == 0
        else args.ref.num_nodes * args.ref.num_gpus_per_node
    )
    critic = args.critic.num_nodes * args.critic.num_gpus_per_node if args.critic.model_name_or_path else 0
    return actor_gpus(args) + ref + critic + engine_gpus(args)


def data_parallel(args) -> int:
    return max(1, actor_gpus(args) // args.ds.ring_attn_size // args.ds.tensor_parallel_size)


def samples_per_step(args) -> int:
    return args.rollout.batch_size * args.rollout.n_samples_per_prompt


def training_steps(args, prompts: int) -> int:
    """OpenRLHF's global steps: every episode walks the prompts in rollout batches, the last one partial."""
    prompts = min(prompts, args.data.max_samples)
    return args.train.num_episodes * -(-prompts // args.rollout.batch_size)


# ---- memory ----------------------------------------------------------------------------------------------------


def model_states_gb(params_b: float, zero_stage: int, dp: int, offload: bool = False, trainable: bool = True) -> float:
    """Per-GPU bytes of a model's states, as the ZeRO paper (and DeepSpeed's docs) count them: bf16 weights 2Ψ,
    gradients 2Ψ, Adam states KΨ (K = 12), stage 1 shards the optimizer states, 2 also the gradients, 3 all."""
    psi = params_b * 1e9
    if not trainable:
        return 2 * psi / (dp if zero_stage == 3 else 1) / 1e9
    k = 0 if offload else ADAM_BYTES
    per_stage = {0: (4 + k) * psi, 1: 4 * psi + k * psi / dp, 2: 2 * psi + (2 + k) * psi / dp, 3: (4 + k) * psi / dp}
    return per_stage[min(zero_stage, 3)] / 1e9


def activations_gb(shape: ModelShape, micro: int, seq: int, checkpointing: bool, logits: bool) -> float:
    """Activation memory of one micro-batch, Korthikanti et al. (2022) with flash attention: 34·s·b·h bytes per
    layer, 2·s·b·h with full recomputation; plus the fp32 logits and log-probs over the vocabulary."""
    per_layer = (2 if checkpointing else 34) * seq * micro * shape.hidden
    vocab = 8 * seq * micro * shape.vocab if logits else 0
    return (shape.layers * per_layer + vocab) / 1e9


def memory_estimate(args, shape: ModelShape, gpu_gb: float) -> dict[str, float]:
    """Peak GB per GPU by part, for the placement in `args` (the largest of training and generation)."""
    dp = max(1, actor_gpus(args))
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


# Changes that lower the estimate, tried in this order until the run fits.
_SAVINGS = [
    ("actor.gradient_checkpointing_enable: true", lambda a: setattr(a.actor, "gradient_checkpointing_enable", True)),
    (
        "train.micro_batch_size: halved",
        lambda a: setattr(a.train, "micro_batch_size", max(1, a.train.micro_batch_size // 2)),
    ),
    ("ds.zero_stage: 3", lambda a: setattr(a.ds, "zero_stage", 3)),
    ("ds.adam_offload: true", lambda a: setattr(a.ds, "adam_offload", True)),
]


def what_fits(args, shape: ModelShape, gpu_gb: float, limit: float = 1.0) -> str:
    """The first changes, in `_SAVINGS` order, under which the estimate is at most `limit` of the GPU."""
    trial = copy.deepcopy(args)
    changes = []
    for label, change in _SAVINGS:
        change(trial)
        changes.append(label)
        if sum(memory_estimate(trial, shape, gpu_gb).values()) <= limit * gpu_gb:
            return ", ".join(changes)
    return "nothing short of more or larger GPUs"


# ---- disk ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointPlan:
    """What a run's checkpoints take. OpenRLHF rotates the DeepSpeed checkpoints of the actor and the critic
    (ckpt.max_num each, plus the best one), but keeps every `global_step*_hf` copy (ckpt.save_hf) and every
    `best_global_step*_hf` copy."""

    steps: int
    every: int
    saves: int  # checkpoint events over the run
    hf_saves: int
    ds_saves: int  # DeepSpeed checkpoints on disk at once
    model_gb: float  # one bf16 copy of the weights
    ds_gb: float  # one DeepSpeed checkpoint: actor (+ critic) weights and Adam states
    best: bool  # a best-model copy is kept when the eval metric improves

    @property
    def total_gb(self) -> float:
        return self.hf_saves * self.model_gb + self.ds_saves * self.ds_gb + self.model_gb

    def fill_step(self, free_gb: float) -> int:
        """The step at whose checkpoint the disk runs out of `free_gb` (the last checkpoint's if never)."""
        for k in range(1, self.saves + 1):
            used = (k * self.model_gb if self.hf_saves else 0) + min(k, self.ds_saves) * self.ds_gb
            if used > free_gb:
                return k * self.every
        return self.saves * self.every


def checkpoint_plan(args, shape: ModelShape, prompts: int) -> CheckpointPlan:
    steps = training_steps(args, prompts)
    every = args.ckpt.save_steps
    saves = steps // every if every > 0 else 0
    best = bool(args.eval.dataset) and args.eval.steps > 0 and args.ckpt.best_metric_key != "none" and every > 0
    return CheckpointPlan(
        steps=steps,
        every=every,
        saves=saves,
        hf_saves=saves if args.ckpt.save_hf else 0,
        ds_saves=min(args.ckpt.max_num, saves) + (1 if best and saves else 0),
        model_gb=2 * shape.params,
        ds_gb=(2 + ADAM_BYTES) * shape.params * (2 if args.critic.model_name_or_path else 1),
        best=best,
    )


# ---- the rollout journal ---------------------------------------------------------------------------------------

# Bytes per sample on disk (reward_funcs/journal.py), compressed. Rows: measured by bench/journal.py (about 16).
# Texts: the prompt, and the response at about 1.5 bytes per token, what zlib leaves of English-like text at four
# characters per token (bench/journal.py's templated chains of thought compress twice as well).
JOURNAL_ROW_BYTES = 20
JOURNAL_PROMPT_BYTES = 200
JOURNAL_BYTES_PER_TOKEN = 1.5
JOURNAL_SHARE = 0.01  # of the checkpoints' disk, at most


def journal_samples(args, steps: int, eval_rows: int) -> int:
    """Samples a run scores: every step's rollouts, and every evaluation's (each eval.steps, as OpenRLHF does)."""
    evals = steps // args.eval.steps if args.eval.dataset and args.eval.steps > 0 else 0
    return steps * samples_per_step(args) + evals * eval_rows * args.eval.n_samples_per_prompt


def journal_gb(samples: int, text_share: float, response_tokens: int) -> float:
    """The journal's size for `samples`, the texts of `text_share` of them kept, responses of `response_tokens`
    (the limit, rollout.max_new_tokens: an upper bound)."""
    text = JOURNAL_PROMPT_BYTES + JOURNAL_BYTES_PER_TOKEN * response_tokens
    return samples * (JOURNAL_ROW_BYTES + text_share * text) / 1e9
