"""Countdown prompt datasets: puzzles solvable by construction, deduplicated, in files OpenRLHF loads as they are.

TinyZero's data, generated (327,680 train + 1,024 test; 3 or 4 numbers in 1..99, targets 10..99):
    python -m data_tools.countdown --out data/countdown
TinyZero's own rows, split as TinyZero split them (first 327,680 rows, next 1,024; needs the hub):
    python -m data_tools.countdown --out data/countdown-tinyzero --split tinyzero \
        --source hf:Jiayi-Pan/Countdown-Tasks-3to4
The same from a local copy (parquet or jsonl with `target` and `nums` columns), deduplicated:
    python -m data_tools.countdown --out data/countdown-hf --source countdown.parquet
A curriculum's data: one training file per difficulty band, disjoint, and one shared test set
(data_tools/countdown_bands.py):
    python -m data_tools.countdown --out data/countdown-bands --bands easy,medium,hard --train-size 32768

Generation follows Stream-of-Search, the closest public match to TinyZero's data: draw how many numbers and
a target, then draw numbers until an exhaustive search finds a way to reach the target using all of them
(intermediate values non-negative integers; `--rational` allows any rational intermediate, as the reward
does). Every row carries a reference solution, checked with the reward's own scorer, and `solutions`, how
many of the search's combinations reach the target (a difficulty rating: fewer is harder; left empty for six
numbers, whose 2.8 million combinations per puzzle are too many to count). A search that places no puzzle for
45 seconds (a target range the numbers cannot reach) gives up with one line. Imported rows are checked (integers
the exact 64-bit search handles, numbers of 0 or more) and their reference solutions scored like generated ones.

Splits never share a puzzle, with numbers compared in any order, and hold no duplicates: train is the first
--train-size distinct puzzles drawn, test the next --test-size. The same arguments and seed give
byte-identical files whatever --workers is; run again with them, the tool finds --out up to date and leaves it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from data_tools import countdown_bands, solver
from data_tools.countdown_source import read_source, solve_rows
from data_tools.output import already_made, check_out, parse_range, tool_parser, write_dataset
from data_tools.templates import COUNTDOWN
from reward_funcs import cli
from reward_funcs import countdown as reward
from reward_funcs.cli import UsageError

PROG = "python -m data_tools.countdown"

TINYZERO_TRAIN, TINYZERO_TEST = 327_680, 1_024
CHUNK = 2048  # puzzles per unit of work; results never depend on how chunks are spread over workers
MAX_ROUNDS = 10_000  # draws of numbers for one target before giving up on it
# Seconds a chunk may search without placing one more puzzle before giving up: six numbers and a target no
# draw reaches would otherwise take hours (MAX_ROUNDS depth-first searches per row). Generous: a chunk that
# makes progress at all places puzzles every few seconds.
SEARCH_BUDGET = 45.0


@dataclasses.dataclass(frozen=True)
class Config:
    counts: tuple[int, ...] = (3, 4)
    numbers: tuple[int, int] = (1, 99)
    targets: tuple[int, int] = (10, 99)
    rational: bool = False
    min_solutions: int = 1
    max_solutions: int | None = None
    seed: int = 0
    chunk: int = CHUNK  # puzzles per unit of work: part of the random stream's definition

    @property
    def banded(self) -> bool:
        return self.min_solutions > 1 or self.max_solutions is not None


@dataclasses.dataclass(frozen=True)
class Puzzle:
    numbers: tuple[int, ...]
    target: int
    solution: str | None
    solutions: int | None  # combinations of the exhaustive search that reach the target; None past 5 numbers

    @property
    def key(self) -> tuple:
        """Order-insensitive identity: the same numbers in any order with the same target are one puzzle."""
        return tuple(sorted(self.numbers)), self.target


# ---- generation -------------------------------------------------------------------------------------------

_config: Config | None = None
_table: solver.TripleTable | None = None


@functools.lru_cache(maxsize=2)
def _triple_table(lo: int, hi: int) -> solver.TripleTable:
    return solver.TripleTable(lo, hi)


def _setup(config: Config) -> None:
    global _config, _table
    _config = config
    use_table = not config.rational and not config.banded and set(config.counts) & {3, 4}
    _table = _triple_table(*config.numbers) if use_table and solver.TripleTable.fits(*config.numbers) else None


def _accept(candidates: np.ndarray, targets: np.ndarray, deadline: float) -> np.ndarray:
    k = candidates.shape[1]
    if _table is not None and k in (3, 4):
        return _table.solvable(candidates, targets)
    if k > solver.EXHAUSTIVE_MAX:  # one depth-first search per row, each bounded by the deadline
        return np.array(
            [
                solver.first_solution(c, t, _config.rational, deadline) is not None
                for c, t in zip(candidates.tolist(), targets.tolist(), strict=True)
            ],
            dtype=bool,
        )
    counts, _ = solver.search(candidates, targets, _config.rational)
    high = _config.max_solutions if _config.max_solutions is not None else counts.max(initial=0)
    return (counts >= _config.min_solutions) & (counts <= high)


def generate_chunk(index: int) -> list[Puzzle]:
    """`config.chunk` puzzles from the random stream `(seed, index)`: the same whatever process runs it."""
    config = _config
    rng = np.random.default_rng([config.seed, index])
    ks = rng.choice(np.array(config.counts), size=config.chunk)
    targets = rng.integers(config.targets[0], config.targets[1] + 1, size=config.chunk)
    puzzles: list[Puzzle | None] = [None] * config.chunk
    for k in config.counts:
        rows = np.flatnonzero(ks == k)
        chosen = np.empty((len(rows), k), dtype=np.int64)
        pending = np.arange(len(rows))
        deadline = time.monotonic() + SEARCH_BUDGET
        for _ in range(MAX_ROUNDS):
            if not len(pending):
                break
            candidates = rng.integers(config.numbers[0], config.numbers[1] + 1, size=(len(pending), k))
            try:
                if time.monotonic() > deadline:
                    raise TimeoutError
                ok = _accept(candidates, targets[rows[pending]], deadline)
            except TimeoutError:
                _give_up(config, k, targets[rows[pending]], f"in {SEARCH_BUDGET:g} s of search")
            if ok.any():
                deadline = time.monotonic() + SEARCH_BUDGET
            chosen[pending[ok]] = candidates[ok]
            pending = pending[~ok]
        else:
            _give_up(config, k, targets[rows[pending]], f"after {MAX_ROUNDS:,} draws")
        if k > solver.EXHAUSTIVE_MAX:  # too many combinations to count: the first solution only
            firsts = [
                solver.first_solution(c, t, config.rational)
                for c, t in zip(chosen.tolist(), targets[rows].tolist(), strict=True)
            ]
            counts = [None] * len(rows)
        else:
            counts, firsts = solver.search(chosen, targets[rows], config.rational)
            counts = counts.tolist()
        for row, numbers, target, count, first in zip(
            rows, chosen.tolist(), targets[rows].tolist(), counts, firsts, strict=True
        ):
            solution = solver.expression(numbers, int(first), config.rational)
            puzzles[row] = Puzzle(tuple(numbers), target, solution, count)
    for p in puzzles:
        _verify(p)
    return puzzles


def _give_up(config: Config, k: int, targets: np.ndarray, when: str) -> NoReturn:
    stuck = sorted(set(targets.tolist()))[:5]
    raise UsageError(
        f"no {k} numbers in {config.numbers[0]}:{config.numbers[1]} reached target(s) {stuck} {when}: widen "
        "--number-range, choose a --target-range these numbers reach, or relax the difficulty band"
    )


def _verify(p: Puzzle, where: str = "") -> None:
    """Our bug if a reference solution does not score 1.0: check it with the reward's own scorer."""
    label = {"task": "countdown", "target": p.target, "numbers": list(p.numbers)}
    found = reward.score(f"<answer>{p.solution}</answer>", label)
    if not found.correct:
        raise AssertionError(
            f"{where}reference solution {p.solution!r} for {list(p.numbers)} -> {p.target} scores {found.reward} "
            f"through reward_funcs.countdown ({found.reason}): a bug in data_tools.solver, nothing was written"
        )


