"""Countdown by difficulty band, for a curriculum: one training file per band, disjoint, and one shared test set.

    python -m data_tools.countdown --out data/countdown-bands --bands easy,medium,hard --train-size 32768

writes train-easy.parquet, train-medium.parquet, train-hard.parquet, test.parquet and manifest.json. The solver
rates every puzzle by how many of its combinations reach the target (`solutions`; fewer is harder), and a band is
a range of that rating, cut where `analysis.evaluate` cuts its difficulty bands (its 9-32 and 33+ together are
our easy). The puzzles come from the same
stream as any generated set (the same distribution, seed and knobs): the first --test-size distinct puzzles are
the test set, whatever their band, so every stage of a curriculum, and a plain run on the union of the bands, is
evaluated on the same puzzles from the whole distribution; each later puzzle goes to its band's training file
until that file holds --train-size rows, and is dropped once it is full. No puzzle is in two files. The manifest,
and a line printed per band, report each band's size and its share of the puzzles drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from reward_funcs.cli import UsageError

# name -> (fewest, most) solutions, inclusive; None: no limit. Edges as analysis.metrics.difficulty_band's.
BANDS = {"easy": (9, None), "medium": (3, 8), "hard": (1, 2)}
BAND_SIZE = 32_768  # training rows per band unless --train-size says otherwise
HEADROOM = 1.15  # draw this much more than the shares seen so far say is needed, so one more pass suffices
ATTEMPTS = 4  # draws, each at least twice the last, before a band is found too rare


def parse_bands(text: str) -> tuple[str, ...]:
    """`--bands easy,medium,hard` as band names, each known and given once (their order does not matter)."""
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in BANDS]
    if unknown or not names:
        raise UsageError(f"--bands {text!r}: each band must be one of {', '.join(BANDS)}, separated by commas")
    if len(set(names)) != len(names):
        raise UsageError(f"--bands {text!r} names a band twice: give each once")
    return names


def band_of(solutions: int | None) -> str | None:
    """The band a puzzle's rating falls in; None for an unrated puzzle (six numbers are never counted)."""
    if solutions is None:
        return None
    for name, (low, high) in BANDS.items():
        if solutions >= low and (high is None or solutions <= high):
            return name
    return None


def describe(name: str) -> str:
    low, high = BANDS[name]
    return f"{low}+ solutions" if high is None else f"{low}-{high} solutions"


def split(puzzles: list, test_size: int, train_size: int, bands: tuple[str, ...]) -> tuple[list, dict, dict]:
    """(test, {band: train puzzles}, {band or None: puzzles of it looked at}): the first `test_size` puzzles are
    the test set; each later one joins its band until the band holds `train_size`. Puzzles are looked at until
    every band is full (or `puzzles` ends); `seen` counts the ones looked at, those dropped from a full band
    included, so seen / looked-at is each band's share of the distribution."""
    test = puzzles[:test_size]
    trains: dict[str, list] = {name: [] for name in bands}
    seen = dict.fromkeys([*BANDS, None], 0)
    short = len(bands)
    for puzzle in puzzles[test_size:]:
        band = band_of(puzzle.solutions)
        seen[band] += 1
        if band in trains and len(trains[band]) < train_size:
            trains[band].append(puzzle)
            short -= len(trains[band]) == train_size
            if not short:
                break
    return test, trains, seen


def make(config, test_size: int, train_size: int, bands: tuple[str, ...], generate: Callable) -> tuple:
    """(test, trains, seen) of `split` over the generated stream, drawn long enough for every band.
    `generate(config, wanted)` gives the first `wanted` distinct puzzles of the stream, a prefix of any longer draw
    (for `wanted` of a chunk or more): drawing again with more gives the same puzzles first, so the files do not
    depend on how many were drawn before every band was full."""
    from data_tools.countdown import CHUNK

    wanted = max(CHUNK, test_size + 2 * len(bands) * train_size)
    for _ in range(ATTEMPTS):
        puzzles = generate(config, wanted)
        test, trains, seen = split(puzzles, test_size, train_size, bands)
        missing = [name for name, rows in trains.items() if len(rows) < train_size]
        if not missing:
            return test, trains, seen
        rarest = min(seen[name] for name in missing)
        if not rarest:  # none in a chunk or more: these ranges (almost) never make such a puzzle
            break
        needed = test_size + HEADROOM * train_size * (len(puzzles) - test_size) / rarest
        wanted = max(2 * wanted, math.ceil(needed))
    raise UsageError(
        f"the {', '.join(missing)} band(s) hold only {', '.join(str(seen[n]) for n in missing)} of "
        f"{len(puzzles):,} puzzles drawn: lower --train-size, widen --number-range/--target-range or --counts, "
        "or leave those bands out of --bands"
    )


def report(trains: dict, seen: dict) -> dict:
    """What the manifest says of the bands: each one's rating range, training rows, and share of the puzzles drawn
    after the test set (its share of the distribution)."""
    drawn = max(1, sum(seen.values()))  # every puzzle looked at after the test set, of any band
    return {
        name: {"solutions": describe(name), "train_rows": len(rows), "share": round(seen[name] / drawn, 4)}
        for name, rows in trains.items()
    }


def band_splits(args, config, generate: Callable) -> tuple[dict[str, list], dict]:
    """--bands: ({"train-<band>": puzzles, ..., "test": puzzles}, what the manifest reports of the bands), each
    band's size printed."""
    bands = parse_bands(args.bands)
    test, trains, seen = make(
        config, args.test_size, args.train_size, bands, lambda c, wanted: generate(c, wanted, args.workers)
    )
    found = report(trains, seen)
    for name, band in found.items():
        print(f"band {name} ({band['solutions']}): {band['train_rows']:,} train rows, {band['share']:.1%} of puzzles")
    return {**{f"train-{name}": trains[name] for name in bands}, "test": test}, {"bands": found}
