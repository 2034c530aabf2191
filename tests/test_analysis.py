"""analysis: metrics, behaviour patterns, evaluation (transformers on a tiny model; vLLM up to its call, and through
a stand-in vllm package on CPU, one process per model), TensorBoard curves and the ablation report."""

import json
import math
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from testkit import REPO

from analysis import backends, curves, evaluate, metrics, report, run_folder
from data_tools import countdown
from reward_funcs import score_sample

# ---- metrics -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, c, k", [(5, 2, 1), (5, 2, 2), (5, 0, 3), (5, 4, 2), (8, 3, 4), (1, 1, 1)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_refuses_k_above_n():
    with pytest.raises(ValueError):
        metrics.pass_at_k(2, 1, 3)


def test_length_stats():
    assert metrics.length_stats(range(1, 11)) == {"mean": 5.5, "median": 5.5, "p90": 9.0}
    assert metrics.length_stats([]) == {"mean": 0.0, "median": 0.0, "p90": 0.0}


def sample(i, correct, reward, tokens=10, truncated=False, response="", formatted=True):
    return {
        "prompt_index": i,
        "correct": correct,
        "reward": reward,
        "formatted": formatted,
        "tokens": tokens,
        "truncated": truncated,
        "response": response,
    }


def test_summarize_by_hand():
    samples = [
        sample(0, True, 1.0, 10),
        sample(0, False, 0.1, 20, True),
        sample(1, False, 0.0, 30, True, "", False),
        sample(1, False, 0.1, 40),
    ]
    m = metrics.summarize(samples, 2)
    assert (m["prompts"], m["samples"]) == (2, 4)
    assert m["accuracy"] == 0.25 and m["mean_reward"] == pytest.approx(0.3) and m["format_rate"] == 0.75
    assert m["truncation_rate"] == 0.5 and m["length"]["mean"] == 25
    assert m["pass@1"] == 0.25 and m["pass@2"] == 0.5


POSITIVE = {
    "verification": [
        "Let me check: 44 - 19 = 25, 25 + 35 = 60.",
        "To verify, substitute back.",
        "(44 - 19) + 35 = 60, which is correct",
        "I'll double-check the sum.",
    ],
    "backtracking": [
        "Wait, that doesn't work.",
        "63 is too big.",
        "Let me try another way.",
        "Not quite, instead use 35.",
    ],
    "enumeration": [
        "First, let's try 44 + 19.",
        "Another combination: 35 * 2.",
        "What if we subtract?",
        "Alternatively, divide.",
    ],
}
NEGATIVE = ["44 + 19 = 63. 63 - 35 = 28.", "The answer is (44 - 19) + 35.", "<answer> 408 </answer>"]


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_behaviour_patterns(name):
    for text in POSITIVE[name]:
        assert metrics.behaviours(text)[name], text
    for text in NEGATIVE:
        assert not metrics.behaviours(text)[name], text


# ---- evaluation ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "countdown"
    assert countdown.main(["--out", str(out), "--train-size", "10", "--test-size", "6"]) == 0
    return out / "test.parquet"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, dataset):
    """A random 2-layer Qwen2 and a byte-level BPE tokenizer trained here, saved like a checkpoint."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    rows = evaluate.read_rows(dataset)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        [r["prompt"] for r in rows] * 3,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("model") / "final"
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_evaluate(model, dataset, out, *extra):
    return evaluate.main(["--model", str(model), "--data", str(dataset), "--out", str(out), *extra])


def rescored(out, dataset):
    rows = evaluate.read_rows(dataset)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for s in samples:
        prompt = rows[s["prompt_index"]]["prompt"]
        assert score_sample(prompt + s["response"], prompt, rows[s["prompt_index"]]["label"]).reward == s["reward"]
    return samples


def test_end_to_end_with_transformers_on_a_tiny_model(tiny_model, dataset, tmp_path):
    out = tmp_path / "eval"
    assert run_evaluate(tiny_model, dataset, out, "--max-new-tokens", "12", "--backend", "transformers") == 0
    assert {p.name for p in out.iterdir()} == {"results.json", "samples.jsonl", "summary.md"}
    results = json.loads((out / "results.json").read_text())
    samples = rescored(out, dataset)
    assert len(samples) == 6 and results["metrics"]["accuracy"] == sum(s["correct"] for s in samples) / 6
    assert results["metrics"]["mean_reward"] == pytest.approx(sum(s["reward"] for s in samples) / 6)
    assert results["settings"]["temperature"] == 0.0 and results["settings"]["backend"] == "transformers"
    assert all(s["tokens"] <= 12 for s in samples)
    assert "| accuracy |" in (out / "summary.md").read_text()
    assert run_evaluate(tiny_model, dataset, out) == 2  # no --force


def test_sampling_gives_pass_at_k(tiny_model, dataset, tmp_path):
    out = tmp_path / "eval"
    assert (
        run_evaluate(
            tiny_model,
            dataset,
            out,
            "--n",
            "3",
            "--temperature",
            "1.0",
            "--max-new-tokens",
            "8",
            "--backend",
            "transformers",
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())["metrics"]
    assert results["samples"] == 18 and {"pass@1", "pass@2", "pass@3"} <= set(results)
    rescored(out, dataset)


def test_run_folder_evaluates_final_and_checkpoints(tiny_model, dataset, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "final")
    shutil.copytree(tiny_model, run / "ckpt" / "global_step100_hf")
    (run / "recipe.yaml").write_text(f"recipe: {{name: r}}\neval: {{dataset: {dataset}}}\n")
    assert evaluate.main(["--run", str(run), "--max-new-tokens", "4", "--backend", "transformers"]) == 0
    assert {p.name for p in (run / "eval").iterdir()} == {
        "final",
        "ckpt_global_step100_hf",
        "accuracy_by_step.json",
        "accuracy_by_step.png",
    }
    curve = json.loads((run / "eval" / "accuracy_by_step.json").read_text())
    # the final model holds the checkpoint's weights: it gets no step of its own, and none made up
    assert [(p["step"], p["final"]) for p in curve] == [(100, False), (None, True)]


def test_a_model_that_cannot_be_loaded_is_one_line_and_nothing_written(dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    assert run_evaluate(tmp_path / "no-model", dataset, out, "--backend", "transformers") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m analysis.evaluate: error: cannot load the model {tmp_path / 'no-model'}: ")
    assert err.count("\n") == 1 and not out.exists()


# ---- one process per model: vLLM (a stand-in on CPU) keeps a model's memory until its process exits --------

STAND_IN_VLLM = REPO / "tests" / "stand_in_vllm"  # a `vllm` package: see its docstring
WRONG = " </think>\n<answer>1 + 2</answer><|endoftext|>"  # formatted, not a solution: reward 0.1
UNFORMATTED = " no idea<|endoftext|>"  # reward 0


def with_stand_in_vllm() -> dict:
    """This environment, with the stand-in vLLM and the repository importable in every process started."""
    path = [str(STAND_IN_VLLM), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def run_module(*args):
    """`python -m analysis.evaluate ARGS` as a user runs it, with the stand-in vLLM importable."""
    return subprocess.run(
        [sys.executable, "-m", "analysis.evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=with_stand_in_vllm(),
    )


def stand_in_model(folder, weights: bytes = b"w", **behaviour):
    """A model folder the stand-in vLLM loads: config.json, weights, and what it does (stand_in.json)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "stand_in.json").write_text(json.dumps(behaviour))
    return folder