def puzzle_space(config: Config) -> int:
    """How many distinct puzzles exist at most (multisets of numbers times targets; not all are solvable)."""
    width = config.numbers[1] - config.numbers[0] + 1
    return sum(math.comb(width + k - 1, k) for k in config.counts) * (config.targets[1] - config.targets[0] + 1)


def generate(config: Config, wanted: int, workers: int, progress: bool = True) -> list[Puzzle]:
    """The first `wanted` distinct puzzles of the stream of chunks 0, 1, 2, ..."""
    config = dataclasses.replace(config, chunk=min(CHUNK, wanted))  # small sets do not pay for a full chunk
    unique: dict[tuple, Puzzle] = {}
    bar = tqdm(total=wanted, desc="countdown puzzles", unit="puzzle", disable=not progress)
    wave = max(1, workers) * 2
    draws = 0
    _setup(config)  # before forking: workers inherit the configuration and the lookup table
    # One chunk's worth is quicker made here than handed to processes.
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 and wanted > CHUNK else None
    try:
        next_chunk = 0
        while len(unique) < wanted:
            indices = range(next_chunk, next_chunk + wave)
            next_chunk += wave
            chunks = pool.imap(generate_chunk, indices) if pool else map(generate_chunk, indices)
            for chunk in chunks:
                draws += len(chunk)
                before = len(unique)
                for puzzle in chunk:
                    if len(unique) < wanted:
                        unique.setdefault(puzzle.key, puzzle)
                bar.update(len(unique) - before)
            if draws > 20 * wanted + 10 * config.chunk:
                raise UsageError(
                    f"only {len(unique):,} distinct puzzles after {draws:,} draws: lower --train-size/--test-size "
                    "or widen the ranges"
                )
    finally:
        bar.close()
        if pool:
            pool.terminate()
    return list(unique.values())


