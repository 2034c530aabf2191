"""Countdown reward: TinyZero's rules, each written out next to the case that checks it."""

import pytest

from reference import tinyzero
from reward_funcs import LabelError, countdown, score_sample

NUMBERS, TARGET = [44, 19, 35], 60
LABEL = {"task": "countdown", "target": TARGET, "numbers": NUMBERS}


def score(response, numbers=NUMBERS, target=TARGET, **kw):
    return countdown.score(response, {"task": "countdown", "target": target, "numbers": numbers}, **kw)


def test_correct_answer_scores_one():
    s = score(" 44 - 19 = 25, 25 + 35 = 60 </think>\n<answer> (44 - 19) + 35 </answer>")
    assert (s.reward, s.correct, s.formatted, s.reason, s.answer) == (1.0, True, True, "correct", "(44 - 19) + 35")


def test_no_answer_tag_scores_zero():
    s = score(" I think it is (44 - 19) + 35 </think>")
    assert (s.reward, s.correct, s.formatted, s.reason) == (0.0, False, False, "no_answer")


# Rule: only the last line counts (TinyZero splits on "\n" and keeps [-1]).
@pytest.mark.parametrize(
    "response, reward",
    [
        ("</think>\n<answer>44 - 19 + 35</answer>", 1.0),
        ("</think>\n<answer>44 - 19 + 35</answer><|endoftext|>", 1.0),  # a special token on the same line is fine
        ("</think>\n<answer>44 - 19 + 35</answer>\n", 0.0),  # a newline after </answer> leaves an empty last line
        ("</think>\n<answer>44 - 19 + 35</answer>\nDone.", 0.0),
        ("<answer>44 - 19 + 35\n</answer>", 0.0),  # an answer does not span lines
    ],
)
def test_only_the_last_line_counts(response, reward):
    assert score(response).reward == reward


# Rule: the last <answer>...</answer> on the line counts, matched lazily from the first <answer>.
@pytest.mark.parametrize(
    "response, reward, answer",
    [
        ("<answer>44 + 19 + 35</answer> or <answer>44 - 19 + 35</answer>", 1.0, "44 - 19 + 35"),
        ("<answer>44 - 19 + 35</answer> or <answer>44 + 19 + 35</answer>", 0.1, "44 + 19 + 35"),
        ("<answer>44 - <answer>19 + 35</answer>", 0.1, "44 - <answer>19 + 35"),
        ("<answer>44 - 19 + 35</answer></answer>", 1.0, "44 - 19 + 35"),
        ("<answer>44 - 19 + 35</answer> then <answer>unclosed", 1.0, "44 - 19 + 35"),
    ],
)
def test_last_answer_on_the_line(response, reward, answer):
    s = score(response)
    assert (s.reward, s.answer) == (reward, answer)


# Rule: the numbers in the answer must be the given numbers as a multiset; otherwise format credit 0.1.
@pytest.mark.parametrize(
    "answer",
    ["44 + 19", "44 + 19 + 35 + 1", "44 + 44 - 28", "(44 - 19) + 35 * 1", "25 + 35", ""],
)
def test_numbers_must_match_as_a_multiset(answer):
    s = score(f"<answer>{answer}</answer>")
    assert (s.reward, s.correct, s.formatted, s.reason) == (0.1, False, True, "numbers_mismatch")


def test_repeated_given_numbers_must_each_be_used():
    assert score("<answer>5 * 5 - 5</answer>", numbers=[5, 5, 5], target=20).reward == 1.0
    assert score("<answer>5 * 5 - 5</answer>", numbers=[5, 5, 5, 5], target=20).reward == 0.1


def test_wrong_value_scores_format_credit():
    s = score("<answer>44 + 19 - 35</answer>")
    assert (s.reward, s.reason) == (0.1, "wrong_value")


def test_division_by_zero_scores_format_credit():
    s = score("<answer>5 / (3 - 3) + 0</answer>", numbers=[5, 3, 3, 0], target=5)
    assert (s.reward, s.reason) == (0.1, "division_by_zero")


