"""Whether an analysis command can write where it is told to: checked before any work, so that an output that
cannot be written is one line naming it, never a traceback at the end of an evaluation nor a model blamed for it.

    from analysis import writable
    writable.check(args.out, args.force)                     # a folder that --out names
    writable.check(run / "smoke.md", force, kind="file", fix="make the run folder writable")
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from reward_funcs import cli
from reward_funcs.cli import UsageError


def check(out: Path, force: bool, kind: str = "folder", fix: str = "choose another --out") -> None:
    """A UsageError naming the path, ending with `fix`, unless `out` can be written: absent, or with `force` an
    existing `kind` ("folder" or "file"; never one of the other kind, which --force would destroy), in a folder
    that exists or can be made, and that takes a new entry. That last one is tried, not read off the permissions:
    root passes every permission check, yet cannot create anything under /proc or on a read-only mount."""
    cli.refuse_overwrite(out, force=force)
    if out.exists() and not (out.is_dir() if kind == "folder" else out.is_file()):
        raise UsageError(f"{out} exists and is not a {kind}: {fix}")
    existing = next(folder for folder in Path(os.path.abspath(out)).parents if folder.exists())
    if not existing.is_dir():
        raise UsageError(f"cannot create {out}: {existing} is a file, not a folder: {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=existing))
    except OSError as e:
        raise UsageError(f"cannot write into {existing} ({e.strerror or e}): {fix}") from None
