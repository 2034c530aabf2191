"""Multiplication: TinyZero's arithmetic task (`arth.py` data, `multiply.py` reward).

    from reward_funcs import multiply
    multiply.score("... <answer> 408 </answer>", {"numbers": [12, 34], "product": 408})

Semantics (TinyZero's, kept exactly):
  - the LAST `<answer>...</answer>` anywhere in the response counts (no last-line rule; an answer does not
    span lines);
  - none, or its content is not an integer as Python's `int()` reads it (so `+408`, `4_08` and other
    Unicode digits are integers; `408.0`, `four hundred` are not): 0, with no format credit;
  - equal to the product: 1.0, otherwise 0.1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from reward_funcs.scoring import (
    CORRECT_SCORE,
    FORMAT_SCORE,
    LabelError,
    Score,
    label_int,
    label_ints,
    last_answer,
    no_answer,
    right,
    wrong,
)

RESPONSE_MARKERS = ("Assistant:",)

LABEL_HELP = 'a multiplication label is {"task": "multiply", "numbers": [<int>, <int>], "product": <int>}'

# Python's default limit on the digits int() reads (3.11+, and 3.10.7+): more raise ValueError, which TinyZero
# scores 0. Fixed here so the score does not depend on the interpreter, and int() never sees a huge string.
INT_MAX_DIGITS = 4300
_INT_LITERAL = re.compile(r"[+-]?\d+(?:_\d+)*")  # what int() accepts once stripped; \d is any Unicode digit


MAX_OPERANDS = 16  # bounds the work a label can ask for (the product of its operands is checked)


def check_label(label: Mapping) -> int:
    product = label_int(label, "product", LABEL_HELP)
    if label.get("numbers") is not None:  # optional; when present it must agree with the product
        numbers = label_ints(label, "numbers", LABEL_HELP)
        if len(numbers) > MAX_OPERANDS or any(abs(n).bit_length() > 1024 for n in numbers + [product]):
            raise LabelError(
                f'"numbers" has more than {MAX_OPERANDS} operands or an operand over 1,024 bits: {LABEL_HELP}'
            )
        if math.prod(numbers) != product:
            raise LabelError(f'"product" does not equal the product of "numbers": {LABEL_HELP}')
    return product


def reference_answer(label: Mapping) -> str:
    return str(check_label(label))


def parse_int(answer: str) -> int | None:
    """`int(answer)`, or None where int() raises, without ever handing int() a huge string (it is quadratic)."""
    if len(answer) > 2 * INT_MAX_DIGITS + 1:  # a literal that long has more digits than int() will read
        return None
    if not _INT_LITERAL.fullmatch(answer):
        return None
    if len(answer) - answer.count("_") - (answer[0] in "+-") > INT_MAX_DIGITS:
        return None
    try:
        return int(answer)
    except ValueError:  # more digits than Python's limit
        return None


def score(
    response: str, label: Mapping, *, format_score: float = FORMAT_SCORE, correct_score: float = CORRECT_SCORE
) -> Score:
    product = check_label(label)
    answer = last_answer(response, last_line_only=False)
    if answer is None:
        return no_answer()
    value = parse_int(answer)
    if value is None:
        return Score(0.0, False, True, "not_an_integer", answer)
    if value != product:
        return wrong("wrong_value", answer, format_score)
    return right(answer, correct_score)