def test_exact_rational_arithmetic():
    # TinyZero's float eval accepts 3/7*7 (3.0000000000000004 is within 1e-5); the exact value is 3.
    assert score("<answer>3 / 7 * 7</answer>", numbers=[3, 7, 7], target=3).reward == 1.0
    assert score("<answer>(1 + 1 / 3) * 3</answer>", numbers=[1, 1, 3, 3], target=4).reward == 1.0  # via 4/3
    assert score("<answer>7 / 2</answer>", numbers=[7, 2], target=3).reward == 0.1


@pytest.mark.parametrize(
    "answer, reward",
    [
        ("-(19 - 44) + 35", 1.0),  # unary minus
        ("+44 - 19 + 35", 1.0),  # unary plus, as in Python
        ("--44 - 19 + 35", 1.0),  # unary signs chain
        ("44 - +19 + 35", 1.0),
        ("44 - 19 + 35 * -1", 0.1),  # a literal that is not given
        ("((44) - (19)) + ((35))", 1.0),
        ("44\t-\t19 +\f35", 1.0),  # tab and form feed separate tokens in Python
        ("(44 - 19\r) + 35", 1.0),  # a carriage return joins lines inside parentheses in Python
        ("44 - 19\r+ 35", 0.1),  # ... and is a syntax error outside them
        ("44 - 19\u00a0+ 35", 0.1),  # other Unicode whitespace is an error in Python
        ("44 - 19 + 3 5", 0.1),  # two literals side by side
        ("44 - 19 + 35)", 0.1),
        ("(44 - 19 + 35", 0.1),
        ("44 - 19 + 35 +", 0.1),
        ("44 - 19 (35)", 0.1),  # Python: 'int' object is not callable
        ("44 - 19 + 35 ()", 0.1),
        ("044 - 19 + 35", 0.1),  # leading zeros are a syntax error in Python...
    ],
)
def test_expression_syntax_follows_python(answer, reward):
    assert score(f"<answer>{answer}</answer>").reward == reward


def test_zero_literals_may_repeat_zeros():
    # ...but a literal of zeros only is a valid integer: Python accepts `00`.
    assert score("<answer>60 + 00</answer>", numbers=[60, 0], target=60).reward == 1.0


def test_nesting_limit_is_pythons():
    deep = "(" * 200 + "44 - 19" + ")" * 200 + " + 35"
    deeper = "(" * 201 + "44 - 19" + ")" * 201 + " + 35"
    assert score(f"<answer>{deep}</answer>").reward == 1.0
    s = score(f"<answer>{deeper}</answer>")
    assert (s.reward, s.reason) == (0.1, "too_deep")


@pytest.mark.parametrize(
    "answer, numbers, target, tinyzero_reward, reason",
    [
        ("2 ** 3 + 0", [2, 3, 0], 8, 1.0, "power_operator"),
        ("44**35**19", [44, 35, 19], 60, None, "power_operator"),  # hangs TinyZero's eval
        ("7 // 2", [7, 2], 3, 1.0, "floor_division"),
        ("2.5 * 2", [2, 5, 2], 5, 1.0, "decimal_point"),
        ("44 - 19 + 35 + 0.", [44, 19, 35, 0], 60, 1.0, "decimal_point"),
    ],
)
def test_deliberate_differences_from_tinyzero_score_format_credit(answer, numbers, target, tinyzero_reward, reason):
    s = score(f"<answer>{answer}</answer>", numbers=numbers, target=target)
    assert (s.reward, s.correct, s.formatted, s.reason) == (0.1, False, True, reason)
    if tinyzero_reward is not None:
        text = "Assistant: <answer>" + answer + "</answer>"
        assert tinyzero.countdown(text, target, numbers) == tinyzero_reward


@pytest.mark.parametrize("answer", ["٤٤ - ١٩ + ٣٥", "44 - 19 + 35 = 60", "44 - 19 + 35 ≈ 60", "x = 44 - 19 + 35"])
def test_anything_beyond_the_whitelist_scores_format_credit(answer):
    s = score(f"<answer>{answer}</answer>")
    assert (s.reward, s.formatted) == (0.1, True)
    assert tinyzero.countdown("Assistant: <answer>" + answer + "</answer>", TARGET, NUMBERS) == 0.1


