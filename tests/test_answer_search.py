"""The last-answer search's worst case: exact on any text by both of its paths (the rfind walk and the marked
search), and a long line costs a few str.find passes, never a regular expression stepping through it.

Why structural and not timed: Python's regex engine inspects text one character at a time, and a tag-aware body
pays about 60 ns for every stray "<" (32 ms per MB of '<answer>' + '<b' * n, the input that once cost that), while
str.find/rfind skip the same text at memory speed. So the bound that holds on any machine is "a long line is never
handed to a regex"; the figures per MB are printed by `python -m bench.rewards`.
"""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_funcs import scoring
from reward_funcs.scoring import LAST_CLOSED_OPEN_PATTERNS, last_answer, last_closed_open, marked_search

PATTERNS = {name: re.compile(p) for name, p in LAST_CLOSED_OPEN_PATTERNS.items()}


PAIR = "<answer></answer>"


def closed_open_by_tokens(text):
    """(opening, closing) of the last <answer> whose next tag or newline is a </answer>, read off the token list."""
    tokens = [(m.start(), m.group()) for m in re.finditer(r"<answer>|</answer>|\n", text)]
    pairs = [(a, b) for (a, tag), (b, next_tag) in zip(tokens, tokens[1:], strict=False) if tag + next_tag == PAIR]
    return pairs[-1] if pairs else None


def finditer_last(text, last_line_only):
    if last_line_only:
        text = text.split("\n")[-1]
    matches = list(re.finditer(r"<answer>(.*?)</answer>", text))
    return matches[-1].group(1).strip() if matches else None


# Tag fragments, the marker characters the marked search uses, and characters beyond Latin-1.
FRAGMENTS = ["<answer>", "</answer>", "\n", " ", "x", "<", ">", "/", "<answer", "answer>", "</", "answe", "rewsna"]
FRAGMENTS += ["\x00", "\x01", "\x02", "\x03", "é", "😀"]
tag_soup = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@settings(max_examples=1500, deadline=None)
@given(text=tag_soup)
def test_marked_search_finds_the_last_closed_answer_tag(pattern, text):
    assert marked_search(text, 0, len(text), PATTERNS[pattern]) == closed_open_by_tokens(text)


@settings(max_examples=1500, deadline=None)
@given(text=tag_soup, walk_steps=st.sampled_from([0, 1, 10**9]))
def test_walk_and_marked_search_together_find_it(text, walk_steps):
    assert last_closed_open(text, 0, len(text), walk_steps=walk_steps) == closed_open_by_tokens(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_marked_search_on_any_text(text):
    assert marked_search(text, 0, len(text)) == closed_open_by_tokens(text)


# Long texts that end in a dense stretch, so that the marked search takes over at a cut: after a long line of
# closing tags, of text or of stray "<", with the answer at the start, in the middle, or nowhere.
DENSE_TAIL = "<answer>\n</answer>\n"
BEFORE_THE_TAIL = {
    "closers": "</answer>" * 12_000,
    "plain text": "x" * 100_000,
    "stray '<'": "<b" * 50_000,
    "lines": "a line\n" * 15_000,
}


@pytest.mark.parametrize("answer_at", ["start", "middle", "nowhere"])
@pytest.mark.parametrize("before", BEFORE_THE_TAIL)
@pytest.mark.parametrize("tail_lines", [1, 8, 9, 10, 12, 40, 4_000])
def test_a_dense_stretch_after_a_long_one(before, tail_lines, answer_at):
    answer = "<answer>7</answer>"
    stretch = BEFORE_THE_TAIL[before]
    text = {"start": answer + stretch, "middle": stretch + answer + stretch, "nowhere": stretch}[answer_at]
    text += DENSE_TAIL * tail_lines
    assert last_closed_open(text, 0, len(text)) == closed_open_by_tokens(text)


class RecordingPattern:
    """Stands in for the compiled pattern: passes every call through and records the length of text it was given."""

    def __init__(self, pattern):
        self.pattern, self.calls = pattern, []

    def __getattr__(self, method):
        def call(string, *args):
            self.calls.append((method, len(string)))
            return getattr(self.pattern, method)(string, *args)

        return call


N = 1 << 19  # a 1 MB line of two-character units
# (text, multiply's answer, Countdown's answer); TinyZero's own regex is quadratic on some of these.
LONG_LINES = {
    "unclosed answer over '<b'": ("<answer>" + "<b" * N + "\n</answer>", None, None),
    "unclosed answer over '😀<'": ("<answer>" + "😀<" * N + "\n</answer>", None, None),
    "unclosed answer over 'b>'": ("<answer>" + "b>" * N + "\n</answer>", None, None),
    "unclosed answer over '<answer'": ("<answer>" + "<answer" * (N // 4) + "\n</answer>", None, None),
    "unclosed answer over '</answer'": ("<answer>" + "</answer" * (N // 4) + "\n</answer>", None, None),
    "an answer, then an unclosed one over '<b'": ("<answer>7</answer>\n<answer>" + "<b" * N + "\n</answer>", "7", None),
    "'<b', then an answer not closed on its line": ("<b" * N + "</answer><answer>\n</answer>", None, None),
    "an answer over '<b', closed": ("<answer>" + "<b" * N + "</answer>\n<answer>\n", "<b" * N, None),
    "openers on one line": ("<answer>" * (N // 4) + "\n</answer>", None, None),
    "closers on one line": ("</answer>" * (N // 4) + "<answer>\n</answer>", None, None),
}


@pytest.mark.parametrize("last_line_only", [False, True], ids=["multiply", "countdown"])
@pytest.mark.parametrize("name", LONG_LINES)
def test_a_long_line_is_never_handed_to_a_regex(name, last_line_only):
    text, multiply_answer, countdown_answer = LONG_LINES[name]
    spy = RecordingPattern(scoring._LAST_CLOSED_OPEN)
    answer = last_answer(text, last_line_only=last_line_only, _pattern=spy)
    assert answer == (countdown_answer if last_line_only else multiply_answer)
    assert spy.calls == []


@pytest.mark.parametrize(
    "text",
    [
        "<answer>\n</answer>\n" * 20_000,  # a lone tag on every line: every tag must be looked at
        "</answer><answer>\n" * 20_000 + "</answer>",
        "<answer>7</answer>" + "</answer><answer><b\n" * 20_000,
    ],
    ids=["tag lines", "closer then opener", "stray '<' after each"],
)
def test_a_dense_stretch_is_searched_once_a_stretch_at_a_time(text):
    spy = RecordingPattern(scoring._LAST_CLOSED_OPEN)
    assert last_answer(text, last_line_only=False, _pattern=spy) == finditer_last(text, False)
    assert {method for method, _ in spy.calls} == {"search"}
    assert sum(length for _, length in spy.calls) <= len(text)  # no character is searched twice
