"""What every task scorer shares: the `Score` record, TinyZero's reward constants, and answer extraction.

Pure Python and standard library only: this module is imported inside vLLM engine actors, the HTTP
service and the evaluation scripts alike.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import NamedTuple

FORMAT_SCORE = 0.1  # TinyZero: an answer was given in <answer> tags but it is wrong
CORRECT_SCORE = 1.0  # TinyZero: the answer is right

OPEN_TAG = "<answer>"
CLOSE_TAG = "</answer>"


class Score(NamedTuple):
    """One scored completion (immutable; a NamedTuple because one is built for every sample of every rollout).

    `reward` is what RL trains on (0 / format score / correct score); `correct` is what evaluation counts;
    `formatted` says an answer tag pair was found; `reason` is a short machine-readable word for analysis
    (`correct`, `no_answer`, `numbers_mismatch`, ...); `answer` is the extracted answer text, if any.
    """

    reward: float
    correct: bool
    formatted: bool
    reason: str
    answer: str | None = None


class LabelError(ValueError):
    """A label that cannot be scored: the dataset's fault, never the model's. The message says how to fix it."""


def label_int(label: Mapping, key: str, help: str) -> int:
    """`label[key]`, which must be an integer (bools are not)."""
    value = label.get(key)
    if type(value) is not int:  # bools are ints to isinstance
        raise LabelError(f"{key!r} must be an integer, got {value!r}: {help}")
    return value


def label_ints(label: Mapping, key: str, help: str) -> list[int]:
    """`label[key]`, which must be a non-empty list of integers."""
    value = label.get(key)
    if type(value) not in (list, tuple) or not value or set(map(type, value)) != {int}:
        raise LabelError(f"{key!r} must be a non-empty list of integers, got {value!r}: {help}")
    return list(value)


def no_answer(reason: str = "no_answer") -> Score:
    return Score(0.0, False, False, reason)


def wrong(reason: str, answer: str, format_score: float = FORMAT_SCORE) -> Score:
    return Score(format_score, False, True, reason, answer)


def right(answer: str, correct_score: float = CORRECT_SCORE) -> Score:
    return Score(correct_score, True, True, "correct", answer)


def cut_response(query: str, prompt: str | None, markers: tuple[str, ...]) -> str | None:
    """The model's part of OpenRLHF's `query` (decoded prompt + response, special tokens kept).

    When the query starts with its prompt, the response is what follows it. Otherwise (a prompt truncated from
    the left, or no prompt given) fall back to TinyZero's rule: everything after the first of `markers` found,
    tried in order; None when no marker is present (TinyZero scores that 0).
    """
    if prompt and query.startswith(prompt):
        return query[len(prompt) :]
    for marker in markers:
        head, found, tail = query.partition(marker)
        if found:
            return tail
    return None


# The last <answer> whose next tag on its line is a </answer>, found from the right by the greedy prefix. The
# body runs to the next tag or newline and is atomic, so each character is scanned a bounded number of times
# whatever the input (a lazy `<answer>(.*?)</answer>` rescans the line from every unclosed tag: quadratic).
# Python 3.10 has no possessive quantifiers; there a captured lookahead consumed by backreference is atomic.
LAST_CLOSED_OPEN_PATTERNS = {
    "possessive": r"(?s:.*)<answer>(?P<body>[^\n<]*+(?:<(?!/?answer>)[^\n<]*+)*+)</answer>",
    "lookahead": r"(?s:.*)<answer>(?=(?P<body>[^\n<]*(?:<(?!/?answer>)[^\n<]*)*))(?P=body)</answer>",
}
_LAST_CLOSED_OPEN = re.compile(LAST_CLOSED_OPEN_PATTERNS["possessive" if sys.version_info >= (3, 11) else "lookahead"])


def last_answer(text: str, *, last_line_only: bool, _pattern: re.Pattern = _LAST_CLOSED_OPEN) -> str | None:
    """The stripped content of the last match of `<answer>(.*?)</answer>` (no DOTALL), exactly as
    `re.finditer` would find it, in time linear in `len(text)`; None when there is none.

    With `last_line_only`, only the text after the last newline is searched (TinyZero's Countdown rule).
    Matches never span a newline, as with TinyZero's regex.
    """
    start = text.rfind("\n") + 1 if last_line_only else 0
    end = text.rfind(CLOSE_TAG, start)
    if end < 0:
        return None
    last_open = text.rfind(OPEN_TAG, start, end)
    if last_open < 0:
        return None
    close = text.find(CLOSE_TAG, last_open + len(OPEN_TAG))
    if text.find("\n", last_open, close) >= 0:
        # The last <answer> is not closed on its line: search the lines up to and including its own.
        m = _pattern.match(text, start, text.find("\n", last_open))
        if m is None:
            return None
        last_open, close = m.start("body") - len(OPEN_TAG), m.end() - len(CLOSE_TAG)
    # finditer's matches run left to right, each from the first <answer> after the previous match to the first
    # </answer> after that. The last one therefore closes at `close` and opens at the first <answer> after the
    # last </answer> that precedes `last_open` on its line (or at the line's first <answer>).
    line_start = text.rfind("\n", start, last_open) + 1 or start
    previous_close = text.rfind(CLOSE_TAG, line_start, last_open)
    first_open = text.find(OPEN_TAG, previous_close + len(CLOSE_TAG) if previous_close >= 0 else line_start)
    return text[first_open + len(OPEN_TAG) : close].strip()
