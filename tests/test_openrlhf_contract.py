"""The reward file through OpenRLHF 0.11.2's own code: `SingleTurnAgentExecutor` loads it by path, calls it on
each generated sample, and `SamplesGenerator` turns the result into the Experience that PPO trains on."""

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch
from openrlhf.utils.agent import SingleTurnAgentExecutor
from testkit import CASES, CD_PROMPT, REPO, REWARD_FILE, run_executor


@pytest.fixture(scope="module")
def executor():
    return SingleTurnAgentExecutor(str(REWARD_FILE))


@pytest.fixture
def samples_generator(monkeypatch):
    """OpenRLHF's SamplesGenerator module, importable on a CPU once vLLM (GPU only) is stood in for."""
    vllm = SimpleNamespace(SamplingParams=object)
    engine_module = SimpleNamespace(batch_vllm_engine_call=None)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "openrlhf.trainer.ray.vllm_engine", engine_module)
    monkeypatch.delitem(sys.modules, "openrlhf.trainer.ppo_utils.samples_generator", raising=False)
    from openrlhf.trainer.ppo_utils import samples_generator

    return samples_generator.SamplesGenerator.__new__(samples_generator.SamplesGenerator)


@pytest.mark.parametrize("case", sorted(CASES))
def test_executor_delivers_our_rewards(case, executor, char_tokenizer, stand_in_engine, samples_generator):
    prompt, label, completion, max_tokens, reward, accuracy, fmt = CASES[case]
    out = run_executor(executor, prompt, label, stand_in_engine(completion), char_tokenizer, max_tokens)

    assert out["truncated"] is case.endswith("truncated")
    assert torch.equal(out["reward"], torch.tensor([reward]))
    assert torch.equal(out["scores"], torch.tensor([accuracy]))
    assert set(out["extra_logs"]) == {"accuracy", "format"}
    assert out["extra_logs"]["accuracy"].item() == accuracy
    assert out["extra_logs"]["format"].item() == fmt

    # What the trainer gets: one reward per sample, a score for eval pass@k, our logs as metrics.
    experience = samples_generator._process_response_into_experience(out, max_len=4096)
    assert experience.rewards.shape == (1,) and experience.rewards.item() == pytest.approx(reward)
    assert experience.scores.shape == (1,) and experience.scores.item() == accuracy
    assert experience.info["accuracy"].item() == accuracy and experience.info["format"].item() == fmt


def openrlhf_compute_eval_metrics():
    """OpenRLHF's own `compute_eval_metrics`, taken from the wheel's source: its module imports DeepSpeed."""
    import ast
    import importlib.util

    path = importlib.util.find_spec("openrlhf").submodule_search_locations[0] + "/trainer/ppo_trainer.py"
    tree = ast.parse(open(path).read())
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "compute_eval_metrics")
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=[function], type_ignores=[]), path, "exec"), namespace)
    return namespace["compute_eval_metrics"]


def test_eval_pass1_is_the_mean_reward_not_accuracy(executor, char_tokenizer, stand_in_engine, samples_generator):
    """What the docs say of `eval_countdown_pass1`: OpenRLHF averages the rewards, so the 0.1 format credit is in
    it, as in TinyZero's validation score; held-out accuracy comes from analysis.evaluate."""
    names = sorted(name for name in CASES if name.startswith("countdown"))
    samples = []
    for name in names:
        prompt, label, completion, max_tokens, *_ = CASES[name]
        out = run_executor(executor, prompt, label, stand_in_engine(completion), char_tokenizer, max_tokens)
        experience = samples_generator._process_response_into_experience(out, max_len=4096)
        experience.prompts = [prompt + name]  # one prompt per sample, as the eval loop pairs them
        samples.append(experience)
    batches = [(["countdown"], [s.prompts[0]], [None], [None]) for s in samples]
    logs = openrlhf_compute_eval_metrics()(batches, samples, 1)
    rewards = [CASES[name][4] for name in names]
    accuracy = [CASES[name][5] for name in names]
    assert logs["eval_countdown_pass1"] == pytest.approx(sum(rewards) / len(rewards))
    assert sum(rewards) != sum(accuracy)  # the cases include formatted wrong answers, so the two differ