# ---- import -------------------------------------------------------------------------------------------------


def split_puzzles(puzzles: list[Puzzle], train: int, test: int, rule: str) -> tuple[list[Puzzle], list[Puzzle]]:
    """`tinyzero`: rows [0, train) and [train, train + test) as they come. `dedup`: the same over distinct
    puzzles, so that no puzzle is in both splits or twice in one."""
    if rule == "dedup":
        first: dict[tuple, Puzzle] = {}
        for p in puzzles:
            first.setdefault(p.key, p)
        puzzles = list(first.values())  # each puzzle at its first occurrence, in order
    if len(puzzles) < train + test:
        kind = "distinct puzzles" if rule == "dedup" else "rows"
        raise UsageError(f"the source has {len(puzzles):,} {kind}; --train-size + --test-size is {train + test:,}")
    return puzzles[:train], puzzles[train : train + test]


def overlap(train: list[Puzzle], test: list[Puzzle]) -> int:
    seen = {p.key for p in train}
    return sum(p.key in seen for p in test)


# ---- rows and files -----------------------------------------------------------------------------------------

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def schema(chat: bool) -> pa.Schema:
    return pa.schema(
        [
            ("prompt", MESSAGES if chat else pa.string()),
            ("label", pa.string()),
            ("datasource", pa.string()),
            ("target", pa.int64()),
            ("numbers", pa.list_(pa.int64())),
            ("solution", pa.string()),
            ("solutions", pa.int64()),
        ]
    )


def row(p: Puzzle, template) -> dict:
    numbers = list(p.numbers)
    label = {"task": "countdown", "target": p.target, "numbers": numbers, "solution": p.solution}
    return {
        "prompt": template.render(numbers=numbers, target=p.target),
        "label": json.dumps(label),
        "datasource": "countdown",
        "target": p.target,
        "numbers": numbers,
        "solution": p.solution,
        "solutions": p.solutions,
    }


