"""The whitelist parser on its own: exact values, Python's precedence, and the reason given for each refusal."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_funcs.expression import MAX_CHARS, ExpressionError, evaluate


@pytest.mark.parametrize(
    "expr, numbers, expected",
    [
        ("1 + 2 * 3", [1, 2, 3], Fraction(7)),  # * before +
        ("(1 + 2) * 3", [1, 2, 3], Fraction(9)),
        ("8 / 4 / 2", [8, 4, 2], Fraction(1)),  # left to right
        ("8 - 4 - 2", [8, 4, 2], Fraction(2)),
        ("-3 * 2", [3, 2], Fraction(-6)),  # unary minus binds tighter than *
        ("2 * -3", [2, 3], Fraction(-6)),
        ("2 - -3", [2, 3], Fraction(5)),
        ("- - 3", [3], Fraction(3)),
        ("+(-(-3))", [3], Fraction(3)),
        ("1 / 3", [1, 3], Fraction(1, 3)),  # exact, not 0.333...
        ("(1 + 1 / 3) * 3", [1, 1, 3, 3], Fraction(4)),
        ("2 / (1 - 3)", [2, 1, 3], Fraction(-1)),
        ("00 + 7", [0, 7], Fraction(7)),
    ],
)
def test_values_are_exact_with_pythons_precedence(expr, numbers, expected):
    assert evaluate(expr, numbers) == expected


@pytest.mark.parametrize(
    "expr, numbers, reason",
    [
        ("2 ** 3", [2, 3], "power_operator"),
        ("7 // 2", [7, 2], "floor_division"),
        ("2.5 * 2", [2, 5, 2], "decimal_point"),
        ("2 x 3", [2, 3], "invalid_character"),
        ("٢ + 3", [2, 3], "invalid_character"),  # TinyZero counts it as the number 2, then eval refuses it
        ("2 3", [2, 3], "syntax"),
        ("2 (3)", [2, 3], "syntax"),
        ("(2 + 3", [2, 3], "syntax"),
        ("2 + 3)", [2, 3], "syntax"),
        ("()2 + 3", [2, 3], "syntax"),
        ("2 +", [2], "syntax"),
        ("02 + 3", [2, 3], "leading_zero"),
        ("2 / (3 - 3)", [2, 3, 3], "division_by_zero"),
        ("(" * 201 + "2" + ")" * 201, [2], "too_deep"),
        ("2 + 3 + " + " " * MAX_CHARS, [2, 3], "too_long"),
        # the numbers are checked first, as TinyZero does: that reason wins over the others
        ("2 + 4", [2, 3], "numbers_mismatch"),
        ("2 ** 4", [2, 3], "numbers_mismatch"),
        ("2 3 3", [2, 3], "numbers_mismatch"),
        ("", [2], "numbers_mismatch"),
    ],
)
def test_refusals_name_their_reason(expr, numbers, reason):
    with pytest.raises(ExpressionError) as e:
        evaluate(expr, numbers)
    assert e.value.reason == reason


@st.composite
def flat_expressions(draw):
    numbers = draw(st.lists(st.integers(1, 99), min_size=1, max_size=6))
    signs = draw(st.lists(st.sampled_from(["", "-", "+", "--"]), min_size=len(numbers), max_size=len(numbers)))
    ops = draw(st.lists(st.sampled_from("+-*/"), min_size=len(numbers) - 1, max_size=len(numbers) - 1))
    parts = [signs[0] + str(numbers[0])]
    for op, sign, n in zip(ops, signs[1:], numbers[1:], strict=True):
        parts.append(f" {op} {sign}{n}")
    return numbers, "".join(parts)


@settings(max_examples=1000, deadline=None)
@given(expr=flat_expressions())
def test_same_value_as_python(expr):
    # Without parentheses precedence and signs decide everything; Python's float value must agree closely.
    numbers, text = expr
    python = eval(text, {"__builtins__": {}}, {})  # trusted: built from digits, signs and + - * / only
    assert float(evaluate(text, numbers)) == pytest.approx(python, rel=1e-9, abs=1e-9)
