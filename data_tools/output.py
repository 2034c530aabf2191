"""Dataset folders: `train` and `test` files OpenRLHF loads as they are, and a manifest; reading them back.

Every output folder of the project (datasets, evaluations, curves, reports) is written by `atomic_folder`: into
a temporary folder beside OUT, moved into place at the end, so an interrupted run leaves OUT as it was; an
existing OUT is replaced only with --force, by one atomic exchange, so that a reader never finds OUT missing or
half-written; what a killed run left beside OUT is tidied by the next. The same rows give byte-identical files.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import socket
import sys
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
    """--out, --force, --skip-existing, --format and --template, the same for every data tool."""
    from data_tools.templates import describe

    parser.add_argument(
        "--out", type=Path, required=True, help="folder to write train/test files and manifest.json into (required)"
    )
    cli.add_force(parser)
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave an existing --out (another dataset) as it is and say so, instead of refusing; make data uses it",
    )
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
    """Refuse --out before any work: an existing one without `force`, a file, or a missing parent folder (but
    the repository's own data/, which is made when the dataset is written)."""
    out = _followed(out)
    recover(out)
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"{out} exists and is not a folder: choose another --out")
    cli.refuse_overwrite(out, force=force)
    if not out.parent.exists() and not _is_repo_data(out.parent):
        raise cli.UsageError(f"the parent folder of {out} does not exist: create it first")


def already_made(out: Path, args, tool: str, arguments: dict | None) -> bool:
    """Before any work: True, having said why, when there is nothing to do: OUT holds this very dataset (made by
    `tool` with `arguments`, its files matching its manifest), or it holds another one and --skip-existing was
    given. An existing OUT is refused otherwise (unless --force), naming how it differs. `arguments` None: the
    data does not follow from the arguments alone (an imported --source may have changed)."""
    if args.force and args.skip_existing:
        raise cli.UsageError("--force replaces an existing --out and --skip-existing keeps it: pass one of them")
    folder = _followed(out)
    recover(folder)
    if args.force or not folder.is_dir():
        return False  # written, or refused by check_out
    state, how = _compare(folder, tool, arguments)
    if state == "same":
        print(f"{out} is up to date: made with these arguments, and its files match its manifest.json", flush=True)
        return True
    if state == "other" and args.skip_existing:
        print(f"{out} exists ({how}): skipped; --force replaces it", flush=True)
        return True
    raise cli.UsageError(f"{out} already exists ({how}): pass --force to replace it, or choose another --out")


def _compare(folder: Path, tool: str, arguments: dict | None) -> tuple[str, str]:
    """("same", "") when `folder` holds the dataset `tool` makes from `arguments`; ("other", how) for another
    complete dataset; ("broken", what) for a folder that is not a complete one."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        for name, info in manifest["files"].items():
            if not (folder / name).is_file() or sha256(folder / name) != info["sha256"]:
                return "broken", f"but its {name} does not match its manifest.json"
    except FileNotFoundError:
        return "broken", "but holds no manifest.json: not a dataset these tools wrote"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "broken", "but its manifest.json is unreadable"
    if manifest.get("tool") != tool or manifest.get("version") != VERSION:
        return "other", f"made by {manifest.get('tool')} version {manifest.get('version')}"
    if arguments is None:
        return "other", "made from a --source, which may have changed since"
    wanted, had = json.loads(json.dumps(arguments)), manifest.get("arguments") or {}
    differ = [k for k in sorted(wanted.keys() | had.keys()) if wanted.get(k) != had.get(k)]
    if differ:
        flags = (f"--{k.replace('_', '-')} {had.get(k)} (this run: {wanted.get(k)})" for k in differ)
        return "other", "made with " + ", ".join(flags)
    return "same", ""


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
    folders are created (analysis outputs nest under runs/ and reports/); without, a missing parent is refused,
    except the repository's own data/ folder, created on a fresh clone.

    The replacement is one atomic exchange of the two folders (renameat2 RENAME_EXCHANGE on Linux, renamex_np
    RENAME_SWAP on macOS): a reader of OUT/<file> finds the old folder or the new one, never none and never a
    mix. A filesystem that cannot exchange (NFS) gets two renames, microseconds apart; a run killed between
    them leaves the old folder as .OUT.old-*, which the next run on OUT puts back (`recover`). OUT may be a
    symbolic link to a folder: the folder it points to is replaced and the link kept."""
    out = _followed(out)
    recover(out)
    cli.refuse_overwrite(out, force=force)
    if parents or (not out.parent.exists() and _is_repo_data(out.parent)):
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise cli.UsageError(f"cannot create {out.parent} ({e.strerror}): choose another --out") from None
    if not out.parent.is_dir():
        raise cli.UsageError(f"the parent folder of {out} does not exist: create it first")
    tmp = _sibling(out, "tmp")
    try:
        tmp.mkdir()
    except OSError as e:
        raise cli.UsageError(f"cannot write into {out.parent} ({e.strerror}): choose another --out") from None
    try:
        yield tmp
        _put_in_place(tmp, out, force)
    finally:
        _remove(tmp)  # after an exchange, the old folder