def stand_in_run(tmp_path, dataset, behaviours=None):
    """A run folder as OpenRLHF leaves it: final/ and two Hugging Face checkpoints, distinct weights."""
    run = tmp_path / "run"
    behaviours = behaviours or {}
    completions = {"final": WRONG, "ckpt/global_step4_hf": WRONG, "ckpt/global_step2_hf": UNFORMATTED}
    for i, (name, completion) in enumerate(completions.items()):
        stand_in_model(run / name, bytes([i]) * 64, completion=completion, **behaviours.get(name, {}))
    (run / "recipe.yaml").write_text(f"recipe: {{name: r}}\neval: {{dataset: {dataset}}}\n")
    return run


def one_line(result):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m analysis.evaluate: error: "), result.stderr
    return lines[0]


def test_the_stand_in_vllm_refuses_a_second_model_in_one_process(tmp_path):
    """What fails on a GPU node: a second LLM built in a process that already built one (in-process evaluation)."""
    first, second = stand_in_model(tmp_path / "a"), stand_in_model(tmp_path / "b")
    code = (
        "import sys; from analysis.backends import Settings, make_backend\n"
        "make_backend('vllm', sys.argv[1], Settings()); make_backend('vllm', sys.argv[2], Settings())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, first, second],
        capture_output=True,
        text=True,
        timeout=120,
        env=with_stand_in_vllm(),
    )
    assert result.returncode != 0 and "Free memory on device" in result.stderr, result.stderr


def test_run_with_vllm_evaluates_each_model_in_a_process_of_its_own(dataset, tmp_path):
    run = stand_in_run(tmp_path, dataset)
    result = run_module("--run", run, "--backend", "vllm", "--max-new-tokens", "64")
    assert result.returncode == 0, result.stderr
    eval_dir = run / "eval"
    assert {p.name for p in eval_dir.iterdir()} == {
        "final",
        "ckpt_global_step2_hf",
        "ckpt_global_step4_hf",
        "accuracy_by_step.json",
        "accuracy_by_step.png",
    }
    for name, model, reward in (
        ("final", "final", 0.1),
        ("ckpt_global_step2_hf", "ckpt/global_step2_hf", 0.0),
        ("ckpt_global_step4_hf", "ckpt/global_step4_hf", 0.1),
    ):
        results = json.loads((eval_dir / name / "results.json").read_text())
        assert results["settings"]["model"] == str(run / model) and results["settings"]["backend"] == "vllm"
        assert results["metrics"]["prompts"] == 6 and results["metrics"]["mean_reward"] == pytest.approx(reward)
        rescored(eval_dir / name, dataset)
    curve = json.loads((eval_dir / "accuracy_by_step.json").read_text())
    assert [(p["model"], p["step"], p["final"]) for p in curve] == [
        ("ckpt/global_step2_hf", 2, False),
        ("ckpt/global_step4_hf", 4, False),
        ("final", None, True),  # no recipe to tell its step: not plotted at a made-up one
    ]
    assert [p["mean_reward"] for p in curve] == pytest.approx([0.0, 0.1, 0.1])


@pytest.mark.parametrize(
    "fail, says",
    [
        ("crash", "was killed by SIGKILL"),
        ("load", "cannot load the model {model}: Free memory on device"),
        ("generate", "CUDA out of memory"),
    ],
)
def test_a_model_that_fails_in_its_process_is_one_line_naming_it(dataset, tmp_path, fail, says):
    run = stand_in_run(tmp_path, dataset, {"ckpt/global_step4_hf": {"fail": fail}})
    result = run_module("--run", run, "--backend", "vllm", "--max-new-tokens", "64")
    line = one_line(result)
    model = run / "ckpt" / "global_step4_hf"
    assert str(model) in line and says.format(model=model) in line, line
    # the models before it are written whole; nothing of it, no curve, no temporary folder
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["ckpt_global_step2_hf", "final"]
    assert (run / "eval" / "final" / "results.json").is_file()


def test_a_model_vllm_cannot_find_is_one_line(dataset, tmp_path):
    result = run_module(
        "--model", tmp_path / "nowhere", "--data", dataset, "--out", tmp_path / "eval", "--backend", "vllm"
    )
    assert f"cannot load the model {tmp_path / 'nowhere'}: " in one_line(result)
    assert not (tmp_path / "eval").exists()


