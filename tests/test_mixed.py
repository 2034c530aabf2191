"""Countdown and multiplication in one run: OpenRLHF 0.11.2's own blending_datasets and PromptDataset build the
blended prompts, its reward executor scores them through our reward file, each by its own task, and the per-task
training logs (reward_funcs.task_logs) survive OpenRLHF's batching and averaging where a key for one task only
would not."""

import json
import re
import statistics

import pytest
import test_openrlhf_contract
import torch
from openrlhf.datasets import PromptDataset
from openrlhf.datasets.utils import blending_datasets
from openrlhf.trainer.ppo_utils.experience import Experience, split_experience_batch
from openrlhf.utils.agent import SingleTurnAgentExecutor
from test_datasets_openrlhf import strategy
from testkit import REPO, REWARD_FILE, run_executor

from analysis import metrics
from data_tools import countdown, multiply
from launch import preflight, runs
from launch.recipe import apply_overrides, load
from reward_funcs import TASKS
from reward_funcs import task_logs as task_logs_module
from reward_funcs.task_logs import keys, task_logs

MIXED = REPO / "recipes/mixed/qwen2.5-3b-ppo.yaml"
samples_generator = test_openrlhf_contract.samples_generator  # OpenRLHF's SamplesGenerator, importable on a CPU
MICRO_BATCH = 4  # rollout.micro_batch_size: the samples concatenated into one Experience


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    assert countdown.main(["--out", str(root / "countdown"), "--train-size", "60", "--test-size", "12"]) == 0
    assert (
        multiply.main(["--out", str(root / "multiply"), "--draws", "300", "--train-size", "30", "--test-size", "8"])
        == 0
    )
    return root


def blended(data, char_tokenizer, probs="0.5,0.5", max_count=40):
    """What train_ppo_ray's prepare_datasets builds from --data.prompt_dataset A,B --data.prompt_probs P."""
    files = f"{data / 'countdown/train.parquet'},{data / 'multiply/train.parquet'}"
    rows = blending_datasets(files, probs, strategy(), 42, max_count=max_count, dataset_split="train")
    rows = rows.select(range(min(max_count, len(rows))))
    return PromptDataset(rows, char_tokenizer, strategy())  # the tokenizer serves chat templates only


def completion(label: str, right: bool) -> str:
    """A response in TinyZero's format: the label's reference answer, or a wrong one."""
    parsed = json.loads(label)
    if parsed["task"] == "countdown":
        answer = parsed["solution"] if right else "1 + 1"
    else:
        answer = str(parsed["product"] + (0 if right else 1))
    return f" ... </think>\n<answer>{answer}</answer><|endoftext|>"


def scored_batch(data, char_tokenizer, stand_in_engine, reward_file):
    """Every prompt of a blended dataset through OpenRLHF's executor (our reward file), answered right for every
    other sample; (datasource, correct, executor output) per sample."""
    executor = SingleTurnAgentExecutor(str(reward_file))
    out = []
    for i, (source, prompt, label, _) in enumerate(blended(data, char_tokenizer)):
        engine = stand_in_engine(completion(label, right=i % 2 == 0))
        result = run_executor(executor, prompt, label, engine, char_tokenizer, 1024)
        out.append((source, i % 2 == 0, label, result))
    return out


def test_a_blended_batch_holds_both_tasks_and_each_is_scored_by_its_own_rules(data, char_tokenizer, stand_in_engine):
    batch = scored_batch(data, char_tokenizer, stand_in_engine, REWARD_FILE)
    sources = [source for source, *_ in batch]
    assert set(sources) == {"countdown", "multiply"} and len(batch) == 40
    for source, right, label, result in batch:
        assert json.loads(label)["task"] == source  # the datasource column names the label's task
        assert result["reward"].item() == pytest.approx(
            1.0 if right else 0.1
        )  # 0.1: a wrong answer in the right format
        assert result["scores"].item() == float(right)
    # a Countdown answer is checked against the numbers, a product against the product: swapped, neither scores
    countdown_label = next(label for source, _, label, _ in batch if source == "countdown")
    multiply_label = next(label for source, _, label, _ in batch if source == "multiply")
    executor = SingleTurnAgentExecutor(str(REWARD_FILE))
    prompt = "Assistant: Let me solve this step by step.\n<think>"
    for label, other in ((countdown_label, multiply_label), (multiply_label, countdown_label)):
        engine = stand_in_engine(completion(other, right=True))
        assert run_executor(executor, prompt, label, engine, char_tokenizer, 1024)["scores"].item() == 0.0


