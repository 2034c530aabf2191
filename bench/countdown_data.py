"""Countdown dataset generation speed: the full TinyZero-size set against naive rejection sampling, in one run.

    .venv/bin/python -m bench.countdown_data [--workers 2] [--baseline-puzzles 200]

Ours: `python -m data_tools.countdown` with its defaults (327,680 + 1,024 distinct puzzles, every one with a
solver-verified reference solution), wall time from start to the files on disk.
Baseline: what Stream-of-Search's generator does, in plain Python: for each puzzle draw a target, then draw
numbers until a recursive depth-first search finds a solution. It is timed on a sample and extrapolated.
"""

from __future__ import annotations

import argparse
import itertools
import random
import tempfile
import time
from pathlib import Path

from data_tools import countdown


def recursive_search(numbers: list[int], target: int) -> bool:
    """Stream-of-Search's search: merge a pair with + * - / (non-negative integers), recurse, stop at a hit."""
    if len(numbers) == 1:
        return numbers[0] == target
    for i, j in itertools.combinations(range(len(numbers)), 2):
        a, b = numbers[i], numbers[j]
        rest = [numbers[k] for k in range(len(numbers)) if k not in (i, j)]
        big, small = max(a, b), min(a, b)
        results = [a + b, a * b, big - small] + ([big // small] if small and big % small == 0 else [])
        if any(recursive_search(rest + [r], target) for r in results):
            return True
    return False


def baseline_puzzle(rng: random.Random) -> tuple[list[int], int]:
    k, target = rng.choice([3, 4]), rng.randint(10, 99)
    while True:
        numbers = [rng.randint(1, 99) for _ in range(k)]
        if recursive_search(numbers, target):
            return numbers, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-puzzles", type=int, default=200, help="sample size for the baseline")
    args = parser.parse_args()
    total = countdown.TINYZERO_TRAIN + countdown.TINYZERO_TEST

    rng = random.Random(0)
    start = time.perf_counter()
    for _ in range(args.baseline_puzzles):
        baseline_puzzle(rng)
    baseline_rate = args.baseline_puzzles / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "countdown"
        start = time.perf_counter()
        if countdown.main(["--out", str(out), "--workers", str(args.workers)]):
            raise SystemExit("data_tools.countdown failed (see above)")
        ours = time.perf_counter() - start
        size = sum(f.stat().st_size for f in out.iterdir()) / 1e6

    print(f"\nFull TinyZero-size Countdown set: {total:,} distinct puzzles, every one solver-verified")
    print(f"  ours ({args.workers} workers)      {ours:8.1f} s wall   {total / ours:9,.0f} puzzles/s   ({size:.1f} MB)")
    print(
        f"  naive baseline (1 process) {total / baseline_rate:8.0f} s wall   {baseline_rate:9,.0f} puzzles/s   "
        f"(extrapolated from {args.baseline_puzzles} puzzles)"
    )
    print(
        f"  ratio ours / baseline: {ours / (total / baseline_rate):.4f}x the time "
        f"({total / ours / baseline_rate:,.0f}x the throughput)"
    )


if __name__ == "__main__":
    main()