def recover(out: Path) -> None:
    """Tidy what killed runs left beside OUT: their .OUT.tmp-* folders are removed, and a .OUT.old-* folder (a
    run killed between the two renames of the fallback) is put back when OUT is missing, else removed. Only
    folders of this machine's processes that are gone are touched; another live run's are left alone."""
    try:
        names = os.listdir(out.parent)
    except OSError:  # no parent yet, or unreadable: nothing of ours there
        return
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)(?:-[0-9a-f]+)?(?:@(.+))?")
    stale: dict[str, list[Path]] = {"tmp": [], "old": []}
    for name in names:
        found = pattern.fullmatch(name)
        if found and found[3] in (None, socket.gethostname()) and not _alive(int(found[2])):
            stale[found[1]].append(out.parent / name)
    olds = sorted(stale["old"], key=_mtime, reverse=True)  # the newest first, should there be several
    if olds and not os.path.lexists(out):
        with contextlib.suppress(FileNotFoundError):  # another run put it back first
            os.rename(olds.pop(0), out)
            print(f"{out} put back: a run was killed while replacing it", flush=True)
    for path in stale["tmp"] + olds:
        _remove(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _put_in_place(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished `tmp` to `out`. With `force`, exchange them (`tmp` then holds the old folder)."""
    try:
        if _rename2(tmp, out, "noreplace"):
            return
        if not os.path.lexists(out):  # no atomic no-replace rename here: check, then rename
            os.rename(tmp, out)
            return
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    if not force:
        raise cli.UsageError(f"{out} appeared while writing: pass --force to replace it")
    if _rename2(tmp, out, "exchange"):
        return
    old = _sibling(out, "old")  # the fallback: `recover` repairs a kill between these two renames
    os.rename(out, old)
    os.rename(tmp, out)
    os.rename(old, tmp)


# renameat2's flags (linux/fs.h) and renamex_np's (macOS sys/stdio.h)
_LINUX_FLAGS = {"noreplace": 1, "exchange": 2}
_MACOS_FLAGS = {"noreplace": 4, "exchange": 2}
_RENAMEAT2_SYSCALL = {"x86_64": 316, "aarch64": 276, "ppc64le": 357}  # for a libc older than glibc 2.28
_AT_FDCWD = -100


@functools.lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _rename2(src: Path, dst: Path, how: str) -> bool:
    """rename(src, dst) that refuses an existing `dst` ("noreplace") or swaps the two ("exchange"), in one
    system call. False where this system or filesystem has no such call, to fall back on plain renames."""
    a, b = os.fsencode(src), os.fsencode(dst)
    libc = _libc()
    if sys.platform.startswith("linux"):
        if hasattr(libc, "renameat2"):
            status = libc.renameat2(_AT_FDCWD, a, _AT_FDCWD, b, _LINUX_FLAGS[how])
        elif platform.machine() in _RENAMEAT2_SYSCALL:  # syscall() is variadic: every argument a long
            number, flags = _RENAMEAT2_SYSCALL[platform.machine()], _LINUX_FLAGS[how]
            at, long = ctypes.c_long(_AT_FDCWD), ctypes.c_long
            status = libc.syscall(long(number), at, ctypes.c_char_p(a), at, ctypes.c_char_p(b), long(flags))
        else:
            return False
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        status = libc.renamex_np(a, b, _MACOS_FLAGS[how])
    else:
        return False
    if status == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # not on this kernel/filesystem
        return False
    raise OSError(code, os.strerror(code), str(src), None, str(dst))


def _sibling(out: Path, kind: str) -> Path:
    """A name beside OUT for this process: `recover` reads the pid and host back to tell a killed run's."""
    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{secrets.token_hex(3)}@{socket.gethostname()}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except PermissionError:  # another user's process
        return True
    except (ProcessLookupError, OverflowError):  # gone; or a number no process can have
        return False
    return True


def _remove(path: Path) -> None:
    """Remove a folder, a file or a link (never what a link points to), if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _followed(out: Path) -> Path:
    """OUT, or the folder it links to: replacing a link's folder keeps the link, as the user laid it out."""
    return Path(os.path.realpath(out)) if out.is_symlink() and out.is_dir() else out


def _is_repo_data(folder: Path) -> bool:
    """Whether `folder` is the repository's own data/ (absent on a fresh clone: it is git-ignored)."""
    return folder.resolve() == (cli.REPO / "data").resolve()


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
