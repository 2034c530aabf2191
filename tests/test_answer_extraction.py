"""`last_answer` finds exactly what TinyZero's `re.finditer(r"<answer>(.*?)</answer>")` finds, in linear time."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_funcs.scoring import LAST_CLOSED_OPEN_PATTERNS, cut_response, last_answer

PATTERNS = {name: re.compile(p) for name, p in LAST_CLOSED_OPEN_PATTERNS.items()}


def finditer_last(text, last_line_only):
    if last_line_only:
        text = text.split("\n")[-1]
    matches = list(re.finditer(r"<answer>(.*?)</answer>", text))
    return matches[-1].group(1).strip() if matches else None


# Text made of tag fragments, so that the interesting cases (unclosed, nested, split tags) are common.
FRAGMENTS = ["<answer>", "</answer>", "\n", "\r", " ", "1+2", "x", "<", ">", "/", "<answer", "answer>", "</", "é"]
tag_soup = st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("last_line_only", [True, False])
@settings(max_examples=1500, deadline=None)
@given(text=tag_soup)
def test_same_answer_as_finditer(pattern, last_line_only, text):
    assert last_answer(text, last_line_only=last_line_only, _pattern=PATTERNS[pattern]) == finditer_last(
        text, last_line_only
    )


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_same_answer_as_finditer_on_any_text(text):
    for last_line_only in (True, False):
        assert last_answer(text, last_line_only=last_line_only) == finditer_last(text, last_line_only)


@pytest.mark.parametrize(
    "query, prompt, expected",
    [
        ("PROMPT response", "PROMPT", " response"),
        ("xx Assistant: a Assistant: b", "PROMPT", " a Assistant: b"),  # the first marker
        ("<|im_start|>assistant\nhi", None, "\nhi"),
        ("Assistant: a <|im_start|>assistant b", "", " a <|im_start|>assistant b"),  # markers tried in order
        ("no marker", "PROMPT", None),
    ],
)
def test_cut_response(query, prompt, expected):
    assert cut_response(query, prompt, ("Assistant:", "<|im_start|>assistant")) == expected
