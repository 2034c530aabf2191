"""Dataset folders: `train` and `test` files OpenRLHF loads as they are, and a manifest; reading them back.

Every output folder of the project (datasets, evaluations, curves, reports) is written by `atomic_folder`: into
a temporary folder beside OUT, moved into place at the end, so an interrupted run leaves OUT as it was; an
existing OUT is replaced only with --force. The same rows give byte-identical files.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from reward_funcs import cli

FORMATS = ("parquet", "jsonl")
VERSION = "1"  # bump when the same arguments would produce different data


def tool_parser(prog: str, doc: str, templates: dict) -> cli.Parser:
    """A data tool's parser (`cli.parser`: the docstring's first paragraph as description, the rest as epilog)
    with the options every data tool shares."""
    parser = cli.parser(prog, doc)
    add_common_arguments(parser, templates)
    return parser


def add_common_arguments(parser: argparse.ArgumentParser, templates: dict) -> None:
    """--out, --force, --format and --template, the same for every data tool."""
    from data_tools.templates import describe

    parser.add_argument(
        "--out", type=Path, required=True, help="folder to write train/test files and manifest.json into (required)"
    )
    cli.add_force(parser)
    parser.add_argument(
        "--format", choices=FORMATS, default="parquet", help="file format of the splits (default: parquet)"
    )
    parser.add_argument(
        "--template",
        choices=sorted(templates),
        default="base",
        help=f"prompt template (default: base). {describe(templates)}",
    )


def parse_range(text: str, what: str) -> tuple[int, int]:
    """ "LO:HI" (inclusive) as two integers."""
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise cli.UsageError(f"{what} must look like LO:HI with integers, e.g. 1:99; got {text!r}") from None
    if lo > hi:
        raise cli.UsageError(f"{what} {text} is empty: LO must not exceed HI")
    return lo, hi


def check_out(out: Path, force: bool) -> None:
    """Refuse --out before any work: an existing one without `force`, a file, or a missing parent folder."""
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"{out} exists and is not a folder: choose another --out")
    cli.refuse_overwrite(out, force=force)
    if not out.parent.exists():
        raise cli.UsageError(f"the parent folder of {out} does not exist: create it first")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_files(spec: str | list | None, base: Path) -> list[Path]:
    """The files of a dataset flag (`data.prompt_dataset`, `eval.dataset`): a comma-separated list (or a list),
    each relative to `base` unless absolute."""
    names = spec.split(",") if isinstance(spec, str) else list(spec or [])
    return [Path(n) if Path(n).is_absolute() else base / n for n in (str(n).strip() for n in names) if n]


def count_rows(path: Path) -> int:
    """The rows of a split file (parquet or jsonl), without reading them."""
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def read_rows(path: Path, limit: int | None = None) -> list[dict]:
    """The rows of a split file written here (parquet or jsonl), the first `limit` of them if given."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return table.slice(0, limit).to_pylist() if limit else table.to_pylist()
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if limit and len(rows) >= limit:
                break
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _write_split(rows: list[dict], schema: pa.Schema, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        table = pa.table({name: [row[name] for row in rows] for name in schema.names}, schema=schema)  # by column:
        pq.write_table(table, path, compression="zstd")  # faster than from_pylist
    else:
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_folder(out: Path, force: bool, parents: bool = False):
    """`with atomic_folder(out, force) as tmp:` write files into `tmp`; on success `tmp` becomes `out` (replacing
    it only with `force`), on any error nothing changes and `tmp` is removed. With `parents`, OUT's missing parent
    folders are created (analysis outputs nest under runs/ and reports/); without, a missing parent is refused."""
    cli.refuse_overwrite(out, force=force)
    if parents:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise cli.UsageError(f"cannot create {out.parent} ({e.strerror}): choose another --out") from None
    if not out.parent.is_dir():
        raise cli.UsageError(f"the parent folder of {out} does not exist: create it first")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
    except OSError as e:
        raise cli.UsageError(f"cannot write into {out.parent} ({e.strerror}): choose another --out") from None
    try:
        yield tmp
        if out.exists():
            if not force:  # appeared while we worked
                raise cli.UsageError(f"{out} appeared while writing: pass --force to replace it")
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_dataset(
    out: Path, splits: dict[str, list[dict]], schema: pa.Schema, fmt: str, force: bool, manifest: dict
) -> dict:
    """Write OUT/<split>.<fmt> for each split and OUT/manifest.json, atomically; returns the manifest."""
    with atomic_folder(out, force) as tmp:
        files = {}
        for name, rows in splits.items():
            path = tmp / f"{name}.{fmt}"
            _write_split(rows, schema, path, fmt)
            files[path.name] = {"rows": len(rows), "sha256": sha256(path)}
        manifest = {**manifest, "version": VERSION, "format": fmt, "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
