"""What analysis reads of a run folder's own files, in one place: its resolved recipe (`recipe.yaml`) and the
records of OpenRLHF's TensorBoard event files.

An event file is a sequence of records: an 8-byte length, its checksum, the Event, its checksum. TensorBoard's
own reader stops silently at the first record that is cut short or fails its checksum; `events` says why it
stopped, so that a truncated file (a run still writing, or killed) or a corrupt one is one warning naming it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import yaml
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c


def saved_recipe(folder: Path) -> dict:
    """The resolved recipe a run (or stage) folder keeps, {} when there is none to read."""
    try:
        saved = yaml.safe_load((folder / "recipe.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return saved if isinstance(saved, dict) else {}


def flag(recipe: dict, dotted: str, default=None):
    """A recipe's value at a dotted OpenRLHF flag (`rollout.batch_size`), `default` when it has none."""
    node = recipe
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return default if node is None else node


def events(path: Path, problems: list[str], verify: bool = True) -> Iterator[event_pb2.Event]:
    """The Events of one event file, in order, up to the first record that cannot be read; why the reading
    stopped early is appended to `problems`. `verify` False skips the checksums (pure Python, a few µs a record),
    for a reader that needs only the records' steps and wall times."""
    try:
        data = path.read_bytes()
    except OSError as e:
        problems.append(f"cannot be read ({e.strerror or e})")
        return
    if not data:
        problems.append("empty (0 bytes: the run wrote nothing, or was killed before it did)")
        return
    at = 0
    while at < len(data):
        if at + 12 > len(data):
            problems.append(f"truncated: its last record is cut short at byte {len(data):,}")
            return
        length, length_checksum = struct.unpack_from("<QI", data, at)
        if verify and masked_crc32c(data[at : at + 8]) != length_checksum:
            problems.append(damaged(at, len(data), "a record's length fails its checksum"))
            return
        end = at + 12 + length
        if end + 4 > len(data):
            problems.append(f"truncated: its last record is cut short at byte {len(data):,}")
            return
        body = data[at + 12 : end]
        if verify and masked_crc32c(body) != struct.unpack_from("<I", data, end)[0]:
            problems.append(damaged(at, len(data), "an event fails its checksum"))
            return
        try:
            event = event_pb2.Event.FromString(body)
        except DecodeError:
            problems.append(damaged(at, len(data), "a record that is no event"))
            return
        yield event
        at = end + 4


def damaged(at: int, size: int, what: str) -> str:
    if at == 0:
        return f"not a TensorBoard event file, or corrupt from its first byte ({what})"
    return f"corrupt at byte {at:,} of {size:,} ({what}; nothing after it is read)"
