"""A run's rollout journal, read back: statistics per training step from every sample, a bounded set of texts,
and the same held-out prompts followed across every evaluation.

    from analysis.journal import load_run
    journal = load_run(Path("runs/countdown-qwen2.5-3b-ppo/20260101-120000"))
    journal.stats      # StepStats per (step, split, task), from every sample's numeric row
    journal.samples    # up to samples_per_step texts for each of at most sample_steps steps, per split
    journal.held_out   # prompt key -> that eval prompt's texts at every evaluation
    journal.warnings   # what could not be read or attributed, one line each

Each sample's training step comes from OpenRLHF's own TensorBoard log (analysis/attribution.py).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.attribution import attribute
from reward_funcs import cli
from reward_funcs.journal import CHUNK, EVAL, MAGIC, NO_TEXT, ROW_FIELDS

NUMPY_CODES = {"d": "<f8", "Q": "<u8", "f": "<f4", "I": "<u4", "i": "<i4", "B": "u1", "b": "i1"}
ROW_DTYPE = np.dtype([(name, NUMPY_CODES[code]) for name, code in ROW_FIELDS])
SPLITS = ("train", "eval")


@dataclass
class StepStats:
    step: int
    split: str  # "train" | "eval"
    task: str
    n: int
    reward: float
    accuracy: float
    format_rate: float  # share with a well-formed answer
    chars: float
    tokens: float | None
    truncated: float | None
    behaviours: dict[str, float]  # analysis.metrics.BEHAVIOURS names -> share of samples


@dataclass
class RunJournal:
    run_dir: Path
    stats: list[StepStats]
    samples: list[dict]  # text records with "step", a bounded number per step and split
    held_out: dict[str, list[dict]]  # eval prompt key -> its text records at every evaluation, by step
    warnings: list[str]
    attribution: str = ""  # how samples got their step
    rows: int = 0  # samples read


@dataclass
class _File:
    """One process's journal: its metadata, its rows, and where each flush's texts are."""

    rows_path: Path
    meta: dict
    reasons: list[str]
    rows: np.ndarray
    firsts: np.ndarray  # first row of each rows chunk
    texts_at: np.ndarray  # where that chunk's texts start in the .texts file (NO_TEXT: none)


def load_run(run_dir: Path, samples_per_step: int = 8, held_out_prompts: int = 32, sample_steps: int = 100):
    """The journal of `run_dir` (a runs/<recipe>/<timestamp> folder): stats from every sample; texts for at most
    `sample_steps` steps per split (evenly spaced, first and last included), `samples_per_step` each, spread over
    the step; the `held_out_prompts` eval prompts whose texts are kept at every evaluation."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise cli.UsageError(f"no such run folder: {run_dir}")
    warnings: list[str] = []
    files = read_journal(run_dir / "journal", warnings.append)
    if not files:
        warnings.append(f"{run_dir / 'journal'}: no journal (REWARD_JOURNAL_DIR was not set for this run)")
        return RunJournal(run_dir, [], [], {}, warnings)
    cols = _columns(files)
    if not len(cols["t"]):
        return RunJournal(run_dir, [], [], {}, [*warnings, f"{run_dir / 'journal'}: no samples yet"])
    steps, how = attribute(run_dir, cols, warnings.append)
    cols["step"] = steps
    stats, groups = step_stats(cols)
    texts = _Texts(files, cols)
    samples = _samples(cols, groups, texts, samples_per_step, sample_steps)
    held_out = _held_out(cols, texts, held_out_prompts)
    if texts.missing:
        warnings.append(f"{texts.missing} texts the rows promise could not be read (a .texts file cut short)")
    return RunJournal(run_dir, stats, samples, held_out, warnings, how, len(steps))


# ---- the journal files ---------------------------------------------------------------------------------------------


def chunks(data, name: str, warn):
    """(offset, kind, first, aux, count, payload) of each chunk of `data`, up to the first that is cut short or
    damaged, which is one warning."""
    at = 0
    while at < len(data):
        problem = None
        if at + CHUNK.size > len(data):
            problem = "cut short"
        else:
            magic, kind, first, aux, count, _, stored, crc = CHUNK.unpack_from(data, at)
            body = memoryview(data)[at + CHUNK.size : at + CHUNK.size + stored]
            if magic != MAGIC:
                problem = "damaged (no chunk starts there)"
            elif len(body) < stored:
                problem = "cut short"
            elif zlib.crc32(body) != crc:
                problem = "damaged (checksum)"
        if problem:  # a process killed mid-write, a full disk, a machine that lost power
            warn(f"{name}: {problem} at byte {at:,} of {len(data):,}; read up to there")
            return
        yield at, chr(kind), first, aux, count, zlib.decompress(body)
        at += CHUNK.size + stored


