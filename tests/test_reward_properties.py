"""Properties of the scorers over generated inputs: right answers score 1, near misses 0.1, nothing raises,
and wherever TinyZero's eval is safe to run, our score is TinyZero's."""

import json
from fractions import Fraction

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reference import tinyzero
from reward_funcs import countdown, multiply, score_sample

REWARDS = {0.0, 0.1, 1.0}
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


@st.composite
def expressions(draw, min_numbers=2, max_numbers=6):
    """(numbers, rendered expression, exact value): every number used once, random operators and grouping."""
    numbers = draw(st.lists(st.integers(0, 150), min_size=min_numbers, max_size=max_numbers))
    order = draw(st.permutations(numbers))
    nodes = [(str(n), Fraction(n)) for n in order]
    while len(nodes) > 1:
        i = draw(st.integers(0, len(nodes) - 2))
        (left, lv), (right, rv) = nodes[i], nodes[i + 1]
        op = draw(st.sampled_from("+-*/"))
        if op == "/" and rv == 0:
            op = "+"
        value = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if rv else None}[op]
        space = draw(st.sampled_from(["", " ", "  "]))
        nodes[i : i + 2] = [(f"({left}{space}{op}{space}{right})", value)]
    text, value = nodes[0]
    if draw(st.booleans()) and text.startswith("("):
        text = text[1:-1]  # the outermost parentheses are optional
    return numbers, text, value


@SETTINGS
@given(expr=expressions(), prefix=st.text(max_size=30))
def test_any_expression_that_hits_the_target_scores_one(expr, prefix):
    numbers, text, value = expr
    assume(value.denominator == 1)
    response = prefix + "\n<answer>" + text + "</answer><|endoftext|>"
    s = countdown.score(response, {"target": int(value), "numbers": numbers})
    assert (s.reward, s.correct, s.reason) == (1.0, True, "correct")


@SETTINGS
@given(expr=expressions(), which=st.integers(0, 5), delta=st.integers(1, 50))
def test_changing_one_number_scores_format_credit(expr, which, delta):
    numbers, text, value = expr
    assume(value.denominator == 1)
    changed = list(numbers)
    changed[which % len(changed)] += delta
    s = countdown.score("<answer>" + text + "</answer>", {"target": int(value), "numbers": changed})
    assert (s.reward, s.reason) == (0.1, "numbers_mismatch")


@SETTINGS
@given(expr=expressions(), delta=st.integers(1, 10**6))
def test_missing_the_target_scores_format_credit(expr, delta):
    numbers, text, value = expr
    target = int(value) + delta if value.denominator == 1 else int(value)
    s = countdown.score("<answer>" + text + "</answer>", {"target": target, "numbers": numbers})
    assert s.reward == 0.1


TAGGY_TEXT = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(
            [
                "<answer>",
                "</answer>",
                "\n",
                "Assistant:",
                "<|im_start|>assistant",
                "**",
                "//",
                "(",
                ")",
                "44",
                "19",
                "35",
                "408",
                "-",
                "/",
                "0",
                ".",
                "\r",
                "\u00a0",
                "٣",
            ]
        ),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=600, deadline=None)
@given(text=TAGGY_TEXT, prompt=st.one_of(st.none(), st.text(max_size=10)))
def test_arbitrary_text_never_raises(text, prompt):
    for label in (
        {"task": "countdown", "target": 60, "numbers": [44, 19, 35]},
        {"task": "multiply", "numbers": [12, 34], "product": 408},
    ):
        assert score_sample(text, prompt, label).reward in REWARDS
        assert score_sample((prompt or "") + text, prompt, json.dumps(label)).reward in REWARDS


@settings(max_examples=20, deadline=None)
@given(unit=st.text(min_size=1, max_size=8), copies=st.integers(10_000, 200_000))
def test_huge_text_never_raises(unit, copies):
    text = "Assistant: <answer>" + unit * copies + "</answer>"
    assert countdown.score(text, {"target": 60, "numbers": [44, 19, 35]}).reward in REWARDS
    assert multiply.score(text, {"product": 408}).reward in REWARDS


# Differential: on answers TinyZero's eval can safely run (no `**`, no `//`, no decimal point, shallow), both
# implementations agree on every completion.
ANSWER_PARTS = st.sampled_from(
    [
        "44",
        "19",
        "35",
        "0",
        "7",
        "2",
        "+",
        "-",
        "*",
        "/",
        "(",
        ")",
        " ",
        "\t",
        "00",
        "07",
        "60",
        "\r",
        "\u00a0",
        "=",
        "x",
        "٤",
    ]
)
SAFE_ANSWERS = (
    st.lists(ANSWER_PARTS, max_size=14)
    .map("".join)
    .filter(lambda a: "**" not in a and "//" not in a and a.count("(") < 50)
)


@settings(max_examples=2000, deadline=None)
@given(
    answer=SAFE_ANSWERS,
    tail=st.sampled_from(["", "<|endoftext|>", "\n", " done"]),
    numbers=st.sampled_from([[44, 19, 35], [7, 2, 0], [44, 19, 35, 0], [60]]),
    target=st.sampled_from([60, 3, 0, 14, 25]),
)
def test_countdown_agrees_with_tinyzero(answer, tail, numbers, target):
    query = "Assistant: Let me solve this step by step.\n<think> hmm </think>\n<answer>" + answer + "</answer>" + tail
    label = {"task": "countdown", "target": target, "numbers": numbers}
    assert score_sample(query, None, label).reward == tinyzero.countdown(query, target, numbers)


INT_PARTS = st.sampled_from(["4", "0", "8", "408", "_", "+", "-", " ", ".", "e", "٤", "\n", "<answer>", "</answer>"])


@settings(max_examples=2000, deadline=None)
@given(text=st.lists(INT_PARTS, max_size=16).map("".join))
def test_multiply_agrees_with_tinyzero(text):
    query = "Assistant: <think> ok </think> <answer>" + text + "</answer>"
    label = {"task": "multiply", "product": 408}
    assert score_sample(query, None, label).reward == tinyzero.multiply(query, 408)
