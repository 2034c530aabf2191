"""Exact evaluation of Countdown answers: a whitelist parser over integers, + - * /, parentheses, unary signs.

Never `eval`. The grammar is the subset of Python expressions that TinyZero's character check lets through,
minus the deliberate differences below, so that a well-formed answer gets the value Python gives it, but
exactly: rational arithmetic on integer numerator/denominator pairs. Anything else raises `ExpressionError`
with a short reason.

Same as Python: space, tab and form feed separate tokens; a carriage return only inside parentheses; literals
with a leading zero (`07`) are a syntax error, `0` and `00` are not; parentheses nest at most 200 deep.
Deliberate differences from TinyZero (all score the format credit, never the full reward):
  `**` (power, which lets `44**35**19` hang an eval), `//` (floor division), a decimal point (`2.5`),
  any other character, and answers longer than MAX_CHARS characters.
Work is bounded: longer answers are refused before anything else, and what is left is tokenized by one
regular expression and read by one iterative loop (no recursion), over integer numerator/denominator pairs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

MAX_CHARS = 1024  # longer than any answer a model writes for six numbers; bounds the work
MAX_DEPTH = 200  # Python's parser refuses deeper nesting ("too many nested parentheses")

_ALLOWED = re.compile(r"[0-9+\-*/() \t\f\r]*")
# Literals and single characters; space, tab and form feed only separate tokens, so two literals in a row
# in the token list were written with whitespace between them: a syntax error, as in Python.
_TOKEN = re.compile(r"[0-9]+|[^0-9 \t\f]")
_ANY_DIGITS = re.compile(r"\d+")  # TinyZero's number check, which counts other scripts' digits too


class ExpressionError(ValueError):
    """The answer is not an acceptable expression; `reason` is a short word for analysis."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_characters(expr: str) -> None:
    if "**" in expr:  # made of allowed characters, so named before the whitelist check
        raise ExpressionError("power_operator")
    if "//" in expr:
        raise ExpressionError("floor_division")
    if _ALLOWED.fullmatch(expr):
        return
    if "." in expr:
        raise ExpressionError("decimal_point")
    raise ExpressionError("invalid_character")


def evaluate(expr: str, numbers: Sequence[int]) -> Fraction:
    """The exact value of `expr`, which must use each of `numbers` exactly once (as a multiset)."""
    numerator, denominator = value(expr, numbers)
    return Fraction(numerator, denominator)


def value(expr: str, numbers: Sequence[int]) -> tuple[int, int]:
    """`evaluate` as an unreduced (numerator, denominator) pair, denominator never 0: the fast path."""
    if len(expr) > MAX_CHARS:
        raise ExpressionError("too_long")
    literals: list[str] = []
    try:
        result = _parse(_TOKEN.findall(expr), literals)
    except ExpressionError:
        # Name the cause as TinyZero's order would: the numbers first, then the characters, then the syntax.
        _check_numbers(_ANY_DIGITS.findall(expr), numbers)
        check_characters(expr)
        raise
    _check_numbers(literals, numbers)
    return result


def _check_numbers(literals: list[str], numbers: Sequence[int]) -> None:
    if sorted(map(int, literals)) != sorted(numbers):  # int() is safe: answers are at most MAX_CHARS long
        raise ExpressionError("numbers_mismatch")


def _parse(tokens: list[str], literals: list[str]) -> tuple[int, int]:
    """Shunting-yard over the tokens, applying operators as they are popped; appends each literal to `literals`.
    Written as one flat loop: it runs for every sample of every rollout."""
    values: list[tuple[int, int]] = []
    ops: list[str] = []  # binary operators, "neg"/"pos" for unary signs, "(" markers
    depth = 0
    expect_operand = True
    for tok in tokens:
        if tok.isdigit():
            literals.append(tok)
            if not expect_operand:
                raise ExpressionError("syntax")
            if not tok.isascii():  # another script's digit: Python refuses it
                raise ExpressionError("syntax")
            if tok[0] == "0" and len(tok) > 1 and tok.strip("0"):
                raise ExpressionError("leading_zero")  # `07`: a syntax error in Python; `00` is fine
            values.append((int(tok), 1))
            expect_operand = False
        elif expect_operand:
            if tok == "(":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ExpressionError("too_deep")
                ops.append("(")
            elif tok == "-":
                ops.append("neg")
            elif tok == "+":
                ops.append("pos")
            elif tok != "\r" or depth == 0:  # `*3`, `()`, `(1+)`, or a line break outside brackets
                raise ExpressionError("syntax")
        elif tok == ")":
            while ops and ops[-1] != "(":
                _apply(ops.pop(), values)
            if not ops:
                raise ExpressionError("syntax")
            ops.pop()
            depth -= 1
        elif tok == "(":  # `2(3)` calls an int in Python: an error there too
            raise ExpressionError("syntax")
        elif tok == "\r":
            if depth == 0:  # Python joins lines only inside brackets
                raise ExpressionError("syntax")
        else:
            precedence = _BINARY_PRECEDENCE.get(tok)
            if precedence is None:  # a character outside the whitelist
                raise ExpressionError("syntax")
            while ops and _PRECEDENCE[ops[-1]] >= precedence:
                _apply(ops.pop(), values)
            ops.append(tok)
            expect_operand = True
    if expect_operand:
        raise ExpressionError("syntax")
    while ops:
        op = ops.pop()
        if op == "(":
            raise ExpressionError("syntax")
        _apply(op, values)
    return values[0]


_BINARY_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
# Unary signs bind tighter than any binary operator, as in Python; "(" stops every pop.
_PRECEDENCE = {"(": 0, "neg": 3, "pos": 3, **_BINARY_PRECEDENCE}


def _apply(op: str, values: list[tuple[int, int]]) -> None:
    if op == "neg":
        n, d = values[-1]
        values[-1] = (-n, d)
    elif op != "pos":
        c, d2 = values.pop()
        a, d1 = values[-1]
        if op == "+":
            values[-1] = (a * d2 + c * d1, d1 * d2)
        elif op == "-":
            values[-1] = (a * d2 - c * d1, d1 * d2)
        elif op == "*":
            values[-1] = (a * c, d1 * d2)
        elif c == 0:
            raise ExpressionError("division_by_zero")
        else:
            values[-1] = (a * d2, d1 * c)
