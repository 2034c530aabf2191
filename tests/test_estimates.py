"""launch.estimates: placement, steps, memory by ZeRO's formulas and against what TinyZero's users saw; the model
shapes they use."""

import pytest
from testkit import REPO

from launch import estimates
from launch.models import QWEN25, shape, valid_tp_sizes
from launch.recipe import apply_overrides, load

BASE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"


def test_valid_tp_sizes_match_the_reference():
    expected = {
        "Qwen2.5-0.5B": [1, 2, 14],
        "Qwen2.5-1.5B": [1, 2, 4, 6, 12],
        "Qwen2.5-3B": [1, 2, 4, 8, 16],
        "Qwen2.5-7B": [1, 2, 4, 28],
    }
    for name, sizes in expected.items():
        assert valid_tp_sizes(QWEN25[name]) == sizes


@pytest.mark.parametrize("stage, gb", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_model_states_follow_zeros_formulas(stage, gb):
    # The ZeRO paper's figure 1 (DeepSpeed's docs): a 7.5B model, 64 GPUs, Adam (K = 12).
    assert estimates.model_states_gb(7.5, stage, 64) == pytest.approx(gb, abs=0.06)


def test_adam_offload_and_frozen_models():
    assert estimates.model_states_gb(1.0, 2, 1, offload=True) == pytest.approx(4.0)  # bf16 weights + gradients
    assert estimates.model_states_gb(1.0, 3, 4, trainable=False) == pytest.approx(0.5)


def memory_share(overrides, gpus):
    recipe = apply_overrides(load(BASE), overrides)
    args = recipe.args()
    gpu = recipe.meta["hardware"]["gpu_memory_gb"]
    return sum(estimates.memory_estimate(args, shape(args.actor.model_name_or_path), gpu).values()) / gpu


def test_estimate_agrees_with_what_tinyzero_users_saw():
    # Qwen2.5-3B with TinyZero's defaults ran out of memory on 2 x 80 GB; it fits 2 x H200 (141 GB); with
    # gradient checkpointing and smaller micro-batches it fits 80 GB.
    assert memory_share(["recipe.hardware.gpu_memory_gb=80"], 2) > 0.9
    assert memory_share([], 2) < 0.7
    recipe = load(REPO / "recipes/countdown/qwen2.5-3b-ppo-2x80gb.yaml")
    args = recipe.args()
    assert sum(estimates.memory_estimate(args, QWEN25["Qwen2.5-3B"], 80).values()) / 80 < 0.9
    # Qwen2.5-0.5B ran on a single 80 GB GPU.
    single = [
        "actor.model_name_or_path=Qwen/Qwen2.5-0.5B",
        "actor.num_gpus_per_node=1",
        "critic.num_gpus_per_node=1",
        "ref.num_gpus_per_node=1",
        "vllm.num_engines=1",
        "recipe.hardware.gpu_memory_gb=80",
    ]
    assert memory_share(single, 1) < 0.9


def test_async_colocation_gives_the_engines_their_own_gpus():
    recipe = apply_overrides(load(BASE), ["train.async_enable=true", "vllm.enable_sleep=false"])
    assert estimates.gpus_needed(recipe.args()) == 4
    assert estimates.gpus_needed(load(BASE).args()) == 2


def test_the_journal_of_tinyzeros_run_is_a_fraction_of_a_percent_of_its_checkpoints():
    """19,200 steps of 256 samples and 192 evaluations of 1,024 prompts; every response at its 1,024-token limit
    and every text kept, the journal stays under 1% of the checkpoints (3B: 192 Hugging Face copies and more)."""
    args = load(BASE).args()
    plan = estimates.checkpoint_plan(args, shape(args.actor.model_name_or_path), 327_680)
    samples = estimates.journal_samples(args, plan.steps, eval_rows=1024)
    assert samples == 19_200 * 256 + 192 * 1024
    size = estimates.journal_gb(samples, 1.0, args.rollout.max_new_tokens)
    assert size == pytest.approx(samples * (20 + 200 + 1.5 * 1024) / 1e9)
    assert size < estimates.JOURNAL_SHARE * plan.total_gb
    assert estimates.journal_gb(samples, 0.0, 1024) == pytest.approx(samples * 20 / 1e9)  # rows only
    no_eval = apply_overrides(load(BASE), ["eval.steps=-1"]).args()
    assert estimates.journal_samples(no_eval, plan.steps, eval_rows=1024) == 19_200 * 256
