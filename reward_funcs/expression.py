"""Exact evaluation of Countdown answers: a whitelist parser over integers, + - * /, parentheses, unary signs.

Never `eval`. The grammar is the subset of Python expressions that TinyZero's character check lets through,
minus the deliberate differences below, so that a well-formed answer gets the value Python gives it, computed
exactly with `fractions.Fraction`. Anything else raises `ExpressionError` with a short reason.

Same as Python: space, tab and form feed separate tokens; a carriage return only inside parentheses; literals
with a leading zero (`07`) are a syntax error, `0` and `00` are not; parentheses nest at most 200 deep.
Deliberate differences from TinyZero (all score the format credit, never the full reward):
  `**` (power, which lets `44**35**19` hang an eval), `//` (floor division), a decimal point (`2.5`),
  any other character, and expressions longer than MAX_CHARS once whitespace is removed.
Work is bounded: the input is checked and compacted by regular expressions in linear time, and the parser,
iterative with no recursion, only ever sees at most MAX_CHARS characters and len(numbers) literals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

MAX_CHARS = 1024  # longer than any answer a model writes for six numbers; bounds the parser's work
MAX_DEPTH = 200  # Python's parser refuses deeper nesting ("too many nested parentheses")

_ALLOWED = re.compile(r"[0-9+\-*/() \t\f\r]*")
_LITERAL = re.compile(r"[0-9]+")
_SPLIT_LITERALS = re.compile(r"[0-9][ \t\f\r]+[0-9]")
_WHITESPACE = re.compile(r"[ \t\f]+")
_TOKEN = re.compile(r"[0-9]+|[^0-9]")  # every character left is a token (\r included)

_BINARY = {"+": 1, "-": 1, "*": 2, "/": 2}
_UNARY = 3  # binds tighter than any binary operator, as in Python


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


def literals(expr: str, limit: int) -> list[str] | None:
    """The digit runs of `expr`, or None if there are more than `limit` (no need to look further)."""
    found = []
    for m in _LITERAL.finditer(expr):
        if len(found) == limit:
            return None
        found.append(m.group())
    return found


def evaluate(expr: str, numbers: Sequence[int]) -> Fraction:
    """The exact value of `expr`, which must use each of `numbers` exactly once (as a multiset)."""
    check_characters(expr)
    found = literals(expr, len(numbers))
    if found is None or sorted(int(x) for x in found) != sorted(numbers):
        raise ExpressionError("numbers_mismatch")
    if any(len(x) > 1 and x[0] == "0" and x.strip("0") for x in found):
        raise ExpressionError("leading_zero")
    if _SPLIT_LITERALS.search(expr):
        raise ExpressionError("syntax")
    compact = _WHITESPACE.sub("", expr)
    if len(compact) - compact.count("\r") > MAX_CHARS:
        raise ExpressionError("too_long")
    return _parse(_TOKEN.findall(compact))


def _apply(op: str, values: list[Fraction]) -> None:
    if op == "neg":
        values[-1] = -values[-1]
        return
    if op == "pos":
        return
    right = values.pop()
    left = values[-1]
    if op == "+":
        values[-1] = left + right
    elif op == "-":
        values[-1] = left - right
    elif op == "*":
        values[-1] = left * right
    elif right == 0:
        raise ExpressionError("division_by_zero")
    else:
        values[-1] = left / right


def _precedence(op: str) -> int:
    return _UNARY if op in ("neg", "pos") else _BINARY.get(op, 0)


def _parse(tokens: list[str]) -> Fraction:
    """Shunting-yard over the tokens, applying operators as they are popped."""
    values: list[Fraction] = []
    ops: list[str] = []  # operators and "(" markers
    depth = 0
    expect_operand = True
    for tok in tokens:
        if tok == "\r":
            if depth == 0:  # Python only joins lines inside brackets
                raise ExpressionError("syntax")
            continue
        if tok[0].isdigit():
            if not expect_operand:
                raise ExpressionError("syntax")
            values.append(Fraction(int(tok)))
            expect_operand = False
        elif tok == "(":
            if not expect_operand:  # `2(3)` calls an int in Python: an error there too
                raise ExpressionError("syntax")
            depth += 1
            if depth > MAX_DEPTH:
                raise ExpressionError("too_deep")
            ops.append("(")
        elif tok == ")":
            if expect_operand:  # `()` or `(1+)`
                raise ExpressionError("syntax")
            while ops and ops[-1] != "(":
                _apply(ops.pop(), values)
            if not ops:
                raise ExpressionError("syntax")
            ops.pop()
            depth -= 1
        elif expect_operand:
            if tok not in "+-":
                raise ExpressionError("syntax")
            ops.append("neg" if tok == "-" else "pos")
        else:
            precedence = _BINARY[tok]
            while ops and _precedence(ops[-1]) >= precedence:
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
