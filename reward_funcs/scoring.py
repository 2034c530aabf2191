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


# Finding TinyZero's last match, `re.finditer(r"<answer>(.*?)</answer>")[-1]`, in linear time with a small constant.
# finditer's matches run left to right, each from the first <answer> after the previous match to the first
# </answer> after that, on one line. So the last match closes at the first </answer> after the last <answer> whose
# next tag or newline is a </answer> (the last "closed" <answer>), and opens at the first <answer> after the last
# </answer> before that one on its line. The search uses str.find/rfind/replace, which skip any text at memory
# speed, and a regex only over marked text, where nothing but a tag or a newline stops it; never a regex that
# inspects every "<" (a tag-aware body such as `(?:<(?!/?answer>)[^\n<]*)*` costs about 60 ns per stray "<":
# 32 ms per MB of "<b"). Every character is read a bounded number of times; the worst case, a tag every few
# characters, costs about 50 to 80 ns per tag (`python -m bench.rewards` prints the figures).
WALK_STEPS = 8  # unclosed <answer>s the walk steps back over before a dense stretch goes to the marked search
WALK_SPAN = 1024  # ... unless they lie this many characters apart on average (then each step is cheap)
MARKED_SPAN = 1 << 16  # characters the marked search takes at a time, before the walk goes on

# The marked search: an <answer> ends "\x01\x00", a </answer> "\x02\x00", a newline is "\x00", characters found
# nowhere else in the marked text; read backwards, a </answer> (the search's fast scan for its unique first
# character), then the text before it up to the previous tag or newline, which must be an <answer>.
# Python 3.10 has no possessive quantifiers; there the text is given back on failure (twice the work, still linear).
LAST_CLOSED_OPEN_PATTERNS = {
    "possessive": r"\x02ewsna/<[^\x00]*+\x00\x01",
    "backtracking": r"\x02ewsna/<[^\x00]*\x00\x01",
}
_LAST_CLOSED_OPEN = re.compile(
    LAST_CLOSED_OPEN_PATTERNS["possessive" if sys.version_info >= (3, 11) else "backtracking"]
)
_MARKERS = ("\x00", "\x01", "\x02")


def last_answer(text: str, *, last_line_only: bool, _pattern: re.Pattern = _LAST_CLOSED_OPEN) -> str | None:
    """The stripped content of the last match of `<answer>(.*?)</answer>` (no DOTALL), exactly as
    `re.finditer` would find it, in time linear in `len(text)`; None when there is none.

    With `last_line_only`, only the text after the last newline is searched (TinyZero's Countdown rule).
    Matches never span a newline, as with TinyZero's regex.
    """
    start = text.rfind("\n") + 1 if last_line_only else 0
    # The walk's first step, inline (nearly every response stops here): the last </answer>, the last <answer> before it
    close = text.rfind(CLOSE_TAG, start)
    last_open = text.rfind(OPEN_TAG, start, close) if close >= 0 else -1
    if last_open < 0:
        return None
    close = text.find(CLOSE_TAG, last_open + len(OPEN_TAG), close + len(CLOSE_TAG))
    if text.find("\n", last_open, close) >= 0:  # that <answer> is not closed on its line: look before it
        found = last_closed_open(text, start, last_open, _pattern=_pattern)
        if found is None:
            return None
        last_open, close = found
    line_start = text.rfind("\n", start, last_open) + 1 or start
    previous_close = text.rfind(CLOSE_TAG, line_start, last_open)
    first_open = text.find(OPEN_TAG, previous_close + len(CLOSE_TAG) if previous_close >= 0 else line_start)
    return text[first_open + len(OPEN_TAG) : close].strip()


def last_closed_open(
    text: str, start: int, end: int, *, walk_steps: int = WALK_STEPS, _pattern: re.Pattern = _LAST_CLOSED_OPEN
) -> tuple[int, int] | None:
    """(where it opens, where its </answer> starts) for the last <answer> in `text[start:end]` whose next tag or
    newline is a </answer>; None when there is none.

    Walks back from the end with str.rfind: the last </answer>, the last <answer> before it; if a newline comes
    first, that <answer> is not closed on its line and nothing after it is, so look before it. Each step reads its
    own stretch of text once. Steps that find tags close together mark a dense stretch (many tags, lines or both)
    where a step per tag would cost a microsecond each: the next MARKED_SPAN characters or so go to
    `marked_search`, one C-level pass, cut at an <answer> or a newline (no answer spans either), then the walk
    goes on before them.
    """
    hi = walked_from = end
    steps = 0
    while True:
        close = text.rfind(CLOSE_TAG, start, hi)
        if close < 0:
            return None
        last_open = text.rfind(OPEN_TAG, start, close)
        if last_open < 0:
            return None
        close = text.find(CLOSE_TAG, last_open + len(OPEN_TAG), close + len(CLOSE_TAG))  # its first </answer>
        if text.find("\n", last_open, close) < 0:
            return last_open, close
        hi, steps = last_open, steps + 1
        if steps > walk_steps and walked_from - hi < steps * WALK_SPAN:
            # mark the stretch back to the first <answer> or newline past the next MARKED_SPAN characters (no answer
            # spans either), or to the start; without such a cut, the walk's next step goes that far by itself
            cut = max(start, hi - MARKED_SPAN)  # never negative: str.find reads that from the end
            cuts = [at for at in (text.find(OPEN_TAG, cut, hi), text.find("\n", cut, hi)) if at >= 0]
            lo = start if cut == start else min(cuts, default=None)
            if lo is not None:
                found = marked_search(text, lo, hi, _pattern)
                if found or lo == start:
                    return found
                hi = lo
            walked_from, steps = hi, 0


def marked_search(text: str, start: int, end: int, pattern: re.Pattern = _LAST_CLOSED_OPEN) -> tuple[int, int] | None:
    """`last_closed_open` in one pass: tags and newlines marked (str.replace, in C), reversed, one regex search.
    About 1 to 2 ms per MB, plus 50 to 80 ns per tag."""
    region = text[start:end]
    for marker in _MARKERS:  # keep the markers unique (str.translate would be 100x slower on non-ASCII text)
        if marker in region:
            region = region.replace(marker, "\x03")
    marked = region.replace("\n", "\x00")
    if not marked.isascii():  # one byte per character from here on: the tags are ASCII, the offsets are kept
        marked = marked.encode("latin-1", "replace").decode("latin-1")
    marked = marked.replace(CLOSE_TAG, "</answe\x02\x00").replace(OPEN_TAG, "<answe\x01\x00")
    match = pattern.search(marked[::-1])
    if match is None:
        return None
    # Reversed, the match runs from the </answer>'s "\x02" to the <answer>'s "\x01".
    return end - match.end() - len(OPEN_TAG) + 2, end - match.start() - len(CLOSE_TAG) + 1