def test_bad_label_is_logged_at_error_with_the_fix(executor, char_tokenizer, stand_in_engine, caplog):
    label = json.dumps({"task": "countdown", "target": "60", "numbers": [44, 19, 35]})
    engine = stand_in_engine(" </think>\n<answer>(44 - 19) + 35</answer>")
    with caplog.at_level(logging.INFO):
        out = run_executor(executor, CD_PROMPT, label, engine, char_tokenizer, 1024)
    assert out["reward"] is None  # OpenRLHF swallows the exception...
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "reward_funcs"]
    assert len(errors) == 1  # ... so our ERROR line is what the user sees
    message = errors[0].getMessage()
    assert "'target' must be an integer, got '60'" in message and label in message


def test_empty_label_points_at_the_label_key_flag(executor, char_tokenizer, stand_in_engine, caplog):
    with caplog.at_level(logging.ERROR):
        out = run_executor(executor, CD_PROMPT, "", stand_in_engine("<answer>1</answer>"), char_tokenizer, 1024)
    assert out["reward"] is None
    assert "--data.label_key label" in caplog.text


def test_many_threads_score_like_one(executor):
    """OpenRLHF calls reward_func through asyncio.to_thread, many samples at once."""
    cases = [CASES[name] for name in sorted(CASES)] * 150
    queries = [(p + c, p, label) for p, label, c, *_ in cases]
    sequential = [executor.reward_func([q], [p], [label])["rewards"].item() for q, p, label in queries]
    with ThreadPoolExecutor(max_workers=32) as pool:
        threaded = list(
            pool.map(lambda qpl: executor.reward_func([qpl[0]], [qpl[1]], [qpl[2]])["rewards"].item(), queries)
        )
    assert threaded == sequential
    assert sorted(set(sequential)) == pytest.approx([0.0, 0.1, 1.0])


def test_batched_call_returns_one_reward_per_sample(executor):
    cases = [CASES[name] for name in sorted(CASES)]
    out = executor.reward_func([p + c for p, _, c, *_ in cases], [p for p, *_ in cases], [c[1] for c in cases])
    assert out["rewards"].shape == out["scores"].shape == (len(cases),)
    assert out["extra_logs"]["accuracy"].shape == (len(cases),)


def test_sample_printing_every_n_calls_across_threads(executor, monkeypatch, capsys):
    monkeypatch.setenv("REWARD_SAMPLE_EVERY", "7")
    prompt, label, completion, *_ = CASES["countdown-wrong"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: executor.reward_func([prompt + completion], [prompt], [label]), range(70)))
    out = capsys.readouterr().out
    assert out.count("---- reward sample ") == 10
    assert "reason: wrong_value" in out and completion in out and "Using the numbers" not in out


def test_sample_printing_is_off_by_default(executor, monkeypatch, capsys):
    monkeypatch.delenv("REWARD_SAMPLE_EVERY", raising=False)
    prompt, label, completion, *_ = CASES["countdown-wrong"]
    for _ in range(50):
        executor.reward_func([prompt + completion], [prompt], [label])
    assert capsys.readouterr().out == ""


LOAD_AND_SCORE = textwrap.dedent(
    """
    import importlib.util, json, sys
    spec = importlib.util.spec_from_file_location("reward_func", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prompt = "Assistant: Let me solve this step by step.\\n<think>"
    label = json.dumps({"task": "countdown", "target": 60, "numbers": [44, 19, 35]})
    out = module.reward_func([prompt + "</think>\\n<answer>44-19+35</answer>"], [prompt], [label])
    print("reward", out["rewards"].item(), module.reward_funcs.__file__)
    """
)


def load_in_subprocess(path, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", LOAD_AND_SCORE, str(path)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_loads_by_absolute_path_from_another_directory(tmp_path):
    result = load_in_subprocess(REWARD_FILE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["reward", "1.0"]
    assert result.stdout.split()[2] == str(REPO / "reward_funcs" / "__init__.py")


def test_loads_by_relative_path_from_a_copied_working_dir(tmp_path):
    """What Ray does with working_dir: the repository is unpacked elsewhere and the path is repo-relative."""
    shutil.copytree(REPO / "reward_funcs", tmp_path / "reward_funcs", ignore=shutil.ignore_patterns("__pycache__"))
    result = load_in_subprocess("reward_funcs/openrlhf_reward.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[2] == str(tmp_path / "reward_funcs" / "__init__.py")


def test_the_file_alone_fails_with_a_clear_message(tmp_path):
    shutil.copy(REWARD_FILE, tmp_path / "openrlhf_reward.py")
    result = load_in_subprocess("openrlhf_reward.py", cwd=tmp_path)
    assert result.returncode != 0
    assert "must stay inside the reward_funcs package" in result.stderr
