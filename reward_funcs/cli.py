"""Command-line plumbing shared by every entry point: data_tools, launch, the reward service and analysis.

    from reward_funcs import cli

    def build_parser() -> cli.Parser:
        parser = cli.parser("python -m analysis.curves", __doc__)
        parser.add_argument("runs", nargs="+", help="run folders")
        return parser

    @cli.entry_point("python -m analysis.curves")
    def main(args) -> int:          # args as parsed by build_parser(); raise cli.UsageError for bad input
        ...

    if __name__ == "__main__":
        raise SystemExit(main())

Bad input of any kind (an unknown flag, a bad value, a missing file) is one line on stderr,
`<program>: error: <what is wrong and how to fix it>`, and exit status 2; Ctrl-C is one line and status 130.
It lives in the lowest package that needs it (the reward service's), so that every other package can import it
without importing upward.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS_DIR = REPO / "runs"  # where the launcher writes runs and analysis looks for them, by default
USAGE_STATUS = 2
INTERRUPTED_STATUS = 130


class UsageError(Exception):
    """Bad arguments or input: the message says what is wrong and what to change. One line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are a UsageError (one line, no usage dump) instead of an exit of its own."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def parser(prog: str, doc: str) -> Parser:
    """A parser for module `prog`: the docstring's first paragraph as description, the rest (its commands) as
    epilog."""
    description, _, epilog = doc.strip().partition("\n\n")
    return Parser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_force(parser: argparse.ArgumentParser, what: str = "--out") -> None:
    parser.add_argument("--force", action="store_true", help=f"replace {what} if it exists (never replaced otherwise)")


def add_runs_dir(parser: argparse.ArgumentParser, help: str = "where runs are written") -> None:
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help=f"{help} (default: the repository's runs/)")


def refuse_overwrite(*paths: Path, force: bool) -> None:
    """A UsageError naming every path that exists, unless `force`."""
    taken = [str(p) for p in paths if p.exists()]
    if taken and not force:
        raise UsageError(f"{', '.join(taken)} already exists: pass --force to replace it, or choose another --out")


def report(prog: str, error: BaseException) -> int:
    """Print `error` as the one line every entry point uses; return the exit status for it."""
    if isinstance(error, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED_STATUS
    message = " ".join(str(error).split()) or type(error).__name__  # one line, whatever the message held
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return USAGE_STATUS


def entry_point(prog: str, build: Callable[[], argparse.ArgumentParser] | None = None):
    """Decorate `run(args) -> int | None`: `main(argv=None)` parses argv with `build()` (when given), runs it, and
    turns a UsageError (argparse's included) or Ctrl-C into one line on stderr and exit status 2 or 130."""

    def wrap(run):
        @functools.wraps(run)
        def main(argv: list[str] | None = None) -> int:
            try:
                args = build().parse_args(argv) if build else argv
                return run(args) or 0
            except (UsageError, KeyboardInterrupt) as e:
                return report(prog, e)

        return main

    return wrap