def test_backend_vllm_without_vllm_says_so(tiny_model, dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed, whatever this machine has
    assert run_evaluate(tiny_model, dataset, tmp_path / "eval", "--backend", "vllm") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend vllm needs vLLM (pip install vllm==" in err, err


def test_run_out_holds_each_models_results_and_the_curve(dataset, tmp_path):
    run = stand_in_run(tmp_path, dataset)
    out = tmp_path / "elsewhere" / "evals"
    result = run_module("--run", run, "--out", out, "--backend", "vllm", "--max-new-tokens", "64")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {
        "final",
        "ckpt_global_step2_hf",
        "ckpt_global_step4_hf",
        "accuracy_by_step.json",
        "accuracy_by_step.png",
    }
    assert not (run / "eval").exists()
    assert len(json.loads((out / "accuracy_by_step.json").read_text())) == 3
    assert one_line(run_module("--run", run, "--out", out, "--backend", "vllm")).endswith(
        "already exists: pass --force to replace it, or choose another --out"
    )


def test_an_out_that_would_replace_a_model_or_the_data_is_refused(tiny_model, dataset, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "final")
    shutil.copytree(tiny_model, run / "ckpt" / "global_step100_hf")
    (run / "recipe.yaml").write_text(f"eval: {{dataset: {dataset}}}\n")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for argv in (
        ["--run", run, "--out", run],  # would put results in place of run/final
        ["--model", run / "final", "--data", dataset, "--out", run / "final"],
        ["--model", run / "final", "--data", dataset, "--out", dataset.parent],
    ):
        assert evaluate.main([*map(str, argv), "--force", "--backend", "transformers", "--max-new-tokens", "2"]) == 2
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before and dataset.is_file()


def write_recipe(run, train, **flags):
    """The resolved recipe the launcher saves in a run folder (launch.runs.resolve and save)."""
    from launch import recipe, runs

    base = recipe.load(REPO / "recipes/countdown/qwen2.5-1.5b-ppo-1gpu.yaml")
    changes = {"data.prompt_dataset": train, "train.micro_batch_size": 1, "rollout.micro_batch_size": 1, **flags}
    base = recipe.apply_overrides(base, [f"{key}={value}" for key, value in changes.items()])
    runs.save(run, runs.resolve(base, run), "python3 -m openrlhf.cli.train_ppo_ray ...")


STEPS = {"rollout.batch_size": 2, "train.batch_size": 2, "train.num_episodes": 2}  # with 10 training prompts: 10 steps


def test_the_final_model_is_plotted_at_the_step_the_recipe_ends_on(dataset, tmp_path):
    run = stand_in_run(tmp_path, dataset)
    # 10 training prompts in rollout batches of 2 for 2 episodes: 10 steps, the final model saved after step 10
    write_recipe(run, dataset.with_name("train.parquet"), **STEPS)
    result = run_module("--run", run, "--data", dataset, "--backend", "vllm", "--max-new-tokens", "64")
    assert result.returncode == 0, result.stderr
    curve = json.loads((run / "eval" / "accuracy_by_step.json").read_text())
    assert [(p["step"], p["final"]) for p in curve] == [(2, False), (4, False), (10, True)]


def test_a_final_model_with_a_checkpoints_weights_gets_no_step_of_its_own(dataset, tmp_path):
    run = stand_in_run(tmp_path, dataset)
    write_recipe(run, dataset.with_name("train.parquet"), **STEPS)
    shutil.copy(run / "ckpt" / "global_step4_hf" / "model.safetensors", run / "final")
    result = run_module("--run", run, "--data", dataset, "--backend", "vllm", "--max-new-tokens", "64")
    assert result.returncode == 0, result.stderr
    final = json.loads((run / "eval" / "accuracy_by_step.json").read_text())[-1]
    assert (final["step"], final["final"], final["same_weights_as"]) == (None, True, "ckpt/global_step4_hf")


def test_a_checkpoint_saved_at_the_last_step_holds_the_final_model(dataset, tmp_path):
    run = stand_in_run(tmp_path, dataset)
    write_recipe(run, dataset.with_name("train.parquet"), **STEPS)  # 10 steps
    last = stand_in_model(run / "ckpt" / "global_step10_hf", b"saved separately, same step")
    checkpoints = {4: run / "ckpt" / "global_step4_hf", 10: last}
    assert run_folder.final_step(run, checkpoints) == (None, last)
    assert run_folder.final_step(run, {4: checkpoints[4]}) == (10, None)
    (run / "recipe.yaml").write_text("recipe: {name: r}\n")  # not a resolved recipe: the step cannot be known
    assert run_folder.final_step(run, {4: checkpoints[4]}) == (None, None)


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_an_empty_dataset_is_one_line_naming_the_file(tiny_model, tmp_path, capsys, suffix):
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = tmp_path / f"test.{suffix}"
    if suffix == "parquet":
        pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "label": pa.array([], pa.string())}), empty)
    else:
        empty.write_text("")
    out = tmp_path / "eval"
    assert run_evaluate(tiny_model, empty, out, "--backend", "transformers") == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m analysis.evaluate: error: ") and err.count("\n") == 1
    assert f"{empty}: no rows" in err and not out.exists()


