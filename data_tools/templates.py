"""Prompt templates, one registry per task. `base` and `qwen-instruct` are TinyZero's, byte for byte, fed to the
model as they are; `chat` is a list of messages for `--data.apply_chat_template` with any instruct model.

    from data_tools.templates import COUNTDOWN, MULTIPLY
    COUNTDOWN["base"].render(numbers=[44, 19, 35], target=60)
"""

from __future__ import annotations

from dataclasses import dataclass

_COUNTDOWN_QUESTION = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic "
    "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. "
    "And return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)
_BASE_PREAMBLE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer."
)
# TinyZero's system sentence, grammar included ("You first thinks"), so `chat` differs from `qwen-instruct`
# only by the model's own chat template and the missing prefill.
_INSTRUCT_SYSTEM = (
    "You are a helpful assistant. You first thinks about the reasoning process in the mind and then provides "
    "the user with the answer."
)
_PREFILL = "Let me solve this step by step.\n<think>"


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    text: str | None = None  # a str.format pattern, or None for a message list
    messages: tuple[tuple[str, str], ...] = ()  # (role, str.format pattern) when `text` is None

    @property
    def is_chat(self) -> bool:
        return self.text is None

    def render(self, **fields) -> str | list[dict]:
        """The prompt: a string fed as is, or (chat) a list of {"role", "content"} messages."""
        if self.text is not None:
            return self.text.format(**fields)
        return [{"role": role, "content": pattern.format(**fields)} for role, pattern in self.messages]


COUNTDOWN = {
    t.name: t
    for t in (
        Template(
            "base",
            "TinyZero's prompt for base models (no chat template)",
            f"{_BASE_PREAMBLE}\nUser: {_COUNTDOWN_QUESTION}\nAssistant: {_PREFILL}",
        ),
        Template(
            "qwen-instruct",
            "TinyZero's ChatML prompt for Qwen2.5-Instruct, written out (no chat template applied on top)",
            f"<|im_start|>system\n{_INSTRUCT_SYSTEM}<|im_end|>\n<|im_start|>user\n {_COUNTDOWN_QUESTION}<|im_end|>\n"
            f"<|im_start|>assistant\n{_PREFILL}",
        ),
        Template(
            "chat",
            "system + user messages, no prefill: train with --data.apply_chat_template on any instruct model",
            messages=(("system", _INSTRUCT_SYSTEM), ("user", _COUNTDOWN_QUESTION)),
        ),
    )
}

MULTIPLY = {
    "base": Template(
        "base",
        "TinyZero's arithmetic prompt (arth.py)",
        "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
        "assistant first thinks about the reasoning process in the mind and then provides the user with the "
        "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
        "tags, respectively, i.e., <think> reasoning process here </think> <answer> RESULT_NUMBER </answer>. \n"
        "User: Give me the answer of the following equation: {num1} {op} {num2}.\n"
        f"Assistant: {_PREFILL}",
    ),
}


def describe(registry: dict[str, Template]) -> str:
    """One line per template, for --help."""
    return "; ".join(f"{name}: {t.description}" for name, t in registry.items())


# Qwen2.5's chat template adds this system message when the messages have none.
_QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def render_prompt(prompt: str | list[dict], tokenizer=None) -> str:
    """The text the model continues, as OpenRLHF's PromptDataset builds it: a string as it is; a message list
    through the model's chat template with the generation prompt (`tokenizer.apply_chat_template`), or, with no
    tokenizer at hand (preflight, before any model is downloaded), through Qwen2.5's template written out."""
    if isinstance(prompt, str):
        return prompt
    messages = list(prompt)
    if tokenizer is not None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not messages or messages[0]["role"] != "system":
        messages = [{"role": "system", "content": _QWEN_DEFAULT_SYSTEM}, *messages]
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"