def read_journal(folder: Path, warn) -> list[_File]:
    files = []
    for path in sorted(folder.glob("*.rows")) if folder.is_dir() else []:
        if path.stat().st_size == 0:  # made, then killed before its first chunk
            continue
        meta, reasons, parts, firsts, texts_at, read = None, [], [], [], [], 0
        for _, kind, first, aux, count, payload in chunks(path.read_bytes(), path.name, warn):
            if kind == "M":
                update = json.loads(payload)
                meta = meta or update
                reasons = update.get("reasons") or reasons
            elif kind == "R" and meta is not None:
                if first != read or len(payload) != count * ROW_DTYPE.itemsize:
                    warn(f"{path.name}: rows out of order at row {first}; read up to there")
                    break
                parts.append(payload)
                firsts.append(first)
                texts_at.append(aux)
                read += count
        if meta is None or meta.get("format") != 1:
            warn(f"{path.name}: not a journal this version reads (no metadata, or another format); skipped")
            continue
        rows = np.frombuffer(b"".join(parts), dtype=ROW_DTYPE)
        files.append(_File(path, meta, reasons, rows, np.array(firsts, np.int64), np.array(texts_at, np.uint64)))
    return files


def _columns(files: list[_File]) -> dict:
    """Every file's rows as one set of columns, with task, reason and behaviour codes made common to all files."""
    tasks, reasons, names = [], [], []
    for f in files:
        for mine, theirs in ((tasks, f.meta["tasks"]), (reasons, f.reasons), (names, f.meta["behaviours"])):
            mine.extend(x for x in theirs if x not in mine)
    parts = []
    for index, f in enumerate(files):
        r = f.rows
        task_map = np.array([tasks.index(x) for x in f.meta["tasks"]] + [255] * (256 - len(f.meta["tasks"])))
        reason_map = np.array([reasons.index(x) for x in f.reasons] + [255] * (256 - len(f.reasons)))
        bits = np.zeros(len(r), np.uint8)
        for i, name in enumerate(f.meta["behaviours"]):
            bits |= (((r["behaviours"] >> i) & 1) << names.index(name)).astype(np.uint8)
        parts.append(
            {
                **{name: r[name] for name in ROW_DTYPE.names if name not in ("task", "reason", "behaviours")},
                "task": task_map[r["task"]],
                "reason": reason_map[r["reason"]],
                "behaviours": bits,
                "file": np.full(len(r), index, np.int32),
                "row": np.arange(len(r), dtype=np.int64),
            }
        )
    cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    cols["names"] = {"tasks": tasks + ["unknown"], "reasons": reasons, "behaviours": names}
    return cols


# ---- statistics ----------------------------------------------------------------------------------------------------


