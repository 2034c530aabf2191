"""Multiplication prompt datasets: TinyZero's working arithmetic task (`arth.py`), in files OpenRLHF loads.

TinyZero's data (3-digit operands, seed 1, 100,000 draws, 32,768 train + 4,096 test):
    python -m data_tools.multiply --out data/multiply

Each operand is drawn as arth.py draws it: with probability 1/3 it has one digit fewer (0..99 for 3 digits),
otherwise the full number of digits (0..999); the draws replay arth.py's own calls to Python's `random`, so
the same pairs come out in the same order. Duplicates are dropped keeping the first draw; train is the first
--train-size pairs and test the last --test-size, so the two never share a pair. (TinyZero deduplicated with
`set()`, whose order depends on the process's string-hash seed, so its exact split cannot be replayed; every
pair it could contain is here.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa

from data_tools.output import already_made, check_out, tool_parser, write_dataset
from data_tools.templates import MULTIPLY
from reward_funcs import cli
from reward_funcs.cli import UsageError

PROG = "python -m data_tools.multiply"

TINYZERO_DRAWS, TINYZERO_TRAIN, TINYZERO_TEST = 100_000, 32_768, 4_096


def draw_pairs(digits: int, draws: int, seed: int) -> list[tuple[int, int]]:
    """arth.py's draws, call for call: randint(1, 3) picks the size, then randint for the operand; the
    operator is drawn too (choice over ['*']), because that call also advances the generator."""
    rng = random.Random(seed)

    def operand() -> int:
        size = rng.randint(1, 3)
        top = 10 ** (digits - 1) if size == 1 else 10**digits
        return rng.randint(0, top - 1)

    pairs = []
    for _ in range(draws):
        a, b = operand(), operand()
        rng.choice(["*"])
        pairs.append((a, b))
    return pairs


def distinct(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return list(dict.fromkeys(pairs))


def row(a: int, b: int, template) -> dict:
    return {
        "prompt": template.render(num1=a, op="*", num2=b),
        "label": json.dumps({"task": "multiply", "numbers": [a, b], "product": a * b}),
        "datasource": "multiply",
        "num1": a,
        "num2": b,
        "product": a * b,
    }


SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("label", pa.string()),
        ("datasource", pa.string()),
        ("num1", pa.int64()),
        ("num2", pa.int64()),
        ("product", pa.int64()),
    ]
)


def build_parser() -> cli.Parser:
    parser = tool_parser(PROG, __doc__, MULTIPLY)
    parser.add_argument(
        "--digits", type=int, default=3, help="digits of the larger operands, 1 to 9 (default: 3, TinyZero's)"
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=TINYZERO_DRAWS,
        help=f"pairs drawn before deduplication (default: {TINYZERO_DRAWS:,}, TinyZero's)",
    )
    parser.add_argument(
        "--train-size", type=int, default=TINYZERO_TRAIN, help=f"train rows (default: {TINYZERO_TRAIN:,}, TinyZero's)"
    )
    parser.add_argument(
        "--test-size", type=int, default=TINYZERO_TEST, help=f"test rows (default: {TINYZERO_TEST:,}, TinyZero's)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed, 0 or more (default: 1, TinyZero's)")
    return parser


def check_sizes(args) -> None:
    """Refuse settings that cannot give --train-size + --test-size distinct pairs, before drawing any."""
    if not 1 <= args.digits <= 9:
        raise UsageError(f"--digits must be 1 to 9; got {args.digits}")
    if args.train_size < 1 or args.test_size < 1 or args.draws < 1:
        raise UsageError("--draws, --train-size and --test-size must be at least 1")
    if args.seed < 0:  # random.seed(-1) is random.seed(1): refused rather than silently the same data
        raise UsageError(f"--seed must be 0 or more; got {args.seed}")
    space = (10**args.digits) ** 2
    if args.train_size + args.test_size > min(space, args.draws):
        raise UsageError(
            f"--train-size + --test-size is {args.train_size + args.test_size:,} but at most "
            f"{min(space, args.draws):,} distinct pairs can come from {args.draws:,} draws of {args.digits}-digit "
            "operands: raise --draws or --digits, or lower the sizes"
        )


def run(args) -> int:
    check_sizes(args)
    kept = {k: v for k, v in vars(args).items() if k not in ("out", "force", "skip_existing")}  # what shapes the data
    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in kept.items()}
    if already_made(args.out, args, "data_tools.multiply", arguments):
        return 0
    check_out(args.out, args.force)
    pairs = distinct(draw_pairs(args.digits, args.draws, args.seed))
    if len(pairs) < args.train_size + args.test_size:
        raise UsageError(
            f"{args.draws:,} draws gave {len(pairs):,} distinct pairs, fewer than --train-size + --test-size "
            f"({args.train_size + args.test_size:,}): raise --draws"
        )
    train, test = pairs[: args.train_size], pairs[-args.test_size :]
    swapped = len({(b, a) for a, b in test} & set(train))
    template = MULTIPLY[args.template]
    manifest = write_dataset(
        args.out,
        {"train": [row(a, b, template) for a, b in train], "test": [row(a, b, template) for a, b in test]},
        SCHEMA,
        args.format,
        args.force,
        {
            "tool": "data_tools.multiply",
            "arguments": arguments,
            "seed": args.seed,
            "distinct_pairs": len(pairs),
            "test_pairs_whose_swap_is_in_train": swapped,
        },
    )
    print(
        f"wrote {args.out}: "
        + ", ".join(f"{name} {f['rows']:,} rows" for name, f in manifest["files"].items())
        + f"; {swapped} test pairs appear in train with the operands swapped"
    )
    return 0


main = cli.entry_point(PROG, build_parser)(run)  # main(argv) -> exit status: 0, or 2 with one line on bad input

if __name__ == "__main__":
    raise SystemExit(main())