def test_an_unwritable_out_is_never_blamed_on_the_model(dataset, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    for argv in (
        ["--model", tmp_path / "no-model", "--data", dataset, "--out", tmp_path / "a-file" / "eval"],
        ["--model", tmp_path / "no-model", "--data", dataset, "--out", tmp_path / "a-file"],
    ):
        assert evaluate.main([*map(str, argv), "--force", "--backend", "transformers"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "choose another --out" in err and "cannot load the model" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_runs_eval_dataset_is_every_file_of_its_list(dataset, tmp_path):
    (tmp_path / "recipe.yaml").write_text(f"eval: {{dataset: 'data/countdown/test.parquet, {dataset}'}}\n")
    assert run_folder.run_dataset(tmp_path) == [REPO / "data/countdown/test.parquet", dataset]
    rows = evaluate.read_rows(dataset)
    assert evaluate.read_dataset([dataset, dataset]) == rows + rows
    assert evaluate.read_dataset([dataset, dataset], limit=8) == (rows + rows)[:8]


class ReferenceBackend:
    """A model that always writes the reference solution: the metrics must then be perfect."""

    name = "reference"
    tokenizer = None

    def __init__(self, rows):
        self.answers = {r["prompt"]: json.loads(r["label"])["solution"] for r in rows}

    def generate(self, prompts):
        return [
            [
                backends.Completion(
                    f" Let me check: ok </think>\n<answer>{self.answers[p]}</answer><|endoftext|>", 20, False
                )
            ]
            for p in prompts
        ]


def test_metrics_of_a_perfect_model(dataset):
    rows = evaluate.read_rows(dataset)
    results, samples = evaluate.evaluate(ReferenceBackend(rows), rows, backends.Settings(), progress=False)
    assert results["accuracy"] == results["mean_reward"] == results["format_rate"] == 1.0
    assert results["verification_rate"] == 1.0 and results["backtracking_rate"] == 0.0
    assert set(results["by_numbers"]) <= {"3", "4"} and sum(m["prompts"] for m in results["by_numbers"].values()) == 6


def test_vllm_backend_up_to_the_call(monkeypatch):
    calls = {}

    class LLM:
        def __init__(self, **kwargs):
            calls["init"] = kwargs

        def get_tokenizer(self):
            return None

        def generate(self, prompts, params):
            calls["prompts"], calls["params"] = prompts, params
            out = SimpleNamespace(text=" <answer>1</answer>", token_ids=[1, 2, 3], finish_reason="stop")
            return [SimpleNamespace(outputs=[out] * params.kwargs["n"]) for _ in prompts]

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    settings = backends.Settings(n=4, temperature=0.7, top_p=0.9, max_new_tokens=256, seed=3)
    backend = backends.VLLMBackend("Qwen/Qwen2.5-3B", settings)
    got = backend.generate(["p1", "p2"])
    assert calls["init"]["model"] == "Qwen/Qwen2.5-3B" and calls["prompts"] == ["p1", "p2"]
    assert calls["params"].kwargs == {
        "n": 4,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 256,
        "seed": 3,
        "skip_special_tokens": False,
    }
    assert len(got) == 2 and len(got[0]) == 4 and got[0][0] == backends.Completion(" <answer>1</answer>", 3, False)


# ---- curves and report ---------------------------------------------------------------------------------------


def write_run(root, name, steps, scale):
    from torch.utils.tensorboard import SummaryWriter

    run = root / name / "20260101-000000"
    writer = SummaryWriter(log_dir=str(run / "tensorboard" / "ppo_0101T00:00"))
    written = {}
    for tag in ("train/reward", "train/accuracy", "train/response_length", "eval/eval_countdown_pass1"):
        points = [(s, scale * (s + 1) / steps + (100 if "length" in tag else 0)) for s in range(steps)]
        for s, v in points:
            writer.add_scalar(tag, v, s)
        written[tag] = points
    writer.close()
    (run / "recipe.yaml").write_text(f"recipe: {{name: {name}}}\n")
    return run, written


def test_curves_plot_what_was_written(tmp_path):
    a, written_a = write_run(tmp_path / "runs", "algorithm-ppo", 20, 0.5)
    b, _ = write_run(tmp_path / "runs", "algorithm-grpo", 10, 0.8)
    plotted = curves.plot([a, b], tmp_path / "png", weight=0.5)
    assert {p.name for p in (tmp_path / "png").iterdir()} == {
        "reward.png",
        "accuracy.png",
        "response_length.png",
        "eval_reward.png",
    }
    series = plotted["accuracy"][curves.run_name(a)]
    assert [(s, pytest.approx(v)) for s, v in written_a["train/accuracy"]] == series
    assert len(plotted["reward"]) == 2


def test_report_table_and_missing_runs(tmp_path):
    runs = tmp_path / "runs"
    for variant, accuracy in (("ppo", 0.61), ("grpo", 0.55)):
        run, _ = write_run(runs, f"algorithm-{variant}", 5, accuracy)
        (run / "eval" / "final").mkdir(parents=True)
        (run / "eval" / "final" / "results.json").write_text(
            json.dumps(
                {
                    "metrics": {
                        "accuracy": accuracy,
                        "mean_reward": accuracy + 0.03,
                        "format_rate": 0.97,
                        "length": {"mean": 210},
                    }
                }
            )
        )
    result = report.build(REPO / "recipes/ablations/algorithm.yaml", runs, tmp_path / "report")
    table = (tmp_path / "report" / "report.md").read_text()
    assert "| ppo | 0.610 | 0.640 | 0.970 | 210 |" in table and "| grpo | 0.550 | 0.580 | 0.970 | 210 |" in table
    assert "| rloo | missing |" in table and set(result["missing"]) == {
        "algorithm-reinforce",
        "algorithm-reinforce-baseline",
        "algorithm-rloo",
        "algorithm-dr-grpo",
    }
    assert "Missing (no evaluated run): " in table and "oat-zero" in table  # the published figure for GRPO
    assert (tmp_path / "report" / "accuracy.png").is_file() and (
        tmp_path / "report" / "curves" / "reward.png"
    ).is_file()
    page = (tmp_path / "report" / "runs.html").read_text()  # the run report's page of the variants' runs
    assert "[runs.html](runs.html)" in table and "algorithm-ppo" in page and "algorithm-grpo" in page


def test_a_runs_checkpoints_come_by_step_and_best_copies_only_when_alone(tmp_path):
    from analysis.evaluate import run_models

    for folder in (
        "final",
        "ckpt/global_step1000_hf",
        "ckpt/global_step200_hf",
        "ckpt/best_global_step200_hf",
        "ckpt/best_global_step300_hf",
    ):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "config.json").write_text("{}")
    (tmp_path / "ckpt/_actor/global_step200").mkdir(parents=True)  # DeepSpeed's own checkpoint: not a model
    assert [p.relative_to(tmp_path).as_posix() for p in run_models(tmp_path)] == [
        "final",
        "ckpt/global_step200_hf",
        "ckpt/best_global_step300_hf",
        "ckpt/global_step1000_hf",
    ]


def test_curves_and_report_refuse_an_existing_out_without_force(tmp_path, capsys):
    run, _ = write_run(tmp_path / "runs", "algorithm-ppo", 5, 0.5)
    (run / "eval" / "final").mkdir(parents=True)
    (run / "eval" / "final" / "results.json").write_text(
        json.dumps({"metrics": {"accuracy": 0.5, "mean_reward": 0.6, "format_rate": 0.9, "length": {"mean": 100}}})
    )
    ablation = str(REPO / "recipes/ablations/algorithm.yaml")
    for main, args in ((curves.main, [str(run)]), (report.main, [ablation, "--runs-dir", str(tmp_path / "runs")])):
        out = tmp_path / "out"
        out.mkdir()
        (out / "old").write_text("kept")
        assert main([*args, "--out", str(out)]) == 2
        assert "already exists: pass --force" in capsys.readouterr().err and [p.name for p in out.iterdir()] == ["old"]
        assert main([*args, "--out", str(out), "--force"]) == 0
        assert "old" not in {p.name for p in out.iterdir()} and any(out.glob("*.png"))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "runs"]  # no temporary folder left
        shutil.rmtree(out)


def test_evaluate_refuses_an_existing_out_before_loading_anything(tmp_path, monkeypatch):
    from analysis import evaluate

    (tmp_path / "eval").mkdir()
    monkeypatch.setattr(evaluate, "make_backend", lambda *a: pytest.fail("a model was loaded"))
    monkeypatch.setattr(evaluate, "evaluate_model", lambda *a: pytest.fail("a model was evaluated"))
    assert evaluate.main(["--model", "x", "--data", "y.parquet", "--out", str(tmp_path / "eval")]) == 2


# ---- summary.md: groups in numeric order, and only the groupings a task has --------------------------------


class FixedBackend:
    """A model that writes the same completion for every prompt."""

    name = "fixed"
    tokenizer = None

    def __init__(self, completion=" </think>\n<answer>1 + 2</answer><|endoftext|>"):
        self.completion = completion

    def generate(self, prompts):
        return [[backends.Completion(self.completion, 5, False)] for _ in prompts]


def countdown_row(numbers, solutions):
    label = {"task": "countdown", "target": 10, "numbers": numbers}
    return {"prompt": f"User: {numbers}\nAssistant:", "label": json.dumps(label), "solutions": solutions}


def multiply_row(a, b):
    label = {"task": "multiply", "numbers": [a, b], "product": a * b}
    return {"prompt": f"User: {a} * {b}\nAssistant:", "label": json.dumps(label)}


SETTINGS_RECORD = {"model": "m", "data": "d", "n": 1, "temperature": 0.0, "backend": "fixed"}


def test_groups_come_in_numeric_order_in_results_and_summary():
    rows = [countdown_row(list(range(1, 1 + count)), solutions) for count, solutions in ((10, 40), (3, 12), (4, 5))]
    rows += [countdown_row([1, 2, 3], 1), countdown_row([1, 2, 3, 4], None)]
    results, _ = evaluate.evaluate(FixedBackend(), rows, backends.Settings(), progress=False)
    assert list(results["by_numbers"]) == ["3", "4", "10"]
    bands = ["1-2 (hard)", "3-8", "9-32", "33+ (easy)", "unrated"]
    assert list(results["by_difficulty"]) == bands
    summary = evaluate.summary_markdown(results, SETTINGS_RECORD)
    positions = [summary.index(f"| {band} |") for band in bands]
    assert positions == sorted(positions), summary
    assert summary.index("| 4 | 2 |") < summary.index("| 10 | 1 |")


def test_multiplication_has_no_numbers_or_difficulty_sections():
    rows = [multiply_row(12, 34), multiply_row(7, 8)]
    results, samples = evaluate.evaluate(
        FixedBackend(" <answer>408</answer>"), rows, backends.Settings(), progress=False
    )
    assert results["accuracy"] == 0.5 and len(samples) == 2
    assert results["by_numbers"] == {} and results["by_difficulty"] == {}
    summary = evaluate.summary_markdown(results, SETTINGS_RECORD)
    assert "By how many numbers" not in summary and "By difficulty" not in summary, summary


def test_puzzles_without_a_solver_rating_have_no_difficulty_section():
    rows = [countdown_row([1, 2, 3], None), countdown_row([1, 2, 3, 4], None), multiply_row(2, 3)]
    results, _ = evaluate.evaluate(FixedBackend(), rows, backends.Settings(), progress=False)
    assert list(results["by_numbers"]) == ["3", "4"]  # the Countdown puzzles only
    assert results["by_difficulty"] == {}
    summary = evaluate.summary_markdown(results, SETTINGS_RECORD)
    assert "## By how many numbers" in summary and "By difficulty" not in summary


# ---- report: a results.json it cannot use is reported, never the end of the report ------------------------

GOOD_METRICS = {"accuracy": 0.5, "mean_reward": 0.6, "format_rate": 0.9, "length": {"mean": 100}}


def metrics_json(**changes):
    return json.dumps({"metrics": {**GOOD_METRICS, **changes}})


MALFORMED_RESULTS = {  # what results.json holds -> what the report must say about it
    "empty": ("", "not JSON"),
    "not JSON": ("{'metrics': ", "not JSON"),
    "a list": ("[1, 2]", 'no "metrics" object'),
    "no metrics": ("{}", 'no "metrics" object'),
    "metrics a list": ('{"metrics": [0.5]}', 'no "metrics" object'),
    "accuracy left out": (json.dumps({"metrics": {k: v for k, v in GOOD_METRICS.items() if k != "accuracy"}}), "no"),
    "accuracy null": (metrics_json(accuracy=None), "not a number"),
    "a string for a number": (metrics_json(accuracy="0.5"), "not a number"),
    "true for a number": (metrics_json(format_rate=True), "not a number"),
    "NaN": (metrics_json(accuracy=0.123).replace("0.123", "NaN"), "NaN"),
    "Infinity": (metrics_json(mean_reward=0.123).replace("0.123", "-Infinity"), "Infinity"),
    "a number too big for a float": (metrics_json(mean_reward=0.123).replace("0.123", "1e999"), "inf"),
    "accuracy above 1": (metrics_json(accuracy=1.5), "outside [0, 1]"),
    "negative": (metrics_json(format_rate=-0.1), "outside [0, 1]"),
    "length not an object": (metrics_json(length=100), '"length"'),
    "negative length": (metrics_json(length={"mean": -3}), "length"),
    "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, "not JSON"),
    "not UTF-8": (b"\xff\xfe{}", "cannot be read"),
}


def write_results(run, content):
    path = run / "eval" / "final" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("kind", MALFORMED_RESULTS)
def test_report_says_which_results_it_cannot_use_and_reports_the_rest(tmp_path, capsys, kind):
    content, says = MALFORMED_RESULTS[kind]
    runs = tmp_path / "runs"
    good, _ = write_run(runs, "algorithm-ppo", 5, 0.5)
    write_results(good, json.dumps({"metrics": GOOD_METRICS}))
    bad, _ = write_run(runs, "algorithm-grpo", 5, 0.5)
    path = write_results(bad, content)
    out = tmp_path / "report"
    ablation = str(REPO / "recipes/ablations/algorithm.yaml")
    assert report.main([ablation, "--runs-dir", str(runs), "--out", str(out)]) == 0
    table = (out / "report.md").read_text()
    assert "| ppo | 0.500 | 0.600 | 0.900 | 100 |" in table
    row = next(line for line in table.splitlines() if line.startswith("| grpo |"))
    assert "| grpo | unreadable |" in row and str(bad) in row, row
    assert f"algorithm-grpo: {path}: " in table and says in table.split(f"{path}: ", 1)[1].splitlines()[0], table
    captured = capsys.readouterr()
    assert "unreadable: algorithm-grpo" in captured.out
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(path) in warnings[0], captured.err
    assert (out / "accuracy.png").is_file()


def test_report_reads_a_results_json_that_is_a_folder_as_unreadable(tmp_path, capsys):
    runs = tmp_path / "runs"
    bad, _ = write_run(runs, "algorithm-grpo", 5, 0.5)
    (bad / "eval" / "final" / "results.json").mkdir(parents=True)
    out = tmp_path / "report"
    assert (
        report.main([str(REPO / "recipes/ablations/algorithm.yaml"), "--runs-dir", str(runs), "--out", str(out)]) == 0
    )
    assert "| grpo | unreadable |" in (out / "report.md").read_text()
    assert "cannot be read" in capsys.readouterr().err


# ---- curves: a damaged event file is named, with what was read; sparse series are drawn as their points ---------


def event_file(run):
    return next((run / "tensorboard").rglob("events.out.tfevents.*"))


def damage(run, how):
    """Damage the run's event file as a crash, a bad disk or a wrong copy would."""
    path = event_file(run)
    data = path.read_bytes()
    path.write_bytes(
        {
            "truncated": data[: len(data) * 2 // 3],
            "corrupt": data[: len(data) // 2] + bytes(40) + data[len(data) // 2 + 40 :],
            "not an event file": b"these are not the records you are looking for" * 20,
            "empty": b"",
        }[how]
    )
    return path


@pytest.mark.parametrize(
    "how, says",
    [
        ("truncated", "truncated"),
        ("corrupt", "corrupt"),
        ("not an event file", "not a TensorBoard event file"),
        ("empty", "empty"),
    ],
)
def test_curves_warn_of_a_damaged_event_file_with_what_was_read(tmp_path, capsys, how, says):
    good, written = write_run(tmp_path / "runs", "algorithm-ppo", 40, 0.5)
    bad, _ = write_run(tmp_path / "runs", "algorithm-grpo", 40, 0.8)
    path = damage(bad, how)
    out = tmp_path / "curves"
    assert curves.main([str(good), str(bad), "--out", str(out)]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"python -m analysis.curves: warning: {path}: {says}"), warnings[0]
    read = [point for points in curves.read_scalars(bad, warn=lambda line: None).values() for point in points]
    if read:
        steps = f"steps {min(read)[0]} to {max(read)[0]}"
        assert f"read {len(read)} values" in warnings[0] and steps in warnings[0], warnings[0]
        assert 0 < len(read) < 4 * 40
    else:
        assert "nothing read" in warnings[0], warnings[0]
    assert (out / "reward.png").is_file()
    assert curves.read_scalars(good) == {tag: [(s, pytest.approx(v)) for s, v in p] for tag, p in written.items()}


def test_a_run_without_damage_gives_no_warning(tmp_path, capsys):
    good, _ = write_run(tmp_path / "runs", "algorithm-ppo", 40, 0.5)
    assert curves.main([str(good), "--out", str(tmp_path / "curves")]) == 0
    assert capsys.readouterr().err == ""


def test_a_sparse_series_is_drawn_as_its_points_never_averaged_across_steps(tmp_path, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "runs" / "r" / "20260101-000000"
    writer = SummaryWriter(log_dir=str(run / "tensorboard" / "train"))
    held_out = [(0, 0.14), (100, 0.60), (200, 0.64)]  # OpenRLHF evaluates every eval_steps
    for step, value in held_out:
        writer.add_scalar("eval/eval_countdown_pass1", value, step)
    for step in range(201):
        writer.add_scalar("train/reward", step % 2, step)  # logged every step
    writer.close()
    axes = {}
    subplots = curves.plt.subplots

    def recording_subplots(*args, **kwargs):
        fig, ax = subplots(*args, **kwargs)
        axes[len(axes)] = ax
        return fig, ax

    monkeypatch.setattr(curves.plt, "subplots", recording_subplots)
    plotted = curves.plot([run], tmp_path / "png", weight=0.9)
    assert list(plotted) == ["reward", "eval_reward"]
    reward, eval_reward = (axes[0].get_lines(), axes[1].get_lines())
    assert len(eval_reward) == 1 and eval_reward[0].get_marker() == "o"
    assert list(eval_reward[0].get_xdata()) == [0, 100, 200]
    assert list(eval_reward[0].get_ydata()) == pytest.approx([0.14, 0.60, 0.64])  # not 0.14 -> 0.19 -> 0.23
    raw, smoothed = reward  # every step: the raw series faint, the moving average on top
    assert raw.get_alpha() < 1 and list(smoothed.get_ydata()) == pytest.approx(
        curves.smooth(list(raw.get_ydata()), 0.9)
    )


# ---- an --out that cannot be written: one line naming it, before any work, and nothing lost ------------------

UNDER_PROC = "/proc/no-such-process/out"  # no one can create a folder there, root included


@pytest.mark.parametrize("where", ["under a file", "a file, with --force", "under /proc"])
def test_curves_and_report_name_an_out_they_cannot_write(tmp_path, capsys, where):
    run, _ = write_run(tmp_path / "runs", "algorithm-ppo", 5, 0.5)
    write_results(run, json.dumps({"metrics": GOOD_METRICS}))
    (tmp_path / "a-file").write_text("kept")
    out, extra, says = {
        "under a file": (tmp_path / "a-file" / "out", [], f"cannot create {tmp_path / 'a-file' / 'out'}: "),
        "a file, with --force": (tmp_path / "a-file", ["--force"], f"{tmp_path / 'a-file'} exists and is not a folder"),
        "under /proc": (UNDER_PROC, [], "cannot write into /proc"),
    }[where]
    ablation = str(REPO / "recipes/ablations/algorithm.yaml")
    for main, args in ((curves.main, [str(run)]), (report.main, [ablation, "--runs-dir", str(tmp_path / "runs")])):
        assert main([*args, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err and "choose another --out" in err, err
        assert (tmp_path / "a-file").read_text() == "kept"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "runs"]


def test_evaluate_names_an_out_under_proc_before_loading_a_model(tiny_model, dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate, "make_backend", lambda *a: pytest.fail("a model was loaded"))
    for argv in (
        ["--model", tiny_model, "--data", dataset, "--out", UNDER_PROC],
        ["--model", tiny_model, "--data", dataset, "--out", "/proc/out"],
    ):
        assert evaluate.main([*map(str, argv), "--backend", "transformers"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot write into /proc" in err and "choose another --out" in err, err


def smoke_run(tmp_path):
    run = tmp_path / "smoke-run"
    run.mkdir()
    (run / "smoke.jsonl").write_text(json.dumps({"stage": "preflight", "status": "ok", "line": "fine"}) + "\n")
    return run


def test_smoke_table_that_cannot_be_written_is_one_line_naming_it(tmp_path, capsys):
    from analysis import smoke

    run = smoke_run(tmp_path)
    (run / "smoke.md").mkdir()  # --force must not replace a folder, nor fail with a traceback
    (run / "smoke.md" / "notes").write_text("kept")
    assert smoke.main([str(run), "--force"]) == 2
    err = capsys.readouterr().err
    assert err == f"python -m analysis.smoke: error: {run / 'smoke.md'} exists and is not a file: remove it\n", err
    assert sorted(p.name for p in run.iterdir()) == ["smoke.jsonl", "smoke.md"]
    assert (run / "smoke.md" / "notes").read_text() == "kept"


def test_smoke_table_leaves_no_temporary_file_when_writing_fails(tmp_path, capsys, monkeypatch):
    from analysis import smoke

    run = smoke_run(tmp_path)

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(smoke.Path, "write_text", full_disk)
    assert smoke.main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m analysis.smoke: error: cannot write {run / 'smoke.md'} (No space left on device)")
    assert err.count("\n") == 1 and sorted(p.name for p in run.iterdir()) == ["smoke.jsonl"]


# ---- the backends: vLLM that cannot be imported, a hub that cannot be reached: one line, in seconds ---------


def test_backend_vllm_that_cannot_be_imported_does_not_blame_the_model(
    tiny_model, dataset, tmp_path, capsys, monkeypatch
):
    broken = tmp_path / "broken" / "vllm"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("import a_library_vllm_needs_and_lacks  # noqa\n")
    monkeypatch.syspath_prepend(str(broken.parent))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    assert run_evaluate(tiny_model, dataset, tmp_path / "eval", "--backend", "vllm") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot load the model" not in err, err
    assert "vLLM cannot be imported (No module named 'a_library_vllm_needs_and_lacks')" in err, err


def test_a_hub_name_in_offline_mode_is_one_line(dataset, tmp_path, capsys):
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # conftest: the tests never reach the hub
    assert run_evaluate("no-such-org/no-such-model", dataset, tmp_path / "eval", "--backend", "transformers") == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m analysis.evaluate: error: cannot load the model no-such-org/no-such-model: ")
    assert err.count("\n") == 1 and not (tmp_path / "eval").exists()


def test_a_hub_that_does_not_answer_is_asked_once_not_retried(dataset, tmp_path):
    """Not in offline mode, and the hub is down (here: a local server answering 503 to everything, as a hub
    behind a failing proxy would). huggingface_hub alone retries each file with back-off, about a minute in all;
    the evaluation asks the hub once, then reads the local cache only: no request is ever repeated."""
    import http.server
    import threading

    requests = []

    class Down(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            requests.append(f"{self.command} {self.path}")
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Down)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HOME": str(tmp_path / "hf-home")}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "analysis.evaluate", "--model", "no-such-org/no-such-model", "--data", str(dataset)]
            + ["--out", str(tmp_path / "eval"), "--backend", "transformers"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
            env=env,
        )
    finally:
        server.shutdown()
    line = one_line(result)
    assert "cannot load the model no-such-org/no-such-model: " in line and "HTTP 503" in line, line
    assert len(requests) == len(set(requests)), requests
    assert not any("no-such-model" in request for request in requests), requests


# ---- a curriculum's stages, tasks mixed, dynamic filtering ------------------------------------------------------


def write_scalars(folder, series):
    """TensorBoard scalars as OpenRLHF's TensorboardLogger writes them: {tag: [(step, value)]}."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder / "tensorboard" / "ppo_0101T00:00"))
    for tag, points in series.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


def write_stage(run, index, name, steps, accuracy, held_out):
    """A curriculum's stage folder (launch/stages.py): its recipe, its logs from step 1, its evaluation."""
    stage = run / f"stage-{index}"
    stage.mkdir(parents=True)
    (stage / "recipe.yaml").write_text(f"recipe: {{name: c, stage: {{index: {index}, name: {name}}}}}\n")
    write_scalars(
        stage,
        {
            "train/accuracy": [(s, accuracy) for s in range(1, steps + 1)],
            "eval/eval_countdown_pass1": [(steps, accuracy)],
        },
    )
    (stage / "eval").mkdir()
    (stage / "eval" / "accuracy_by_step.json").write_text(json.dumps(held_out))


def test_a_curriculums_stages_are_joined_into_one_curve(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "curriculum-easy-to-hard" / "20260101-000000"
    write_stage(
        run, 1, "easy", 10, 0.2, [{"model": "ckpt/global_step4_hf", "step": 4, "final": False, "accuracy": 0.1}]
    )
    write_stage(run, 2, "hard", 5, 0.6, [{"model": "final", "step": None, "final": True, "accuracy": 0.5}])
    series, stages = curves.read_run(run)
    assert [(s.name, s.offset, s.steps) for s in stages] == [("easy", 0, 10), ("hard", 10, 5)]
    accuracy = series["train/accuracy"]
    assert [step for step, _ in accuracy] == list(range(1, 16))  # stage 2's steps follow stage 1's last
    assert accuracy[9][1] == pytest.approx(0.2) and accuracy[10][1] == pytest.approx(0.6)
    assert series["eval/eval_countdown_pass1"] == [(10, pytest.approx(0.2)), (15, pytest.approx(0.6))]
    # analysis.evaluate's points: a stage's final model (no step of its own) at its stage's end
    assert series["derived/held_out"] == [(4, 0.1), (15, 0.5)]
    lines = []
    monkeypatch.setattr(curves.plt.Axes, "axvline", lambda self, x, **kw: lines.append(x))
    plotted = curves.plot([run], tmp_path / "png")
    assert set(lines) == {10} and "held_out_accuracy" in plotted  # where the second stage begins


def test_the_report_reads_a_curriculums_last_stage_and_its_joined_curves(tmp_path):
    runs_dir = tmp_path / "runs"
    for variant, accuracy in (("easy-to-hard", 0.5), ("hard-to-easy", 0.05)):
        run = runs_dir / f"curriculum-{variant}" / "20260101-000000"
        write_stage(run, 1, "a", 4, 0.1, [])
        write_stage(run, 2, "b", 4, accuracy, [])
        results = run / "stage-2" / "eval" / "final"
        results.mkdir(parents=True)
        figures = {"accuracy": accuracy, "mean_reward": accuracy, "format_rate": 1.0, "length": {"mean": 300}}
        (results / "results.json").write_text(json.dumps({"metrics": figures}))
    result = report.build(REPO / "recipes/ablations/curriculum.yaml", runs_dir, tmp_path / "report")
    table = (tmp_path / "report" / "report.md").read_text()
    assert "| easy-to-hard | 0.500 |" in table and "| hard-to-easy | 0.050 |" in table
    assert result["missing"] == ["curriculum-random"] and "about 0.4 with a random order" in table
    assert (tmp_path / "report" / "curves" / "accuracy.png").is_file()


def test_training_accuracy_per_task_and_held_out_reward_per_datasource(tmp_path):
    mixed, single = tmp_path / "mixed", tmp_path / "single"
    steps = range(1, 4)
    write_scalars(
        mixed,
        {
            # step means of reward_funcs.task_logs' keys: 60% countdown samples, of which half correct
            "train/countdown_share": [(s, 0.6) for s in steps],
            "train/countdown_correct": [(s, 0.3) for s in steps],
            "train/countdown_format": [(s, 0.6) for s in steps],
            "train/multiply_share": [(s, 0.4) for s in steps],
            "train/multiply_correct": [(s, 0.1 * s) for s in steps],
            "train/multiply_format": [(s, 0.4) for s in steps],
            "eval/eval_countdown_pass1": [(3, 0.4)],
            "eval/eval_multiply_pass1": [(3, 0.7)],
        },
    )
    write_scalars(
        single,
        {
            "train/countdown_share": [(1, 1.0)],
            "train/countdown_correct": [(1, 0.5)],
            "train/countdown_format": [(1, 1.0)],
            "eval/eval_countdown_pass1": [(1, 0.5)],
        },
    )
    plotted = curves.plot([mixed, single], tmp_path / "png")
    by_task = plotted["accuracy_by_task"]
    assert set(by_task) == {"mixed [countdown]", "mixed [multiply]"}  # a one-task run has no such lines
    assert by_task["mixed [countdown]"] == [(s, pytest.approx(0.5)) for s in steps]
    assert by_task["mixed [multiply]"] == [(s, pytest.approx(0.1 * s / 0.4)) for s in steps]
    assert set(plotted["eval_reward"]) == {"mixed [countdown]", "mixed [multiply]", "single"}


def test_the_prompts_dynamic_filtering_kept_not_openrlhfs_logged_rate(tmp_path):
    run = tmp_path / "run"
    write_scalars(run, {"train/dynamic_filtering_pass_rate": [(1, 800.0), (2, 600.0), (3, 200.0)]})
    (run / "recipe.yaml").write_text("recipe: {name: r}\nrollout: {n_samples_per_prompt: 8}\n")
    plotted = curves.plot([run], tmp_path / "png")
    assert plotted["kept_prompts"][curves.run_name(run)] == [(1, 1.0), (2, 0.75), (3, 0.25)]


def test_task_accuracy_leaves_out_a_task_without_samples():
    means = {"countdown_share": 1.0, "countdown_correct": 0.25, "countdown_format": 0.5, "multiply_share": 0.0}
    means |= {"multiply_correct": 0.0, "multiply_format": 0.0, "accuracy": 0.25}
    assert metrics.task_accuracy(means) == {"countdown": {"share": 1.0, "accuracy": 0.25, "format": 0.5}}