def build_parser() -> cli.Parser:
    parser = tool_parser(PROG, __doc__, COUNTDOWN)
    parser.add_argument(
        "--train-size",
        type=int,
        default=None,
        help=f"train rows (default: {TINYZERO_TRAIN:,}, TinyZero's); with --bands, per band (default: "
        f"{countdown_bands.BAND_SIZE:,})",
    )
    parser.add_argument(
        "--test-size", type=int, default=TINYZERO_TEST, help=f"test rows (default: {TINYZERO_TEST:,}, TinyZero's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed, 0 or more (default: 0)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes (default: up to 2); results do not depend on it",
    )
    gen = parser.add_argument_group("generation (default distribution: Stream-of-Search, as TinyZero's data)")
    gen.add_argument("--counts", default=None, help="how many numbers per puzzle, drawn uniformly (default: 3,4)")
    gen.add_argument("--number-range", default=None, help="LO:HI of the numbers (default: 1:99)")
    gen.add_argument("--target-range", default=None, help="LO:HI of the targets (default: 10:99)")
    gen.add_argument(
        "--rational",
        action="store_true",
        help="allow any rational intermediate value, as the reward does (default: non-negative integers only)",
    )
    gen.add_argument(
        "--min-solutions", type=int, default=None, help="keep puzzles with at least this many solutions (default: 1)"
    )
    gen.add_argument(
        "--max-solutions",
        type=int,
        default=None,
        help="keep puzzles with at most this many solutions; hard puzzles have few (default: no limit)",
    )
    gen.add_argument(
        "--bands",
        default=None,
        help="write one training file per difficulty band (train-<band>), disjoint, and one shared test set: "
        f"any of {', '.join(f'{n} ({countdown_bands.describe(n)})' for n in countdown_bands.BANDS)}, "
        "comma-separated (default: one train file)",
    )
    imp = parser.add_argument_group("import instead of generating")
    imp.add_argument(
        "--source",
        help="import puzzles from FILE (.parquet/.jsonl with target and nums columns) or hf:NAME (the hub's train "
        "split) instead of generating them (default: generate)",
    )
    imp.add_argument(
        "--split",
        choices=("dedup", "tinyzero"),
        default="dedup",
        help="dedup: distinct puzzles, disjoint splits (default); tinyzero: first rows, next rows",
    )
    return parser


def config_from(args) -> Config:
    generating = [
        flag
        for flag, given in (
            ("--counts", args.counts),
            ("--number-range", args.number_range),
            ("--target-range", args.target_range),
            ("--rational", args.rational),
            ("--min-solutions", args.min_solutions),
            ("--max-solutions", args.max_solutions),
            ("--bands", args.bands),
        )
        if given
    ]
    if args.source and generating:
        raise UsageError(f"{', '.join(generating)} only apply to generation, not to --source")
    if not args.source and args.split != "dedup":
        raise UsageError("--split applies to --source; generated splits are always deduplicated")
    try:
        counts = tuple(sorted({int(x) for x in (args.counts or "3,4").split(",")}))
    except ValueError:
        raise UsageError(f"--counts must be integers separated by commas, e.g. 3,4; got {args.counts!r}") from None
    if not counts or counts[0] < 2 or counts[-1] > 6:
        raise UsageError(f"--counts {args.counts}: each count must be 2 to 6")
    config = Config(
        counts=counts,
        numbers=parse_range(args.number_range or "1:99", "--number-range"),
        targets=parse_range(args.target_range or "10:99", "--target-range"),
        rational=args.rational,
        min_solutions=args.min_solutions if args.min_solutions is not None else 1,
        max_solutions=args.max_solutions,
        seed=args.seed,
    )
    if config.numbers[0] < 0:
        raise UsageError(
            f"--number-range {args.number_range}: numbers must be 0 or more (an answer writes its numbers as digits, "
            "so the reward can never match a negative one)"
        )
    if not config.rational and config.targets[0] < 0:
        raise UsageError("negative targets need --rational (integer arithmetic stays non-negative)")
    if config.min_solutions < 1 or (config.max_solutions is not None and config.max_solutions < config.min_solutions):
        raise UsageError("the difficulty band needs 1 <= --min-solutions <= --max-solutions")
    if args.bands and config.banded:
        raise UsageError("--bands makes its own difficulty bands: leave out --min-solutions and --max-solutions")
    if (config.banded or args.bands) and counts[-1] > solver.EXHAUSTIVE_MAX:
        raise UsageError(
            f"a difficulty band needs at most {solver.EXHAUSTIVE_MAX} numbers: solutions are not counted beyond"
        )
    try:
        solver.check_range(counts[-1], max(map(abs, config.numbers)), max(map(abs, config.targets)), config.rational)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return config


