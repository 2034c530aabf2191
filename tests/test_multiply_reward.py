"""Multiplication reward: TinyZero's rules (last <answer> anywhere, int() reading, 0 / 0.1 / 1.0)."""

import time

import pytest

from reference import tinyzero
from reward_funcs import LabelError, multiply, score_sample

LABEL = {"task": "multiply", "numbers": [12, 34], "product": 408}


def score(response, **kw):
    return multiply.score(response, LABEL, **kw)


def test_correct_answer_scores_one():
    s = score(" 12 * 34 = 408 </think> <answer> 408 </answer>")
    assert (s.reward, s.correct, s.formatted, s.reason, s.answer) == (1.0, True, True, "correct", "408")


def test_wrong_answer_scores_format_credit():
    s = score("<answer>418</answer>")
    assert (s.reward, s.correct, s.formatted, s.reason) == (0.1, False, True, "wrong_value")


def test_no_answer_scores_zero():
    s = score("408")
    assert (s.reward, s.formatted, s.reason) == (0.0, False, "no_answer")


# Rule: no last-line rule; the last <answer> anywhere counts, and an answer does not span lines.
@pytest.mark.parametrize(
    "response, reward",
    [
        ("<answer>408</answer>\nThat is all.\n", 1.0),
        ("<answer>418</answer>\nno wait\n<answer>408</answer>", 1.0),
        ("<answer>408</answer>\nno wait\n<answer>418</answer>", 0.1),
        ("<answer>408</answer> <answer>\n408</answer>", 1.0),
    ],
)
def test_last_answer_anywhere(response, reward):
    assert score(response).reward == reward


# Rule: the answer must be an integer as Python's int() reads it, else 0 (no format credit).
@pytest.mark.parametrize(
    "answer, reward",
    [
        ("+408", 1.0),
        ("4_08", 1.0),
        ("٤٠٨", 1.0),  # Arabic-Indic digits are digits to int()
        ("0408", 1.0),
        ("408.0", 0.0),
        ("408!", 0.0),
        ("four hundred and eight", 0.0),
        ("4 08", 0.0),
        ("", 0.0),
        ("-408", 0.1),
        ("0" * 4297 + "408", 1.0),  # 4,300 digits: int() reads it
        ("0" * 4298 + "408", 0.0),  # 4,301: int() refuses (Python's limit), as in TinyZero today
    ],
)
def test_answer_is_read_as_pythons_int(answer, reward):
    s = score(f"<answer> {answer} </answer>")
    assert s.reward == reward
    assert tinyzero.multiply(f"Assistant: <answer> {answer} </answer>", 408) == reward
    if reward == 0.0:
        assert (s.formatted, s.reason) == (True, "not_an_integer")


def test_huge_answer_is_refused_without_reading_it():
    s = score("<answer>" + "9" * 1_000_000 + "</answer>")
    assert (s.reward, s.reason) == (0.0, "not_an_integer")


@pytest.mark.parametrize(
    "label, complaint",
    [
        ({"task": "multiply", "numbers": [12, 34]}, "'product' must be an integer"),
        ({"task": "multiply", "numbers": [12, 34], "product": 409}, "does not equal the product"),
        ({"task": "multiply", "numbers": [12, "34"], "product": 408}, "'numbers' must be a non-empty list"),
    ],
)
def test_malformed_label_raises_with_the_fix(label, complaint):
    with pytest.raises(LabelError, match=complaint):
        multiply.score("<answer>408</answer>", label)


def test_operands_are_optional_in_the_label():
    assert multiply.score("<answer>408</answer>", {"task": "multiply", "product": 408}).reward == 1.0


RESPONSES = [
    " 12 * 34 = 408 </think>\n<answer>408</answer><|endoftext|>",
    " 12 * 34 = 418 </think>\n<answer>418</answer>\nDone<|endoftext|>",
    " </think> <answer>about 400</answer>",
    " nothing",
]


@pytest.mark.parametrize("response", RESPONSES)
def test_prompt_prefix_and_marker_fallback_both_give_tinyzeros_score(response):
    prompt = tinyzero.multiply_prompt(12, 34)
    query = prompt + response
    expected = tinyzero.multiply(query, 408)
    assert score_sample(query, prompt, LABEL).reward == expected
    assert score_sample(query, None, LABEL).reward == expected
    assert score_sample(query[30:], prompt, LABEL).reward == expected


def test_only_assistant_colon_is_a_marker():
    # TinyZero's multiply.py cuts at "Assistant:" only: a chat-template query that lost its prompt scores 0.
    s = score_sample("<|im_start|>assistant\n<answer>408</answer>", None, LABEL)
    assert (s.reward, s.reason) == (0.0, "no_response_marker")


def test_absurd_multiplication_labels_are_refused_quickly():
    for numbers in ([10**18] * 300, [2**63 - 1] * 200_000, [2**2000, 3]):
        start = time.perf_counter()
        with pytest.raises(LabelError):
            multiply.check_label({"task": "multiply", "numbers": numbers, "product": 1})
        assert time.perf_counter() - start < 0.5
