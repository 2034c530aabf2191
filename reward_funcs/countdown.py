"""Countdown: combine the given numbers with + - * / to reach the target. TinyZero's reward, without eval.

    from reward_funcs import countdown
    countdown.score("... <answer> (44 - 19) + 35 </answer>", {"target": 60, "numbers": [44, 19, 35]})

Semantics (TinyZero's `countdown.py`, kept exactly, so runs here and there compare):
  - only the LAST LINE of the response counts (a newline after `</answer>` scores 0);
  - no `<answer>...</answer>` on it: 0;
  - the last answer on it must use exactly the given numbers, as a multiset, and equal the target: 1.0;
  - any other answer (wrong numbers, wrong value, syntax error, division by zero): 0.1, the format credit.
The answer is parsed by `reward_funcs.expression`, never eval'd, and compared exactly (TinyZero accepted
floats within 1e-5); see that module for the few deliberate differences (`**`, `//`, decimals).
"""

from __future__ import annotations

from collections.abc import Mapping

from reward_funcs.expression import ExpressionError, value
from reward_funcs.scoring import (
    CORRECT_SCORE,
    FORMAT_SCORE,
    Score,
    label_int,
    label_ints,
    last_answer,
    no_answer,
    right,
    wrong,
)

# Where TinyZero cuts the decoded prompt + response when the response cannot be told apart from the prompt.
RESPONSE_MARKERS = ("Assistant:", "<|im_start|>assistant")

LABEL_HELP = 'a Countdown label is {"task": "countdown", "target": <int>, "numbers": [<int>, ...]}'


def check_label(label: Mapping) -> tuple[int, list[int]]:
    return label_int(label, "target", LABEL_HELP), label_ints(label, "numbers", LABEL_HELP)


def reference_answer(label: Mapping) -> str | None:
    """A correct answer for the label, when the dataset gave one (data_tools writes one for every puzzle)."""
    return label.get("solution")


def score(
    response: str, label: Mapping, *, format_score: float = FORMAT_SCORE, correct_score: float = CORRECT_SCORE
) -> Score:
    target, numbers = check_label(label)
    answer = last_answer(response, last_line_only=True)
    if answer is None:
        return no_answer()
    try:
        numerator, denominator = value(answer, numbers)
    except ExpressionError as e:
        return wrong(e.reason, answer, format_score)
    if numerator != target * denominator:
        return wrong("wrong_value", answer, format_score)
    return right(answer, correct_score)
