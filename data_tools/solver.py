"""Countdown solver: every way to combine the numbers, all puzzles of a batch at once.

    from data_tools.solver import solve
    solve([44, 19, 35], 60)   # Solution(expression='44 - 19 + 35', solutions=..., leaves=1152)
    solve([1, 1, 1], 60)      # None: proved, every combination was tried

A combination merges two of the current numbers into one, again and again, until one number is left: the
exhaustive search of Stream-of-Search (and of the puzzles TinyZero trains on). The order of pairs and operators
is fixed, so the combinations are numbered; a solution's number decodes back into an expression.

Arithmetic, per pair (a, b):
  integer (default, Stream-of-Search): a+b, a*b, larger-smaller, larger/smaller when exact; every intermediate
    value is a non-negative integer;
  rational (`rational=True`, what the reward accepts): a+b, a*b, a-b, b-a, a/b, b/a, any rational value.
`solutions` counts the combinations that reach the target (a difficulty rating: fewer is harder); `leaves` is
how many there are in all (1,152 for four numbers in integer arithmetic, as Stream-of-Search counts them).

The batch is evaluated with numpy, one array operation per (pair, operator) and level, so a batch of
thousands of 4-number puzzles costs a few dozen array operations.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

INT_OPS = 4  # a+b, a*b, larger-smaller, larger/smaller
RATIONAL_OPS = 6  # a+b, a*b, a-b, b-a, a/b, b/a
MAX_ELEMENTS = 1 << 22  # leaves evaluated per array operation; bounds memory to a few hundred MB


@dataclass(frozen=True)
class Solution:
    expression: str
    solutions: int | None  # how many of the `leaves` combinations reach the target (None: too many to count)
    leaves: int


def pairs(m: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(m), 2))


def leaf_count(k: int, rational: bool = False) -> int:
    ops = RATIONAL_OPS if rational else INT_OPS
    return math.prod(len(pairs(m)) * ops for m in range(2, k + 1))


def check_range(k: int, largest: int, target: int, rational: bool) -> None:
    """Raise ValueError when values of `k` numbers up to `largest` could overflow 64-bit integers."""
    # Every value (numerator and denominator in rational mode) is at most 2^(k-1) * largest^k in size.
    bound = (2 ** (k - 1) if rational else 1) * max(largest, 1) ** k * max(abs(target), 1)
    if bound >= 2**62:
        raise ValueError(f"{k} numbers up to {largest} can exceed 64-bit arithmetic: use smaller or fewer numbers")


def _combine(a, b, rational: bool):
    """All operator results for arrays a, b: a list of (values) or of (numerators, denominators) pairs.
    Invalid results are -1 (integer mode) or have denominator 0 (rational mode)."""
    if not rational:
        valid = (a >= 0) & (b >= 0)
        big, small = np.maximum(a, b), np.minimum(a, b)
        exact = valid & (small > 0)
        quotient = np.where(exact, big // np.where(small > 0, small, 1), -1)
        quotient = np.where(exact & (quotient * small == big), quotient, -1)
        return [np.where(valid, a + b, -1), np.where(valid, a * b, -1), np.where(valid, big - small, -1), quotient]
    (an, ad), (bn, bd) = a, b
    valid = (ad != 0) & (bd != 0)
    zero = np.zeros_like(ad)
    results = [
        (an * bd + bn * ad, np.where(valid, ad * bd, zero)),
        (an * bn, np.where(valid, ad * bd, zero)),
        (an * bd - bn * ad, np.where(valid, ad * bd, zero)),
        (bn * ad - an * bd, np.where(valid, ad * bd, zero)),
    ]
    for num, den in ((an * bd, ad * bn), (bn * ad, bd * an)):  # a/b, b/a: keep denominators positive
        sign = np.where(den < 0, -1, 1)
        results.append((num * sign, np.where(valid, den * sign, zero)))
    return results


def _leaves(numbers: np.ndarray, rational: bool):
    """Values of every combination: (n, leaves) array, or a (numerators, denominators) pair of them."""
    n, k = numbers.shape
    state = numbers.astype(np.int64)[:, None, :]  # (n, combinations so far, numbers left)
    if rational:
        state = (state, np.ones_like(state))
    for m in range(k, 1, -1):
        produced = []
        for i, j in pairs(m):
            keep = [x for x in range(m) if x not in (i, j)]
            if rational:
                nums, dens = state
                rest = (nums[:, :, keep], dens[:, :, keep])
                for num, den in _combine((nums[:, :, i], dens[:, :, i]), (nums[:, :, j], dens[:, :, j]), True):
                    produced.append(
                        (np.concatenate([rest[0], num[:, :, None]], 2), np.concatenate([rest[1], den[:, :, None]], 2))
                    )
            else:
                rest = state[:, :, keep]
                for value in _combine(state[:, :, i], state[:, :, j], False):
                    produced.append(np.concatenate([rest, value[:, :, None]], 2))
        # Combination index = old index * (pairs * ops) + pair * ops + op: lexicographic in the search order.
        if rational:
            nums = np.stack([p[0] for p in produced], 2)
            dens = np.stack([p[1] for p in produced], 2)
            s = nums.shape
            state = (nums.reshape(n, s[1] * s[2], m - 1), dens.reshape(n, s[1] * s[2], m - 1))
        else:
            stacked = np.stack(produced, 2)
            state = stacked.reshape(n, stacked.shape[1] * stacked.shape[2], m - 1)
    if rational:
        return state[0][:, :, 0], state[1][:, :, 0]
    return state[:, :, 0]


def search(numbers: np.ndarray, targets: np.ndarray, rational: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `numbers` (n, k) and its target: how many combinations reach it, and the index of the
    first one (meaningful where the count is > 0). Rows are processed in slices that bound memory."""
    numbers = np.asarray(numbers, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    n, k = numbers.shape
    if k == 1:
        hit = numbers[:, 0] == targets
        return hit.astype(np.int64), np.zeros(n, dtype=np.int64)
    rows = max(1, MAX_ELEMENTS // leaf_count(k, rational))
    counts, firsts = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    for start in range(0, n, rows):
        block, goal = numbers[start : start + rows], targets[start : start + rows, None]
        if rational:
            nums, dens = _leaves(block, True)
            hit = (dens != 0) & (nums == goal * dens)
        else:
            hit = _leaves(block, False) == goal
        counts[start : start + rows] = hit.sum(1)
        firsts[start : start + rows] = hit.argmax(1)
    return counts, firsts


# Expressions are written with as few parentheses as exact arithmetic allows.
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def _join(left: tuple[str, int], op: str, right: tuple[str, int]) -> tuple[str, int]:
    prec = _PRECEDENCE[op]
    ltext, lprec = left
    rtext, rprec = right
    if lprec < prec:
        ltext = f"({ltext})"
    if rprec < prec or (op in "-/" and rprec == prec):
        rtext = f"({rtext})"
    return f"{ltext} {op} {rtext}", prec


def _results(a, b, rational: bool) -> list:
    """Operator results in the search's order; None where an operator does not apply."""
    if rational:
        return [a + b, a * b, a - b, b - a, a / b if b else None, b / a if a else None]
    big, small = (a, b) if a >= b else (b, a)
    return [a + b, a * b, big - small, big // small if small and big % small == 0 else None]


# How each operator of `_results` is written: (symbol, operands swapped).
_INT_TEXT = [("+", False), ("*", False), ("-", False), ("/", False)]  # the larger operand first
_RATIONAL_TEXT = [("+", False), ("*", False), ("-", False), ("-", True), ("/", False), ("/", True)]


def expression(numbers, index: int, rational: bool = False) -> str:
    """The expression of combination `index` for `numbers` (the order `search` numbers them in)."""
    k = len(numbers)
    ops = RATIONAL_OPS if rational else INT_OPS
    steps = []
    for m in range(2, k + 1):  # the last merge is the least significant digit
        index, digit = divmod(index, len(pairs(m)) * ops)
        steps.append(divmod(digit, ops))
    # Integer arithmetic stays in ints (exact divisions only); rational arithmetic needs Fractions.
    items = [(Fraction(x) if rational else x, (str(x), 3)) for x in numbers]
    for (pair, op), m in zip(reversed(steps), range(k, 1, -1), strict=True):
        i, j = pairs(m)[pair]
        (a, atext), (b, btext) = items[i], items[j]
        if not rational and a < b:
            (a, atext), (b, btext) = (b, btext), (a, atext)  # larger first, as the search does
        value = _results(a, b, rational)[op]
        symbol, swapped = (_RATIONAL_TEXT if rational else _INT_TEXT)[op]
        text = _join(btext, symbol, atext) if swapped else _join(atext, symbol, btext)
        if value is None:
            raise ValueError(f"combination {index} of {numbers} divides by zero or not exactly")
        items = [items[x] for x in range(m) if x not in (i, j)] + [(value, text)]
    return items[0][1][0]


EXHAUSTIVE_MAX = 5  # beyond, the combinations are too many to count (2.8 million for six numbers)


def first_solution(numbers, target: int, rational: bool = False, deadline: float | None = None) -> int | None:
    """Index of the first combination (in the search's order) that reaches the target, or None: a depth-first
    search that stops at the first solution and never revisits a multiset of values it has exhausted. Past
    `deadline` (a time.monotonic() value) it raises TimeoutError: six numbers can take seconds each."""
    exhausted: set[tuple] = set()
    visits = itertools.count(1)

    def dfs(values: tuple) -> list[tuple[int, int]] | None:
        if len(values) == 1:
            return [] if values[0] == target else None
        state = tuple(sorted(values))
        if state in exhausted:
            return None
        if deadline is not None and next(visits) % 4096 == 0 and time.monotonic() > deadline:
            raise TimeoutError
        for p, (i, j) in enumerate(pairs(len(values))):
            rest = tuple(values[x] for x in range(len(values)) if x not in (i, j))
            for op, result in enumerate(_results(values[i], values[j], rational)):
                if result is not None:
                    found = dfs(rest + (result,))
                    if found is not None:
                        return [(p, op), *found]
        exhausted.add(state)
        return None

    steps = dfs(tuple(Fraction(n) for n in numbers) if rational else tuple(numbers))
    if steps is None:
        return None
    ops, index = RATIONAL_OPS if rational else INT_OPS, 0
    for m, (p, op) in zip(range(len(numbers), 1, -1), steps, strict=True):
        index = index * len(pairs(m)) * ops + p * ops + op
    return index


def solve(numbers, target: int, rational: bool = False) -> Solution | None:
    """A solution using every number once, or None when the exhaustive search proves there is none."""
    numbers = list(numbers)
    check_range(len(numbers), max(numbers, default=0), target, rational)
    if len(numbers) > EXHAUSTIVE_MAX:
        first = first_solution(numbers, target, rational)
        if first is None:
            return None
        return Solution(expression(numbers, first, rational), None, leaf_count(len(numbers), rational))
    counts, firsts = search(np.array([numbers]), np.array([target]), rational)
    if counts[0] == 0:
        return None
    return Solution(expression(numbers, int(firsts[0]), rational), int(counts[0]), leaf_count(len(numbers), rational))


class TripleTable:
    """Every value reachable by every multiset of three numbers in [lo, hi] (integer arithmetic). It turns "is T
    reachable from these 3 or 4 numbers?" into a few lookups: with four numbers, T = x op v for one number x and
    a value v of the other three, or u op w for values of two pairs; so only the inverses of the last
    operation need looking up. Values below `dense` are in a boolean table (direct indexing); larger ones are
    sorted keys `triple * span + value` for binary search."""

    def __init__(self, lo: int, hi: int, dense: int = 256):
        self.lo, self.width, self.dense = lo, hi - lo + 1, dense
        self.span = hi**3 + 1  # values of three numbers are at most hi^3
        a, b, c = np.meshgrid(*[np.arange(lo, hi + 1, dtype=np.int64)] * 3, indexing="ij")
        ordered = (a <= b) & (b <= c)
        grid = np.stack([a[ordered], b[ordered], c[ordered]], 1)  # each multiset once
        self.row_of = np.full(self.width**3, -1, dtype=np.int64)
        self.row_of[self._ids(grid)] = np.arange(len(grid))
        values = _leaves(grid, False)  # (triples, 48)
        rows = np.broadcast_to(np.arange(len(grid))[:, None], values.shape)
        small = (values >= 0) & (values < dense)
        self.table = np.zeros((len(grid), dense), dtype=bool)
        self.table[rows[small], values[small]] = True
        large = values >= dense
        self.keys = np.sort(rows[large] * self.span + values[large])  # duplicates are harmless to searchsorted

    @staticmethod
    def fits(lo: int, hi: int) -> bool:
        """Whether the table is small enough to build and its keys fit 64 bits."""
        return 0 <= lo <= hi and (hi - lo + 1) <= 200 and (hi - lo + 1) ** 3 * (hi**3 + 1) < 2**62

    def _ids(self, triples: np.ndarray) -> np.ndarray:
        s = np.sort(triples, axis=1) - self.lo
        return (s[:, 0] * self.width + s[:, 1]) * self.width + s[:, 2]

    def contains(self, triples: np.ndarray, values: np.ndarray) -> np.ndarray:
        """For rows of triples (n, 3) and candidate values (n, c): is each value reachable (n, c)?"""
        rows = np.broadcast_to(self.row_of[self._ids(triples)][:, None], values.shape)
        small = (values >= 0) & (values < self.dense)
        found = np.zeros(values.shape, dtype=bool)
        found[small] = self.table[rows[small], values[small]]
        large = (values >= self.dense) & (values < self.span)
        if large.any() and len(self.keys):
            keys = rows[large] * self.span + values[large]
            at = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
            found[large] = self.keys[at] == keys
        return found

    def solvable(self, numbers: np.ndarray, targets: np.ndarray) -> np.ndarray:
        numbers, targets = np.asarray(numbers, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        k = numbers.shape[1]
        if k == 3:
            return self.contains(numbers, targets[:, None])[:, 0]
        if k != 4:
            raise ValueError("TripleTable answers for three or four numbers")
        t = targets[:, None]
        found = np.zeros(len(numbers), dtype=bool)
        for single in range(4):  # T = x op v, v a value of the other three
            x = numbers[:, single : single + 1]
            rest = numbers[:, [i for i in range(4) if i != single]]
            safe_x = np.where(x > 0, x, 1)
            safe_t = np.where(t > 0, t, 1)
            inverses = np.concatenate(
                [
                    t - x,  # x + v
                    np.where((x > 0) & (t % safe_x == 0), t // safe_x, -1),  # x * v
                    x - t,  # x - v
                    x + t,  # v - x
                    np.where((x > 0) & (t > 0), x * t, -1),  # v / x, v >= x > 0
                    np.where((x > 0) & (t > 0) & (x % safe_t == 0), x // safe_t, -1),  # x / v, x >= v > 0
                ],
                axis=1,
            )
            found |= self.contains(rest, inverses).any(1)
            found |= ((x == 0) & (t == 0))[:, 0]  # 0 * v
        for (a, b), (c, d) in (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))):  # T = u op w
            left = np.stack(_combine(numbers[:, a], numbers[:, b], False), 1)[:, :, None]
            right = np.stack(_combine(numbers[:, c], numbers[:, d], False), 1)[:, None, :]
            for result in _combine(left, right, False):
                found |= (result == t[:, :, None]).any((1, 2))
        return found
