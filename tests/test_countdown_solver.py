"""The Countdown solver: exhaustive, exact, and every solution it returns scores 1.0 through the reward."""

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_tools.solver import TripleTable, first_solution, leaf_count, search, solve
from reward_funcs import countdown


def brute_force(numbers, target, rational):
    """How many merge sequences reach the target: the plain recursive enumeration, written out."""
    if len(numbers) == 1:
        return int(numbers[0] == target)
    total = 0
    for i, j in itertools.combinations(range(len(numbers)), 2):
        a, b = numbers[i], numbers[j]
        rest = [numbers[x] for x in range(len(numbers)) if x not in (i, j)]
        if rational:
            results = [a + b, a * b, a - b, b - a, a / b if b else None, b / a if a else None]
        else:
            big, small = max(a, b), min(a, b)
            results = [a + b, a * b, big - small, big // small if small and big % small == 0 else None]
        total += sum(brute_force(rest + [r], target, rational) for r in results if r is not None)
    return total


def scores_one(numbers, target, expression):
    label = {"task": "countdown", "target": target, "numbers": list(numbers)}
    return countdown.score(f"<answer>{expression}</answer>", label).reward == 1.0


@pytest.mark.parametrize(
    "numbers, target",
    [([44, 19, 35], 60), ([2, 3], 5), ([4, 4, 10, 10], 24), ([99, 98, 97, 96], 4), ([7, 7, 7, 7], 0), ([6], 6)],
)
def test_solvable_puzzles_get_a_solution_that_scores(numbers, target):
    found = solve(numbers, target)
    assert found is not None and found.solutions >= 1
    assert found.leaves == leaf_count(len(numbers))
    assert scores_one(numbers, target, found.expression)


@pytest.mark.parametrize("numbers, target", [([1, 1, 1], 60), ([1, 2], 7), ([2, 2, 2, 2], 99), ([5], 6)])
def test_unsolvable_puzzles_are_proved_so(numbers, target):
    assert solve(numbers, target) is None
    assert solve(numbers, target, rational=True) is None


def test_rational_intermediates_only_when_asked():
    # 5 * (5 - 1 / 5) = 24 needs the intermediate 1/5.
    assert solve([1, 5, 5, 5], 24) is None
    found = solve([1, 5, 5, 5], 24, rational=True)
    assert found is not None and scores_one([1, 5, 5, 5], 24, found.expression)


def test_leaf_counts_match_stream_of_search():
    # Stream-of-Search's naive node counts: 4 numbers -> 1,152; 5 -> 46,080.
    assert [leaf_count(k) for k in (2, 3, 4, 5)] == [4, 48, 1152, 46080]


def test_refuses_ranges_that_overflow():
    with pytest.raises(ValueError, match="64-bit"):
        solve([10**6] * 6, 1)


@settings(max_examples=300, deadline=None)
@given(
    numbers=st.lists(st.integers(0, 13), min_size=1, max_size=4),
    target=st.integers(-5, 40),
    rational=st.booleans(),
)
def test_agrees_with_brute_force(numbers, target, rational):
    if not rational and target < 0:
        target = -target
    values = [Fraction(n) for n in numbers] if rational else numbers
    expected = brute_force(values, target, rational)
    found = solve(numbers, target, rational)
    assert (found.solutions if found else 0) == expected
    if found:
        assert scores_one(numbers, target, found.expression)


@pytest.mark.parametrize("lo, hi, targets", [(1, 99, (10, 99)), (0, 9, (0, 30)), (2, 20, (0, 500))])
@pytest.mark.parametrize("k", [3, 4])
def test_triple_table_agrees_with_the_search(lo, hi, targets, k):
    rng = np.random.default_rng(k * 1000 + hi)
    numbers = rng.integers(lo, hi + 1, size=(20000, k))
    goals = rng.integers(targets[0], targets[1] + 1, size=20000)
    counts, _ = search(numbers, goals)
    assert (TripleTable(lo, hi).solvable(numbers, goals) == (counts > 0)).all()


@settings(max_examples=300, deadline=None)
@given(numbers=st.lists(st.integers(0, 20), min_size=1, max_size=4), target=st.integers(0, 60), rational=st.booleans())
def test_depth_first_search_finds_the_same_first_combination(numbers, target, rational):
    # Six numbers are solved depth-first; it must follow the exhaustive search's order exactly.
    counts, firsts = search(np.array([numbers]), np.array([target]), rational)
    assert first_solution(numbers, target, rational) == (int(firsts[0]) if counts[0] else None)


def test_six_numbers_are_solved_without_counting():
    found = solve([3, 7, 9, 25, 50, 75], 952)
    assert found is not None and found.solutions is None and found.leaves == leaf_count(6)
    assert scores_one([3, 7, 9, 25, 50, 75], 952, found.expression)
    assert solve([1, 1, 1, 1, 1, 1], 999) is None