def import_puzzles(args, wanted: int) -> tuple[list[Puzzle], list[Puzzle], dict]:
    """--source's rows, solved and split; and what the manifest reports about TinyZero's own split of them."""
    rows = read_source(args.source)
    if len(rows) < wanted:
        raise UsageError(f"--source has {len(rows):,} rows; --train-size + --test-size is {wanted:,}")
    puzzles = [Puzzle(numbers, target, *found) for (numbers, target), found in zip(rows, solve_rows(rows), strict=True)]
    for i, p in enumerate(puzzles, 1):
        if p.solution is not None:
            _verify(p, f"--source {args.source}: row {i}: ")
    train, test = split_puzzles(puzzles, args.train_size, args.test_size, args.split)
    tz_train, tz_test = split_puzzles(puzzles, args.train_size, args.test_size, "tinyzero")
    report = {
        "source_rows": len(rows),
        "unsolvable_rows": sum(p.solution is None for p in puzzles),
        "tinyzero_rule_test_puzzles_also_in_train": overlap(tz_train, tz_test),
    }
    print(
        f"source: {len(rows):,} rows, {report['unsolvable_rows']:,} without a solution; under TinyZero's "
        f"split, {report['tinyzero_rule_test_puzzles_also_in_train']:,} of {len(tz_test):,} test puzzles "
        "are also in train"
    )
    return train, test, report


def generate_puzzles(args, config: Config, wanted: int) -> tuple[list[Puzzle], list[Puzzle]]:
    if wanted > puzzle_space(config):
        raise UsageError(
            f"--train-size + --test-size is {wanted:,} but these ranges hold at most {puzzle_space(config):,} "
            "distinct puzzles: lower the sizes or widen the ranges"
        )
    puzzles = generate(config, wanted, args.workers)
    return puzzles[: args.train_size], puzzles[args.train_size :]


def run(args) -> int:
    if args.train_size is None:
        args.train_size = countdown_bands.BAND_SIZE if args.bands else TINYZERO_TRAIN
    if args.train_size < 1 or args.test_size < 1:
        raise UsageError("--train-size and --test-size must be at least 1")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.seed < 0:
        raise UsageError(f"--seed must be 0 or more; got {args.seed}")
    config = config_from(args)
    arguments = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("out", "force", "skip_existing", "workers")
    }  # what does not change the data stays out
    if already_made(args.out, args, "data_tools.countdown", None if args.source else arguments):
        return 0
    check_out(args.out, args.force)
    template = COUNTDOWN[args.template]
    wanted = args.train_size + args.test_size
    report: dict = {}
    if args.bands:
        splits, report = countdown_bands.band_splits(args, config, generate)
    elif args.source:
        train, test, report = import_puzzles(args, wanted)
        splits = {"train": train, "test": test}
    else:
        train, test = generate_puzzles(args, config, wanted)
        splits = {"train": train, "test": test}
    manifest = write_dataset(
        args.out,
        {name: [row(p, template) for p in puzzles] for name, puzzles in splits.items()},
        schema(template.is_chat),
        args.format,
        args.force,
        {"tool": "data_tools.countdown", "arguments": arguments, "seed": args.seed, **report},
    )
    print(f"wrote {args.out}: " + ", ".join(f"{name} {f['rows']:,} rows" for name, f in manifest["files"].items()))
    return 0


main = cli.entry_point(PROG, build_parser)(run)  # main(argv) -> exit status: 0, or 2 with one line on bad input

if __name__ == "__main__":
    raise SystemExit(main())