def test_prompt_probs_set_the_mix_and_the_rarer_file_is_drawn_again(data, char_tokenizer):
    """OpenRLHF interleaves until every file is used up once: multiplication (30 rows) is drawn again while
    Countdown's 60 are used, and the first max_samples rows keep the odds."""
    mix = [row[0] for row in blended(data, char_tokenizer, "0.5,0.5", max_count=90)]
    assert len(mix) == 90 and 30 <= mix.count("multiply") <= 60
    rare = [row[0] for row in blended(data, char_tokenizer, "0.9,0.1", max_count=60)]
    assert rare.count("countdown") > 3 * rare.count("multiply")


def micro_batches(experiences):
    """rollout.micro_batch_size samples concatenated (RemoteExperienceMaker.split_rollout_samples), then split back
    per sample as the replay buffer does (NaiveReplayBuffer.append)."""
    items = []
    for start in range(0, len(experiences), MICRO_BATCH):
        batch = Experience.concat_experiences(experiences[start : start + MICRO_BATCH], pad_token_id=0)
        items += split_experience_batch(batch)
    return items


def test_per_task_logs_survive_openrlhfs_batching_and_give_exact_accuracy(
    data, char_tokenizer, stand_in_engine, samples_generator, monkeypatch
):
    """The real reward file, with the switch the launcher sets for a mixed recipe (REWARD_TASK_LOGS=1)."""
    monkeypatch.setenv(task_logs_module.ENV, "1")
    batch = scored_batch(data, char_tokenizer, stand_in_engine, REWARD_FILE)
    experiences = [samples_generator._process_response_into_experience(r, max_len=4096) for *_, r in batch]
    items = micro_batches(experiences)
    assert len(items) == len(batch)
    # the actor logs each key's mean over the step's samples (PolicyModelActor.fit, weighted by samples)
    means = {key: statistics.fmean(item.info[key].item() for item in items) for task in TASKS for key in keys(task)}
    found = metrics.task_accuracy(means)
    for task in ("countdown", "multiply"):
        mine = [right for source, right, *_ in batch if source == task]
        assert found[task]["accuracy"] == pytest.approx(sum(mine) / len(mine))
        assert found[task]["share"] == pytest.approx(len(mine) / len(batch))
        assert found[task]["format"] == pytest.approx(1.0)
    assert set(found) == {"countdown", "multiply"}  # no task without samples is reported


def test_a_key_sent_for_one_task_only_breaks_the_replay_buffer(data, char_tokenizer, samples_generator):
    """Why every sample carries every task's keys: OpenRLHF concatenates a key over the samples that have it and
    the replay buffer refuses a key shorter than the batch."""
    rows = list(blended(data, char_tokenizer))[: 2 * MICRO_BATCH]
    assert len({row[0] for row in rows[:MICRO_BATCH]}) == 2  # the first micro-batch mixes the tasks
    experiences = []
    for source, prompt, label, _ in rows:
        logs = {"accuracy": 1.0, f"{source}_accuracy": 1.0}  # only the sample's own task
        response = {
            "prompt": prompt,
            "label": label,
            "observation_tokens": [1, 2, 3, 4],
            "action_ranges": [(2, 4)],
            "reward": 1.0,
            "scores": 1.0,
            "extra_logs": logs,
            "rollout_log_probs": None,
        }
        experiences.append(samples_generator._process_response_into_experience(response, max_len=64))
    with pytest.raises(ValueError, match=re.escape("does not match batch_size")):
        micro_batches(experiences)


