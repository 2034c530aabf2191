"""TinyZero's reward rules as the original applies them, with Python's `eval`: the baseline that
bench/rewards.py times our scorer against, and the reference that tests compare our scores with.

Do not use it to train: `eval` of model output can hang (`44**35**19`) and rewards floor division.
Only ever call it on trusted input, or in a child process with a time limit (see bench/rewards.py).
"""

import re

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
