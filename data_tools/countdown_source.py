"""Countdown puzzles from elsewhere: rows read from a parquet or jsonl file, or a hub dataset (`hf:NAME`), in
TinyZero's layout (`nums`, `target`), each solved by our own search so that it carries a reference solution.

    from data_tools.countdown_source import read_source, solve_rows
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_tools import solver
from reward_funcs.cli import UsageError

Row = tuple[tuple[int, ...], int]  # (numbers, target)
SOLVE_CHUNK = 2048  # rows searched at once, vectorised


def read_source(source: str) -> list[Row]:
    """(numbers, target) rows, in order, from a local parquet/jsonl file or `hf:NAME` (the hub's train split)."""
    if source.startswith("hf:"):
        import datasets

        table = datasets.load_dataset(source[3:], split="train").data.table
    else:
        path = Path(source)
        if not path.is_file():
            raise UsageError(f"--source {source}: no such file")
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif path.suffix in (".jsonl", ".json"):
            import pyarrow.json as pj

            table = pj.read_json(path)
        else:
            raise UsageError(f"--source {source}: expected a .parquet or .jsonl file, or hf:NAME")
    columns = set(table.column_names)
    numbers_column = "nums" if "nums" in columns else "numbers" if "numbers" in columns else None
    if "target" not in columns or numbers_column is None:
        raise UsageError(
            f"--source {source} has columns {sorted(columns)}; it needs 'target' and 'nums' "
            "(the Countdown-Tasks-3to4 layout)"
        )
    rows = list(
        zip(
            (tuple(n) for n in table.column(numbers_column).to_pylist()),
            table.column("target").to_pylist(),
            strict=True,
        )
    )
    for numbers, target in rows:
        if not isinstance(target, int) or not numbers or not all(isinstance(n, int) for n in numbers):
            raise UsageError(f"--source {source}: row {numbers}, {target} is not integers; fix the file")
    return rows


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
            if k > solver.EXHAUSTIVE_MAX or min(min(rows[i][0]) for i in part) < 0:
                for i in part:  # one at a time: depth-first, rational arithmetic if integers do not do
                    found = solver.solve(*rows[i]) if min(rows[i][0]) >= 0 else None
                    found = found or solver.solve(*rows[i], rational=True)
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
