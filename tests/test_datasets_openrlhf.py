"""Our dataset files through OpenRLHF 0.11.2's own loader: `blending_datasets` reads them as `--data.prompt_dataset`
does, `PromptDataset` builds the prompts and labels the trainer sends to the engines and the reward."""

import json
from types import SimpleNamespace

import pytest
from openrlhf.datasets import PromptDataset
from openrlhf.datasets.utils import blending_datasets
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from data_tools import countdown, multiply
from data_tools.templates import COUNTDOWN
from reward_funcs import score_sample

# Qwen2.5-Instruct's chat template, its part without tools: ChatML, and a default system message when the
# conversation brings none.
QWEN25_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or "
    "(message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained here on a few sentences, carrying Qwen2.5's special tokens and chat template."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = [COUNTDOWN["base"].render(numbers=[44, 19, 35], target=60), "12 * 34 = 408"] * 10
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=QWEN25_CHAT_TEMPLATE
    )


def strategy(apply_chat_template=False):
    data = SimpleNamespace(
        input_key="prompt", label_key="label", apply_chat_template=apply_chat_template, image_key="images"
    )
    return SimpleNamespace(args=SimpleNamespace(data=data, use_ms=False), print=lambda *a: None, is_rank_0=lambda: True)


def load(path, tokenizer, apply_chat_template=False):
    """What train_ppo_ray does with --data.prompt_dataset PATH --data.input_key prompt --data.label_key label."""
    s = strategy(apply_chat_template)
    data = blending_datasets(str(path), None, s, dataset_split="train")
    return PromptDataset(data, tokenizer, s)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    outs = {}
    for template in ("base", "qwen-instruct", "chat"):
        for fmt in ("parquet", "jsonl"):
            out = root / f"countdown-{template}-{fmt}"
            sizes = ["--train-size", "40", "--test-size", "8"]
            assert countdown.main(["--out", str(out), *sizes, "--template", template, "--format", fmt]) == 0
            outs[template, fmt] = out
    out = root / "multiply"
    assert multiply.main(["--out", str(out), "--draws", "300", "--train-size", "100", "--test-size", "20"]) == 0
    outs["multiply", "parquet"] = out
    return outs


def our_rows(out, split, fmt):
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(out / f"{split}.parquet").to_pylist()
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
@pytest.mark.parametrize("template", ["base", "qwen-instruct"])
def test_prompts_arrive_as_our_templates_and_labels_intact(generated, tokenizer, template, fmt):
    out = generated[template, fmt]
    for split in ("train", "test"):
        dataset = load(out / f"{split}.{fmt}", tokenizer)
        rows = our_rows(out, split, fmt)
        assert len(dataset) == len(rows)
        for i, row in enumerate(rows):
            datasource, prompt, label, _ = dataset[i]
            expected = COUNTDOWN[template].render(numbers=row["numbers"], target=row["target"])
            assert (datasource, prompt, label) == ("countdown", expected, row["label"])


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_chat_prompts_go_through_the_models_chat_template(generated, tokenizer, fmt):
    out = generated["chat", fmt]
    dataset = load(out / f"train.{fmt}", tokenizer, apply_chat_template=True)
    for i, row in enumerate(our_rows(out, "train", fmt)):
        system, user = COUNTDOWN["chat"].render(numbers=row["numbers"], target=row["target"])
        expected = (
            f"<|im_start|>system\n{system['content']}<|im_end|>\n<|im_start|>user\n{user['content']}"
            "<|im_end|>\n<|im_start|>assistant\n"
        )
        assert dataset[i][1] == expected
        assert dataset[i][2] == row["label"]


def test_loaded_samples_score_with_their_reference_solution(generated, tokenizer):
    """Data to reward, end to end: the prompt OpenRLHF built, a completion with the reference solution."""
    dataset = load(generated["base", "parquet"] / "test.parquet", tokenizer)
    for i in range(len(dataset)):
        _, prompt, label, _ = dataset[i]
        completion = f" ... </think>\n<answer>{json.loads(label)['solution']}</answer><|endoftext|>"
        assert score_sample(prompt + completion, prompt, label).reward == 1.0


def test_multiplication_loads_and_scores(generated, tokenizer):
    dataset = load(generated["multiply", "parquet"] / "train.parquet", tokenizer)
    assert len(dataset) == 100
    datasource, prompt, label, _ = dataset[0]
    product = json.loads(label)["product"]
    assert datasource == "multiply" and prompt.endswith("Assistant: Let me solve this step by step.\n<think>")
    assert score_sample(prompt + f" </think> <answer>{product}</answer>", prompt, label).reward == 1.0