def test_overlong_expressions_are_refused_cheaply():
    answer = "-" * 2000 + "(44 - 19) + 35"
    s = score(f"<answer>{answer}</answer>")
    assert (s.reward, s.reason) == (0.1, "too_long")


def test_reward_constants_are_parameters():
    assert score("<answer>44 - 19 + 35</answer>", format_score=0.2, correct_score=2.0).reward == 2.0
    assert score("<answer>44 + 19 + 35</answer>", format_score=0.2, correct_score=2.0).reward == 0.2
    assert score("no answer", format_score=0.2, correct_score=2.0).reward == 0.0


@pytest.mark.parametrize(
    "label, complaint",
    [
        ({"task": "countdown", "numbers": [1, 2]}, "'target' must be an integer"),
        ({"task": "countdown", "target": "60", "numbers": [1, 2]}, "'target' must be an integer"),
        ({"task": "countdown", "target": True, "numbers": [1, 2]}, "'target' must be an integer"),
        ({"task": "countdown", "target": 60, "numbers": []}, "'numbers' must be a non-empty list"),
        ({"task": "countdown", "target": 60, "numbers": "44,19,35"}, "'numbers' must be a non-empty list"),
        ({"task": "countdown", "target": 60, "nums": [44, 19, 35]}, "'numbers' must be a non-empty list"),
    ],
)
def test_malformed_label_raises_with_the_fix(label, complaint):
    with pytest.raises(LabelError, match=complaint) as e:
        countdown.score("<answer>1</answer>", label)
    assert '{"task": "countdown", "target": <int>, "numbers": [<int>, ...]}' in str(e.value)


# The response is what follows the prompt; when the query does not start with the prompt, TinyZero's cut
# ("Assistant:", else "<|im_start|>assistant") applies. Either way TinyZero's score comes out.
RESPONSES = [
    " 44 - 19 = 25, 25 + 35 = 60 </think>\n<answer> (44 - 19) + 35 </answer><|endoftext|>",
    " 44 + 19 = 63 </think>\n<answer> 44 + 19 - 35 </answer><|endoftext|>",
    " 44 + 19 = 63 </think>\n<answer> 44 + 19 </answer><|endoftext|>",
    " ... </think>\n<answer> (44 - 19) + 35 </answer>\n<|endoftext|>",
    " </think> <answer>44 - 19 + 35</answer>",  # no newline at all in the response
    " no tags here",
    "",
]


@pytest.mark.parametrize("template", ["base", "qwen-instruct"])
@pytest.mark.parametrize("response", RESPONSES)
def test_prompt_prefix_and_marker_fallback_both_give_tinyzeros_score(template, response):
    prompt = tinyzero.countdown_prompt(NUMBERS, TARGET, template)
    query = prompt + response
    expected = tinyzero.countdown(query, TARGET, NUMBERS)
    assert score_sample(query, prompt, LABEL).reward == expected  # prefix mode
    assert score_sample(query, None, LABEL).reward == expected  # fallback: no prompt
    assert score_sample(query[20:], prompt, LABEL).reward == expected  # fallback: prompt truncated from the left


def test_query_without_any_marker_scores_zero():
    s = score_sample("<answer>44 - 19 + 35</answer>", "some other prompt", LABEL)
    assert (s.reward, s.reason) == (0.0, "no_response_marker")


def test_model_written_assistant_marker_is_not_a_cut_point():
    # Documented difference: with the qwen-instruct prompt (no "Assistant:" in it), TinyZero cuts at the first
    # "Assistant:" anywhere, including one the model wrote on its last line, and then finds no answer.
    prompt = tinyzero.countdown_prompt(NUMBERS, TARGET, "qwen-instruct")
    query = prompt + " </think>\n<answer>44 - 19 + 35</answer> Assistant: done"
    assert tinyzero.countdown(query, TARGET, NUMBERS) == 0.0
    assert score_sample(query, prompt, LABEL).reward == 1.0