def step_stats(cols: dict) -> tuple[list[StepStats], tuple]:
    """StepStats per (step, split, task), in that order; and the group of every row, for picking samples."""
    names = cols["names"]
    ntasks = len(names["tasks"])
    task = np.minimum(cols["task"], ntasks - 1).astype(np.int64)
    base = cols["step"].min()
    key = ((cols["step"] - base) * 2 + cols["split"]) * ntasks + task
    groups, inverse, n = np.unique(key, return_inverse=True, return_counts=True)

    def total(values):
        return np.bincount(inverse, weights=values, minlength=len(groups))

    sums = {name: total(cols[name]) / n for name in ("reward", "correct", "formatted", "chars")}
    known_tokens, known_trunc = total(cols["tokens"] >= 0), total(cols["truncated"] >= 0)
    tokens = total(np.maximum(cols["tokens"], 0)) / np.maximum(known_tokens, 1)
    truncated = total(cols["truncated"] == 1) / np.maximum(known_trunc, 1)
    rates = {b: total((cols["behaviours"] >> i) & 1) / n for i, b in enumerate(names["behaviours"])}
    stats = []
    for g, k in enumerate(groups.tolist()):
        stats.append(
            StepStats(
                step=int(k // ntasks // 2 + base),
                split=SPLITS[k // ntasks % 2],
                task=names["tasks"][k % ntasks],
                n=int(n[g]),
                reward=float(sums["reward"][g]),
                accuracy=float(sums["correct"][g]),
                format_rate=float(sums["formatted"][g]),
                chars=float(sums["chars"][g]),
                tokens=float(tokens[g]) if known_tokens[g] else None,
                truncated=float(truncated[g]) if known_trunc[g] else None,
                behaviours={b: float(r[g]) for b, r in rates.items()},
            )
        )
    return stats, (groups, inverse, ntasks, base)


# ---- texts ---------------------------------------------------------------------------------------------------------


class _Texts:
    """Text records of chosen rows, each flush's chunk read and decompressed at most once."""

    def __init__(self, files: list[_File], cols: dict):
        self.files, self.cols, self.missing = files, cols, 0

    def records(self, rows: np.ndarray) -> list[dict]:
        """The text records of `rows` (indices into the columns), in that order; rows whose text is gone are left
        out and counted in `missing`."""
        wanted: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for i in rows.tolist():
            f = self.files[self.cols["file"][i]]
            row = int(self.cols["row"][i])
            c = int(np.searchsorted(f.firsts, row, "right")) - 1
            wanted.setdefault((int(self.cols["file"][i]), c), []).append((i, row - int(f.firsts[c])))
        found = {}
        for (index, c), items in sorted(wanted.items()):
            texts = self._chunk(self.files[index], c)
            for i, offset in items:
                if offset in texts:
                    found[i] = self._record(i, texts[offset])
        self.missing += len(rows) - len(found)
        return [found[i] for i in rows.tolist() if i in found]

    def _chunk(self, f: _File, c: int) -> dict[int, bytes]:
        at = int(f.texts_at[c])
        if at == NO_TEXT:
            return {}
        try:
            with open(f.rows_path.with_suffix(".texts"), "rb") as stream:
                stream.seek(at)
                head = stream.read(CHUNK.size)
                stored = CHUNK.unpack(head)[6] if len(head) == CHUNK.size else 0
                payload = next(chunks(head + stream.read(stored), f.rows_path.name, lambda _: None), None)
        except OSError:  # the .texts file is gone: its rows still count
            return {}
        if payload is None:
            return {}
        data = payload[5]
        (n,) = struct.unpack_from("<I", data)
        offsets = struct.unpack_from(f"<{n}I", data, 4)
        ends = struct.unpack_from(f"<{n + 1}I", data, 4 + 4 * n)
        start = 4 + 4 * n + 4 * (n + 1)
        return {o: data[start + ends[k] : start + ends[k + 1]] for k, o in enumerate(offsets)}

    def _record(self, i: int, text: bytes) -> dict:
        cols, names = self.cols, self.cols["names"]
        meta = self.files[cols["file"][i]].meta
        bits = int(cols["behaviours"][i])
        tokens, truncated = int(cols["tokens"][i]), int(cols["truncated"][i])
        return {
            **json.loads(text),
            "t": float(cols["t"][i]),
            "host": meta.get("host"),
            "pid": meta.get("pid"),
            "split": SPLITS[int(cols["split"][i])],
            "task": names["tasks"][min(int(cols["task"][i]), len(names["tasks"]) - 1)],
            "reward": float(cols["reward"][i]),
            "correct": bool(cols["correct"][i]),
            "reason": names["reasons"][int(cols["reason"][i])] if cols["reason"][i] < 255 else "unknown",
            "chars": int(cols["chars"][i]),
            "tokens": tokens if tokens >= 0 else None,
            "truncated": bool(truncated) if truncated >= 0 else None,
            "behaviours": [b for k, b in enumerate(names["behaviours"]) if bits >> k & 1],
            "step": int(cols["step"][i]),
            "key": f"{int(cols['key'][i]):016x}",
        }


def _spread(items: np.ndarray, k: int) -> np.ndarray:
    """At most `k` of `items`, evenly spaced, the first and the last included."""
    if len(items) <= k:
        return items
    return items[np.unique(np.linspace(0, len(items) - 1, k).round().astype(np.int64))]


def _samples(cols: dict, groups: tuple, texts: _Texts, per_step: int, max_steps: int) -> list[dict]:
    keys, inverse, ntasks, base = groups
    step_of_group, split_of_group = keys // ntasks // 2 + base, keys // ntasks % 2
    chosen = []
    for split in (0, 1):
        steps = np.unique(step_of_group[split_of_group == split])
        chosen.extend((split, s) for s in _spread(steps, max_steps).tolist())
    if not chosen or per_step <= 0:
        return []
    wanted = np.zeros(len(keys), bool)
    for split, s in chosen:
        wanted |= (step_of_group == s) & (split_of_group == split)
    rows = np.flatnonzero(wanted[inverse] & (cols["text"] == 1))
    picked = []
    by_step = cols["step"][rows] * 2 + cols["split"][rows]
    for value in np.unique(by_step):
        mine = rows[by_step == value]
        picked.append(_spread(mine[np.argsort(cols["t"][mine], kind="stable")], per_step))
    return texts.records(np.concatenate(picked)) if picked else []


def _held_out(cols: dict, texts: _Texts, prompts: int) -> dict[str, list[dict]]:
    """The `prompts` eval prompts with the smallest keys among those whose text is kept: the same prompts at every
    evaluation, whatever REWARD_JOURNAL_SAMPLE (it keeps the prompts whose key is below a threshold)."""
    kept = (cols["split"] == EVAL) & (cols["text"] == 1)
    chosen = np.unique(cols["key"][kept])[:prompts]
    if prompts <= 0 or not len(chosen):
        return {}
    rows = np.flatnonzero(kept & np.isin(cols["key"], chosen))
    rows = rows[np.lexsort((cols["t"][rows], cols["step"][rows]))]
    held: dict[str, list[dict]] = {f"{int(k):016x}": [] for k in chosen.tolist()}
    for record in texts.records(rows):
        held[record["key"]].append(record)
    return held


__all__ = ["RunJournal", "StepStats", "load_run"]
