"""The rollout journal: every sample the reward scores during a run, kept as the training produced it.

    from reward_funcs import journal
    JOURNAL = journal.Journal.from_env()        # None unless REWARD_JOURNAL_DIR is set
    JOURNAL.record(query, prompt, label, score) # per scored sample: an append, nothing else
    JOURNAL.record_batch(queries, prompts, labels, scores)

The environment turns it on (the launcher sets it for every run it starts, `analysis.journal` reads it):
    REWARD_JOURNAL_DIR        the folder (a run's `journal/`); unset or empty: no journal
    REWARD_JOURNAL_SAMPLE     share of the prompts whose samples keep their TEXT, 0 to 1 (default 1); the numeric
                              row of every sample is always written
    REWARD_JOURNAL_EVAL       the eval dataset files, comma-separated (eval.dataset): a sample whose label is one
                              of theirs is an eval sample (labels pass through OpenRLHF unchanged, prompts do not)
    REWARD_JOURNAL_LABEL_KEY  the label column of those files (default `label`; the launcher passes data.label_key)

Each process writes its own pair of append-only files, `<host>-<pid>-<start>-<n>.rows` and `.texts`: no lock is
shared between processes or nodes. `record` appends to an in-memory queue; a background thread empties it at
least every FLUSH_SECONDS and at exit: it cuts the response, tests the behaviour phrases, hashes the prompt,
compresses, and writes each flush as one chunk per file with one write() each. A killed process leaves its files
readable up to its last flush; a chunk cut short (a full disk, a machine that lost power) ends the reading of
that file, which `analysis.journal` reports as a warning.

A chunk is a CHUNK header (magic, kind, first row, aux, rows covered, raw and stored length, CRC-32 of the stored
bytes) and its zlib-compressed payload. Kinds, in the .rows file: `M` JSON metadata (host, pid, tasks, behaviour
names, and the reason names, written again whenever a new reason appears), `R` one ROW per sample, aux = where
the flush's `T` chunk starts in the .texts file (NO_TEXT when none). In the .texts file: `T` the kept samples'
texts, a JSON object each ({prompt, label, response, answer}) behind an index (count, row offsets, byte offsets)
so a reader parses only those it wants.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import socket
import struct
import threading
import time
import weakref
import zlib
from collections import deque
from pathlib import Path

from reward_funcs import TASKS
from reward_funcs.journal_fields import (
    Behaviours,
    behaviour_patterns,
    eval_labels,
    label_task,
    label_text,
    prompt_key,
    split_end,
)
from reward_funcs.scoring import cut_response

logger = logging.getLogger("reward_funcs")

DIR_ENV, SAMPLE_ENV = "REWARD_JOURNAL_DIR", "REWARD_JOURNAL_SAMPLE"
EVAL_ENV, LABEL_KEY_ENV = "REWARD_JOURNAL_EVAL", "REWARD_JOURNAL_LABEL_KEY"
FORMAT = 1
FLUSH_SECONDS = 2.0
MAX_CHUNK_ROWS = 8192  # a flush larger than this (a batch, a stalled disk) is written as several chunks
MAGIC = b"RJNL"
CHUNK = struct.Struct("<4sB3xQQIIII")  # magic, kind, first row, aux, rows covered, raw bytes, stored bytes, crc32
NO_TEXT = (1 << 64) - 1
TRAIN, EVAL = 0, 1
UNKNOWN = -1  # tokens and truncation, when the text does not tell
NO_TASK = 255
# One row per sample: (name, struct code); analysis.journal reads the same layout with numpy.
ROW_FIELDS = (
    ("t", "d"),  # time.time() when the reward scored it
    ("key", "Q"),  # the prompt's 64-bit BLAKE2b: the same prompt at every evaluation, and the text sampling
    ("reward", "d"),
    ("chars", "I"),  # the response's length in characters, its end-of-sequence token left out
    ("tokens", "i"),  # UNKNOWN: the reward gets text only
    ("split", "B"),  # TRAIN or EVAL
    ("task", "B"),  # index into the metadata's tasks
    ("reason", "B"),  # index into the metadata's reasons
    ("correct", "B"),
    ("formatted", "B"),  # an answer was found
    ("truncated", "b"),  # 1 when the response stops without an end-of-sequence token (vLLM's "length"), UNKNOWN
    ("behaviours", "B"),  # bit i: the metadata's behaviours[i] phrase family is present
    ("text", "B"),  # 1 when the .texts file holds this sample's text
)
ROW = struct.Struct("<" + "".join(code for _, code in ROW_FIELDS))
TASK_NAMES = tuple(TASKS)

_LIVE: weakref.WeakSet = weakref.WeakSet()
_FILES = itertools.count()
_JSON = json.JSONEncoder(ensure_ascii=False)


class JournalError(ValueError):
    """A journal setting that cannot work: the message names the variable and the fix."""


# ---- the writer ---------------------------------------------------------------------------------------------------


class Journal:
    """One process's journal. `record` and `record_batch` are safe from any number of threads."""

    def __init__(
        self,
        folder: str | Path,
        *,
        sample: float = 1.0,
        eval_set: frozenset[str] = frozenset(),
        source: str = "reward_file",
        interval: float = FLUSH_SECONDS,
        patterns: dict | None = None,
        level: int = 6,
    ):
        if not 0.0 <= sample <= 1.0:
            raise JournalError(f"{SAMPLE_ENV} must be between 0 and 1, got {sample}: 1 keeps every text, 0 none")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise JournalError(f"{DIR_ENV}: cannot create {folder} ({e.strerror}): give a writable folder") from None
        self.sample, self.source, self.interval, self.level = sample, source, interval, level
        self._keep_below = int(sample * (1 << 64))  # a prompt's text is kept when its key is below this
        self._eval = eval_set
        self._behaviours = Behaviours(behaviour_patterns() if patterns is None else patterns)
        self._closed = False
        self._fresh()
        _LIVE.add(self)

    @classmethod
    def from_env(cls, environ=None, source: str = "reward_file") -> Journal | None:
        """The journal the environment asks for, or None (REWARD_JOURNAL_DIR unset or empty)."""
        env = os.environ if environ is None else environ
        folder = env.get(DIR_ENV, "").strip()
        if not folder:
            return None
        raw = env.get(SAMPLE_ENV, "").strip() or "1"
        try:
            sample = float(raw)
        except ValueError:
            raise JournalError(f"{SAMPLE_ENV}={raw!r} is not a number: give a share between 0 and 1") from None
        files = [f.strip() for f in env.get(EVAL_ENV, "").split(",") if f.strip()]
        labels = eval_labels(files, env.get(LABEL_KEY_ENV, "").strip() or "label")
        return cls(folder, sample=sample, eval_set=labels, source=source)

    def _fresh(self) -> None:
        """No thread, no files, an empty queue: at creation, and in a forked child (which must not share files)."""
        self._queue: deque = deque(maxlen=0 if self._closed else None)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._fds: tuple[int, int] | None = None
        self._rows = self._text_pos = 0
        self._reasons: dict[str, int] = {}
        self._error = ""
        self.lost = 0  # samples whose chunk could not be written

    def record(self, query: str, prompt: str, label, score, t: float | None = None) -> None:
        """Keep one scored sample (`score`: a reward_funcs Score). The hot path: one append."""
        self._queue.append((t or time.time(), query, prompt, label, score))
        if self._thread is None:
            self._start()

    def record_batch(self, queries, prompts, labels, scores, times=None) -> None:
        now = time.time()
        times = times if times is not None else [now] * len(queries)
        self._queue.extend(zip(times, queries, prompts, labels, scores, strict=True))
        if self._thread is None:
            self._start()
        elif len(self._queue) >= MAX_CHUNK_ROWS:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="reward-journal", daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write what has been recorded so far (the background thread does this every `interval` seconds)."""
        with self._lock:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_CHUNK_ROWS))]
                try:
                    self._write(batch)
                except Exception as e:  # the journal must never stop the training
                    self.lost += len(batch)
                    if str(e) != self._error:  # once per kind of failure, not every two seconds
                        logger.error("reward_funcs: journal: %d samples lost (%s); still trying", len(batch), e)
                        self._error = str(e)
                    self._reopen()

    def close(self) -> None:
        """Flush, sync and close the files; records after this are ignored."""
        self._closed = True
        self._wake.set()
        self.flush()
        with self._lock:
            self._queue = deque(maxlen=0)  # appends after close are dropped, not kept in memory
            for fd in self._fds or ():
                with contextlib.suppress(OSError):
                    os.fsync(fd)  # a machine that loses power keeps what was closed
                os.close(fd)
            self._fds = None

    # ---- encoding and writing ------------------------------------------------------------------------------------

    def _write(self, batch: list) -> None:
        if self._fds is None:
            self._open()
        rows, texts, first, before = [], [], self._rows, len(self._reasons)
        for offset, item in enumerate(batch):
            row, text = self._encode(*item)
            rows.append(row)
            if text is not None:
                texts.append((offset, text))
        aux = NO_TEXT
        if texts:
            aux = self._text_pos
            self._text_pos += self._append(self._fds[1], b"T", first, 0, len(batch), _text_payload(texts))
        if len(self._reasons) > before:
            self._append(self._fds[0], b"M", first, 0, 0, json.dumps({"reasons": list(self._reasons)}).encode())
        self._append(self._fds[0], b"R", first, aux, len(batch), b"".join(rows))
        self._rows += len(batch)

    def _encode(self, t, query, prompt, label, score) -> tuple[bytes, bytes | None]:
        label = label_text(label)
        task = label_task(label)
        markers = TASKS[task].RESPONSE_MARKERS if task else ("Assistant:",)
        response = cut_response(query, prompt, markers)
        if response is None:
            chars, truncated, flags = 0, UNKNOWN, 0
        else:
            body, truncated = split_end(response)
            chars, flags = len(body), self._behaviours.mask(body)
        key, split = prompt_key(prompt), EVAL if label in self._eval else TRAIN
        reason = self._reasons.setdefault(score.reason, len(self._reasons))
        keep = key < self._keep_below
        task_index = TASK_NAMES.index(task) if task else NO_TASK
        row = ROW.pack(t, key, score.reward, chars, UNKNOWN, split, task_index, reason, score.correct, score.formatted,
                       truncated, flags, keep)  # fmt: skip
        if not keep:
            return row, None
        record = {"prompt": prompt, "label": label, "response": response, "answer": score.answer}
        return row, _JSON.encode(record).encode("utf-8", "replace")

    def _open(self) -> None:
        host, pid, stamp = socket.gethostname(), os.getpid(), time.strftime("%Y%m%d-%H%M%S")
        base = self.folder / f"{host}-{pid}-{stamp}-{next(_FILES)}"  # unique, and in time order per process
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        self._fds = (os.open(f"{base}.rows", flags, 0o644), os.open(f"{base}.texts", flags, 0o644))
        self._rows = self._text_pos = 0
        self._reasons = {}  # reason codes are per file
        meta = {"format": FORMAT, "host": host, "pid": pid, "started": time.time(), "source": self.source}
        meta |= {"sample": self.sample, "eval_labels": len(self._eval), "tasks": list(TASK_NAMES)}
        meta |= {"behaviours": self._behaviours.names, "reasons": []}
        self._append(self._fds[0], b"M", 0, 0, 0, json.dumps(meta).encode())

    def _reopen(self) -> None:
        """After a failed write the files may end in a torn chunk: later chunks go to a new pair of files."""
        for fd in self._fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = None

    def _append(self, fd: int, kind: bytes, first: int, aux: int, count: int, payload: bytes) -> int:
        stored = zlib.compress(payload, self.level)  # zlib lets go of the GIL: the reward's threads run on
        data = CHUNK.pack(MAGIC, kind[0], first, aux, count, len(payload), len(stored), zlib.crc32(stored)) + stored
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return len(data)


def _text_payload(texts: list[tuple[int, bytes]]) -> bytes:
    """count, the samples' row offsets in the chunk, count + 1 byte offsets, then the JSON objects."""
    ends, at = [0], 0
    for _, text in texts:
        at += len(text)
        ends.append(at)
    n = len(texts)
    index = struct.pack(f"<I{n}I{n + 1}I", n, *(offset for offset, _ in texts), *ends)
    return index + b"".join(text for _, text in texts)


def _after_fork() -> None:
    for journal in list(_LIVE):
        journal._fresh()


os.register_at_fork(after_in_child=_after_fork)
