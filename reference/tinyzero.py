"""TinyZero's prompt templates and eval-based reward rules, transcribed from the original independently of our
code: its templates byte for byte, its rewards applied with Python's `eval`. The reference that the differential
tests compare our templates and scores with, and the baseline that bench/rewards.py times our scorer against.

Do not use it to train: `eval` of model output can hang (`44**35**19`) and rewards floor division.
Only ever call it on trusted input, or in a child process with a time limit (see bench/rewards.py).
"""

import re

COUNTDOWN_BASE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer.\n"
    "User: Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic "
    "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. And "
    "return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.\n"
    "Assistant: Let me solve this step by step.\n<think>"
)

COUNTDOWN_QWEN_INSTRUCT = (
    "<|im_start|>system\nYou are a helpful assistant. You first thinks about the reasoning process in the mind and "
    "then provides the user with the answer.<|im_end|>\n<|im_start|>user\n Using the numbers {numbers}, create an "
    "equation that equals {target}. You can use basic arithmetic operations (+, -, *, /) and each number can only be "
    "used once. Show your work in <think> </think> tags. And return the final answer in <answer> </answer> tags, for "
    "example <answer> (1 + 2) / 3 </answer>.<|im_end|>\n<|im_start|>assistant\nLet me solve this step by step.\n"
    "<think>"
)

MULTIPLY = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> RESULT_NUMBER </answer>. \n"
    "User: Give me the answer of the following equation: {num1} {op} {num2}.\n"
    "Assistant: Let me solve this step by step.\n<think>"
)


def countdown_prompt(numbers, target, template="base"):
    text = COUNTDOWN_BASE if template == "base" else COUNTDOWN_QWEN_INSTRUCT
    return text.format(numbers=list(numbers), target=target)


def multiply_prompt(a, b):
    return MULTIPLY.format(num1=a, op="*", num2=b)


FORMAT_SCORE = 0.1
CORRECT_SCORE = 1.0


def _cut(text, markers):
    for marker in markers:
        if marker in text:
            return text.split(marker, 1)[1]
    return None


def countdown(text, target, numbers):
    """Score the decoded prompt + response as TinyZero's countdown.compute_score does."""
    text = _cut(text, ("Assistant:", "<|im_start|>assistant"))
    if text is None:
        return 0.0
    matches = list(re.finditer(r"<answer>(.*?)</answer>", text.split("\n")[-1]))
    if not matches:
        return 0.0
    equation = matches[-1].group(1).strip()
    if sorted(int(n) for n in re.findall(r"\d+", equation)) != sorted(numbers):
        return FORMAT_SCORE
    try:
        if not re.match(r"^[\d+\-*/().\s]+$", equation):
            return FORMAT_SCORE
        result = eval(equation, {"__builtins__": None}, {})
        return CORRECT_SCORE if abs(result - target) < 1e-5 else FORMAT_SCORE
    except Exception:
        return FORMAT_SCORE


def multiply(text, product):
    """Score the decoded prompt + response as TinyZero's multiply.compute_score does."""
    text = _cut(text, ("Assistant:",))
    if text is None:
        return 0.0
    matches = list(re.finditer(r"<answer>(.*?)</answer>", text))
    if not matches:
        return 0.0
    try:
        answer = int(matches[-1].group(1).strip())
    except ValueError:
        return 0.0
    return CORRECT_SCORE if answer == product else FORMAT_SCORE
