"""A request to the reward service and its answer: the body parsed and checked, every sample scored with the
reward file's own `score_sample`, the answer and what /metrics counts of it.

The same code scores a small body on the event loop, a sample per step so that the loop can take turns
(`score_on_loop`), and a large one in a separate process (`ScoringProcess`), so that a huge request never holds up
the small ones. Bad input is a `BadRequest` turned into a 4xx answer; our own bug is a 500 with its traceback for
the log, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Generator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import orjson

from reward_funcs import LabelError, journal, score_sample
from reward_funcs.task_logs import task_logs, wanted

logger = logging.getLogger("reward_funcs.server")
SLICE_SECONDS = 0.001  # scoring on the event loop gives it back this often
# This process's rollout journal (REWARD_JOURNAL_DIR), or None: each worker and the scoring process keep their own.
try:
    JOURNAL, JOURNAL_ERROR = journal.Journal.from_env(source="service"), None
except journal.JournalError as e:  # a bad setting: the command says so in one line (server.run)
    JOURNAL, JOURNAL_ERROR = None, str(e)
TASK_LOGS = wanted()  # per-task extra_logs, for runs that mix tasks (REWARD_TASK_LOGS)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


ERROR_KINDS = {400: "malformed", 403: "token", 413: "too_large", 422: "label", 500: "internal"}


class Answer(NamedTuple):
    """A request's answer and what /metrics counts of it; plain data, so the scoring process can send it back."""

    status: int
    body: bytes
    error: str | None = None  # the kind of refusal
    samples: int = 0
    reward_sum: float = 0.0
    correct: int = 0
    trace: str | None = None  # our bug's traceback, logged by the server

    @classmethod
    def refused(cls, status: int, message: str) -> Answer:
        return cls(status, orjson.dumps({"error": message}), ERROR_KINDS.get(status, "other"))


def _strings(payload: dict, key: str) -> list:
    value = payload.get(key)
    if value is None:
        raise BadRequest(400, f'missing "{key}": the body is {{"query": [...], "prompts": [...], "labels": [...]}}')
    if not isinstance(value, list):
        raise BadRequest(400, f'"{key}" must be a list, got {type(value).__name__}')
    return value


def parse(body: bytes) -> tuple[list, list, list]:
    try:
        payload = orjson.loads(body)  # nesting beyond 1,024 levels is a JSONDecodeError, never a RecursionError
    except orjson.JSONDecodeError as e:
        raise BadRequest(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(payload, dict):
        raise BadRequest(400, f"the body must be a JSON object, got {type(payload).__name__}")
    queries, prompts, labels = (_strings(payload, k) for k in ("query", "prompts", "labels"))
    if not len(queries) == len(prompts) == len(labels):
        raise BadRequest(
            400,
            f'"query", "prompts" and "labels" must have equal lengths, got {len(queries)}, '
            f"{len(prompts)} and {len(labels)}",
        )
    for i, (q, p) in enumerate(zip(queries, prompts, strict=True)):
        if not isinstance(q, str) or not (p is None or isinstance(p, str)):
            raise BadRequest(400, f'"query"[{i}] and "prompts"[{i}] must be strings')
    return queries, prompts, labels


def _score_one(i: int, query: str, prompt: str | None, label):
    try:
        return score_sample(query, prompt, label)
    except LabelError as e:
        raise BadRequest(422, f'"labels"[{i}]: {e}') from None
    except RecursionError:  # json.loads of '[' * 5000, or the repr of a label object nested 1,000 deep
        raise BadRequest(422, f'"labels"[{i}] is nested too deeply: a label is a flat JSON object') from None
    except (TypeError, ValueError, OverflowError) as e:  # a label no task can read
        raise BadRequest(422, f'"labels"[{i}] cannot be read: {type(e).__name__}: {e}') from None


def scoring(body: bytes) -> Generator[None, None, Answer]:
    """The answer to a request body, computed a sample per step, so that the event loop can take turns."""
    try:
        queries, prompts, labels = parse(body)
        scored = []
        for i, sample in enumerate(zip(queries, prompts, labels, strict=True)):
            scored.append(_score_one(i, *sample))
            yield
    except BadRequest as e:
        return Answer.refused(e.status, e.message)
    except Exception:  # our bug: logged in full by the server, answered without taking the service down
        failed = Answer.refused(500, "internal error while scoring; see the service's log")
        return failed._replace(trace=traceback.format_exc())
    if JOURNAL is not None:
        JOURNAL.record_batch(queries, prompts, labels, scored)
    rewards = [s.reward for s in scored]
    correct = [float(s.correct) for s in scored]
    formatted = [float(s.formatted) for s in scored]
    logs = {"accuracy": correct, "format": formatted}
    if TASK_LOGS:
        logs.update(task_logs(labels, correct, formatted))
    answer = {"rewards": rewards, "scores": correct, "extra_logs": logs}
    return Answer(200, orjson.dumps(answer), None, len(scored), sum(rewards), int(sum(correct)))


def score_in_process(chunks: list[bytes]) -> Answer:
    """What the scoring process runs: the whole body at once."""
    steps = scoring(b"".join(chunks))
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


async def score_on_loop(body: bytes) -> Answer:
    """A small body scored on the event loop, handing it back every SLICE_SECONDS (64 KB of tiny samples take 3 ms)."""
    steps, start = scoring(body), time.perf_counter()
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        if time.perf_counter() - start > SLICE_SECONDS:
            await asyncio.sleep(0)
            start = time.perf_counter()


def stop_with_parent(parent: int, sig: int) -> None:
    """Have this process get `sig` when its parent `parent` dies: Linux's PR_SET_PDEATHSIG, elsewhere a thread that
    watches the parent's pid."""
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        armed = ctypes.CDLL(None, use_errno=True).prctl(1, ctypes.c_ulong(sig), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    if not armed:

        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os.kill(os.getpid(), sig)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), sig)


def _scoring_process_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop_with_parent(parent, signal.SIGKILL)


class ScoringProcess:
    """One process beside the event loop for the bodies too large to score on it (16 MB, or 200,000 samples, take
    a second). Started before the first request, from the main thread, which PR_SET_PDEATHSIG watches."""

    def __init__(self):
        self.pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads and an event loop
        return ProcessPoolExecutor(1, mp_context=context, initializer=_scoring_process_init, initargs=(os.getpid(),))

    async def start(self) -> None:
        self.pool = self._new_pool()
        await asyncio.get_running_loop().run_in_executor(self.pool, int)  # spawned and ready

    async def score(self, chunks: list[bytes]) -> Answer:
        pool = self.pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, score_in_process, chunks)
        except BrokenProcessPool:
            if self.pool is pool:  # the first request to notice replaces it
                logger.error("reward_funcs.server: the scoring process died; starting another")
                self.pool = self._new_pool()
                pool.shutdown(wait=False)
            return Answer.refused(500, "the scoring process died; see the service's log")

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
