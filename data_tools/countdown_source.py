"""Countdown puzzles from elsewhere: rows read from a parquet or jsonl file, or a hub dataset (`hf:NAME`), in
TinyZero's layout (`nums`, `target`), each solved by our own search so that it carries a reference solution.

    from data_tools.countdown_source import read_source, solve_rows
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_tools import solver
from reward_funcs.cli import UsageError

Row = tuple[tuple[int, ...], int]  # (numbers, target)
SOLVE_CHUNK = 2048  # rows searched at once, vectorised
MAX_NUMBERS = 6  # as --counts: beyond, one depth-first search can take minutes
ROW_HELP = (
    f"each row needs 'target', an integer, and 'nums', a list of 1 to {MAX_NUMBERS} integers of 0 or more "
    "(the Countdown-Tasks-3to4 layout)"
)
HUB_HELP = (
    "download it where the hub is reachable and pass the file (--source countdown.parquet), or set "
    "HF_HUB_OFFLINE=1 to use a copy already in the Hugging Face cache"
)


def read_source(source: str) -> list[Row]:
    """(numbers, target) rows, in order, from a local parquet/jsonl file or `hf:NAME` (the hub's train split),
    each checked: integers the solver handles exactly, and the reward can score."""
    if source.startswith("hf:"):
        rows = _table_rows(_read_hub(source[3:]), source)
    else:
        path = Path(source)
        if path.is_dir():
            raise UsageError(f"--source {source} is a folder: give a .parquet or .jsonl file, or hf:NAME")
        if not path.is_file():
            raise UsageError(f"--source {source}: no such file")
        if path.suffix == ".parquet":
            rows = _table_rows(_read_parquet(path, source), source)
        elif path.suffix in (".jsonl", ".json"):
            rows = _jsonl_rows(path, source)
        else:
            raise UsageError(f"--source {source}: expected a .parquet or .jsonl file, or hf:NAME")
    if not rows:
        raise UsageError(f"--source {source} holds no rows")
    return rows


def _read_parquet(path: Path, source: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise UsageError(f"--source {source} cannot be read as parquet ({_short(e)}); {ROW_HELP}") from None


def _read_hub(name: str):
    """The hub dataset's train split as an arrow table. Online, one quick request first: without a network the
    hub's own client retries for half a minute before it fails."""
    if not name:
        raise UsageError("--source hf: needs a dataset name, e.g. hf:Jiayi-Pan/Countdown-Tasks-3to4")
    import datasets
    import huggingface_hub

    if not datasets.config.HF_HUB_OFFLINE:
        try:
            huggingface_hub.HfApi().dataset_info(name, timeout=10)
        except huggingface_hub.errors.RepositoryNotFoundError:
            raise UsageError(
                f"--source hf:{name}: no such dataset on the hub (a private or gated one needs `hf auth login`)"
            ) from None
        except Exception as e:  # whatever the network did: one line naming it
            raise UsageError(f"--source hf:{name}: the hub did not answer ({_short(e)}): {HUB_HELP}") from None
    try:
        return datasets.load_dataset(name, split="train").data.table
    except Exception as e:  # offline without a cached copy, a broken cache, a dataset without a train split...
        raise UsageError(f"--source hf:{name}: cannot load it ({_short(e)}): {HUB_HELP}") from None


def _table_rows(table, source: str) -> list[Row]:
    columns = set(table.column_names)
    numbers_column = "nums" if "nums" in columns else "numbers" if "numbers" in columns else None
    if "target" not in columns or numbers_column is None:
        raise UsageError(
            f"--source {source} has columns {sorted(columns)}; it needs 'target' and 'nums' "
            "(the Countdown-Tasks-3to4 layout)"
        )
    numbers, targets = table.column(numbers_column).to_pylist(), table.column("target").to_pylist()
    pairs = zip(numbers, targets, strict=True)
    return [_row(n, t, f"--source {source}: row {i}") for i, (n, t) in enumerate(pairs, 1)]


def _jsonl_rows(path: Path, source: str) -> list[Row]:
    """Read with `json`, line by line: exact integers of any size (to be refused by name, not rounded to floats)
    and the line that is wrong."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"--source {source}: line {i}"
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    raise UsageError(f"{where} is not JSON: a .jsonl file holds one JSON object per line") from None
                if not isinstance(record, dict):
                    raise UsageError(f"{where} is not a JSON object: {ROW_HELP}")
                key = "nums" if "nums" in record else "numbers"
                if "target" not in record or key not in record:
                    raise UsageError(f"{where} has keys {_show(sorted(record))}: {ROW_HELP}")
                rows.append(_row(record[key], record["target"], where))
    except UnicodeDecodeError:
        raise UsageError(f"--source {source} is not UTF-8 text: a .jsonl file holds one JSON object per line") from None
    except OSError as e:
        raise UsageError(f"--source {source} cannot be read ({e.strerror or e})") from None
    return rows


def _row(numbers, target, where: str) -> Row:
    """One row, checked: what the solver searches exactly (no 64-bit overflow) and the reward can score."""
    if type(numbers) not in (list, tuple) or any(type(n) is not int for n in numbers) or type(target) is not int:
        raise UsageError(f"{where} has nums {_show(numbers)}, target {_show(target)}, not integers: {ROW_HELP}")
    if not 1 <= len(numbers) <= MAX_NUMBERS:
        raise UsageError(f"{where} has {len(numbers)} numbers: {ROW_HELP}")
    if min(numbers) < 0:
        raise UsageError(
            f"{where} has a negative number {min(numbers)}: an answer writes its numbers as digits, so the "
            "reward can never match it"
        )
    try:  # the rational search's bound, the larger one: integers are tried first, then rationals
        solver.check_range(len(numbers), max(numbers), target, rational=True)
    except ValueError:
        raise UsageError(
            f"{where} has nums {_show(numbers)}, target {_show(target)}: too large for the solver's exact 64-bit "
            "search; use smaller numbers"
        ) from None
    return tuple(numbers), target


def _show(value, width: int = 60) -> str:
    """`value` as written in a message, cut short: a row may hold anything."""
    return _cut(repr(value), width)


def _short(error: BaseException) -> str:
    return _cut(f"{type(error).__name__}: {' '.join(str(error).split())}", 200)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def solve_rows(rows: list[Row], progress: bool = True) -> list[tuple[str | None, int]]:
    """(a reference solution or None, how many of the search's combinations reach the target) for each row:
    integer arithmetic first, then rational."""
    solved: list[tuple[str | None, int]] = [(None, 0)] * len(rows)
    by_k: dict[int, list[int]] = {}
    for i, (numbers, _) in enumerate(rows):
        by_k.setdefault(len(numbers), []).append(i)
    bar = tqdm(total=len(rows), desc="solving", unit="puzzle", disable=not progress)
    for k, indices in sorted(by_k.items()):
        for start in range(0, len(indices), SOLVE_CHUNK):
            part = indices[start : start + SOLVE_CHUNK]
            if k > solver.EXHAUSTIVE_MAX:
                for i in part:  # one at a time: depth-first, rational arithmetic if integers do not do
                    found = solver.solve(*rows[i]) or solver.solve(*rows[i], rational=True)
                    solved[i] = (found.expression, found.solutions) if found else (None, 0)
                bar.update(len(part))
                continue
            numbers = np.array([rows[i][0] for i in part])
            targets = np.array([rows[i][1] for i in part])
            found = [None] * len(part)
            for rational in (False, True):
                counts, firsts = solver.search(numbers, targets, rational)
                for j, (c, f) in enumerate(zip(counts, firsts, strict=True)):
                    if found[j] is None and c:
                        found[j] = (solver.expression(rows[part[j]][0], int(f), rational), int(c))
            for j, i in enumerate(part):
                solved[i] = found[j] or (None, 0)
            bar.update(len(part))
    bar.close()
    return solved