def test_task_logs_are_the_same_keys_for_every_sample():
    countdown_label = json.dumps({"task": "countdown", "target": 6, "numbers": [1, 2, 3]})
    multiply_label = json.dumps({"task": "multiply", "numbers": [2, 3], "product": 6})
    logs = task_logs([countdown_label, multiply_label, multiply_label], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0])
    assert set(logs) == {key for task in TASKS for key in keys(task)}
    assert logs["countdown_share"] == [1.0, 0.0, 0.0] and logs["multiply_share"] == [0.0, 1.0, 1.0]
    assert logs["countdown_correct"] == [1.0, 0.0, 0.0] and logs["multiply_correct"] == [0.0, 0.0, 1.0]
    assert logs["multiply_format"] == [0.0, 1.0, 0.0]
    means = {key: statistics.fmean(values) for key, values in logs.items()}
    assert metrics.task_accuracy(means)["multiply"]["accuracy"] == pytest.approx(0.5)  # not 1/3, its diluted mean
    with pytest.raises(ValueError, match="one each"):
        task_logs([countdown_label], [1.0, 0.0], [1.0])


def test_the_mixed_recipe_passes_preflight_with_both_datasets(data, tmp_path):
    recipe = apply_overrides(
        load(MIXED),
        [
            f"data.prompt_dataset={data / 'countdown/train.parquet'},{data / 'multiply/train.parquet'}",
            f"eval.dataset={data / 'countdown/test.parquet'},{data / 'multiply/test.parquet'}",
        ],
    )
    args = recipe.args()
    assert args.data.prompt_probs == "0.5,0.5" and args.data.max_samples == 65536
    checks = preflight.run(runs.resolve(recipe, tmp_path / "run"), REPO, 2)
    assert not preflight.failed(checks), [c.line() for c in checks if c.status == "FAIL"]
    assert any(
        "blended by OpenRLHF: 0.5 countdown/train.parquet, 0.5 multiply/train.parquet" in c.message for c in checks
    )
    assert sum("all " in c.message and "reference solutions score 1.0" in c.message for c in checks) == 2


@pytest.mark.parametrize(
    "probs, message",
    [("0.5", "gives 1 probabilities for 2 training file(s)"), ("0.7,0.7", "each above 0, summing to 1")],
)
def test_prompt_probs_that_openrlhf_would_fail_on_are_a_preflight_failure(data, tmp_path, probs, message):
    recipe = apply_overrides(
        load(MIXED),
        [
            f"data.prompt_dataset={data / 'countdown/train.parquet'},{data / 'multiply/train.parquet'}",
            f"eval.dataset={data / 'countdown/test.parquet'}",
            f"data.prompt_probs='{probs}'",
        ],
    )
    checks = preflight.run(runs.resolve(recipe, tmp_path / "run"), REPO, 2)
    assert any(c.status == "FAIL" and message in c.message for c in checks)
    with pytest.raises((AssertionError, ValueError)):  # what OpenRLHF's blending itself does with them
        blending_datasets(recipe.get("data.prompt_dataset"), probs, strategy(), 42)


def test_kept_prompt_rate_undoes_openrlhfs_factor_of_n():
    # SamplesGenerator.generate_samples: len(accepted samples) / prompts consumed * 100; 8 samples per prompt
    accepted_prompts, consumed, n = 96, 128, 8
    logged = accepted_prompts * n / consumed * 100
    assert logged == 600.0 and metrics.kept_prompt_rate(logged, n) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        metrics.kept_prompt_rate(logged, 0)


def test_extra_logs_values_reach_the_experience_as_one_float_per_sample(samples_generator):
    response = {
        "prompt": "p",
        "label": "l",
        "observation_tokens": [1, 2, 3],
        "action_ranges": [(1, 3)],
        "reward": 0.1,
        "scores": 0.0,
        "extra_logs": {"countdown_share": torch.tensor([1.0]), "multiply_share": torch.tensor([0.0])},
        "rollout_log_probs": None,
    }
    info = samples_generator._process_response_into_experience(response, max_len=16).info
    assert info["countdown_share"].tolist() == [1.0] and info["multiply_share"].tolist() == [0.0]
